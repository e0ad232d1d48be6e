"""Shared fixtures: the bundled sample (generated once per session) and one local run of it."""

from __future__ import annotations

import os

import pytest

# Tests never reach a model hub: no connection checks, no downloads (the pipeline works offline).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from runhelpers import build_run


def pytest_collection_modifyitems(config, items):
    """GPU-only tests carry @pytest.mark.gpu and are skipped where CUDA is absent."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Never touch the hub; an empty Hugging Face cache unless a test fills it."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (results and timings independent of the machine's cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> str:
    """The real Audiobox Aesthetics architecture with random weights, in checkpoint.pt's format.

    No trained weights can be downloaded here; this exercises the real loading and scoring code.
    """
    from audioquality.audiobox import write_random_checkpoint

    path = tmp_path_factory.getbasetemp() / "audiobox_random_seed0" / "checkpoint.pt"
    if not path.exists():
        write_random_checkpoint(str(path), seed=0)
    return str(path)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    from samplegen import generate_sample

    out = tmp_path_factory.mktemp("sample")
    generate_sample(str(out), clips=24, seed=0)
    return str(out)


@pytest.fixture(scope="session")
def local_run(sample_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run_local"))
    stats = build_run(sample_dir, out, "local")
    return out, stats
