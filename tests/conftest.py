"""Shared fixtures: the bundled sample (generated once per session) and one local run of it."""

from __future__ import annotations

import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_CONFIG = os.path.join(ROOT, "configs", "sample.yaml")


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
    from pipeline.sample import generate_sample

    out = tmp_path_factory.mktemp("sample")
    generate_sample(str(out), clips=24, seed=0)
    return str(out)


def build_run(sample: str, out: str, executor: str = "local", overrides: dict | None = None,
              input_override: str | None = None, **kwargs):
    from pipeline.config import load_config
    from pipeline.runner import BuildRequest, build

    config = load_config(SAMPLE_CONFIG, overrides or {})
    request = BuildRequest(
        config=config, input=input_override or os.path.join(sample, "manifest.csv"), out=out, media_root=sample,
        executor=executor, progress=False, **kwargs,
    )
    return build(request)


@pytest.fixture(scope="session")
def local_run(sample_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run_local"))
    stats = build_run(sample_dir, out, "local")
    return out, stats


def copy_run(src: str, dst: str) -> str:
    """Copy a run folder with hard links: every write in a run is a rename, so links are safe."""
    import shutil

    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def manifest_bytes(out: str) -> dict[str, bytes]:
    """Every stage manifest of a run folder, by relative path."""
    files = sorted(glob.glob(os.path.join(out, "manifests", "*", "*.parquet")))
    return {os.path.relpath(f, out): open(f, "rb").read() for f in files}
