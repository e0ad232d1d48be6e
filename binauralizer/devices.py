"""Which torch device a model stage runs on: one rule for every stage.

`requested` is what the stage's settings ask for: a number of GPUs per actor (0 = CPU) or a device
name ("cpu", "cuda", "cuda:1", "auto"). A request for a GPU where none is visible falls back to the
CPU with a warning, so a config written for a cluster still runs (slowly) on a laptop, and says so.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def pick_device(requested: float | int | str | None = 0, stage: str = "") -> "torch.device":  # noqa: F821
    import torch

    if isinstance(requested, bool):
        raise TypeError("pick_device: give a GPU count or a device name, not a bool")
    if requested is None or requested == "auto":
        wants_gpu = torch.cuda.is_available()
        name = "cuda"
    elif isinstance(requested, (int, float)):
        wants_gpu, name = requested > 0, "cuda"
    else:
        name = str(requested)
        wants_gpu = name.startswith("cuda")
    if not wants_gpu:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device(name)
    log.warning("%s%s asks for %r but no CUDA device is visible: running on the CPU",
                stage, ":" if stage else "", requested)
    return torch.device("cpu")
