"""pick_device: one rule for every model stage, and a warning when a GPU request falls back to the CPU."""

import logging

import pytest
import torch

from binauralizer.devices import pick_device


def test_cpu_requests_and_fallback_with_a_warning(caplog):
    assert pick_device(0) == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="binauralizer.devices"):
        device = pick_device(0.25, "convert")
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        assert device.type == "cuda" and not caplog.records
    else:
        assert device == torch.device("cpu")
        assert "convert: asks for 0.25 but no CUDA device is visible: running on the CPU" in caplog.text
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(TypeError):
        pick_device(True)


def test_every_model_stage_uses_it():
    import inspect

    from stages import convert, localize, quality

    for module in (convert, localize, quality):
        source = inspect.getsource(module)
        assert "pick_device(" in source and 'device = "cuda"' not in source and '"cuda" if' not in source, module.__name__
