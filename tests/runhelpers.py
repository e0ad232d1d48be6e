"""Helpers the tests share (imported by name: `from runhelpers import ...`)."""

from __future__ import annotations

import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_CONFIG = os.path.join(ROOT, "configs", "sample.yaml")
# The runner's contracts are tested on the CPU stages (seconds); the whole pipeline runs once end to end.
FAST_STAGES = ["ingest", "duration", "silence", "quality"]


def build_run(sample: str, out: str, executor: str = "local", overrides: dict | None = None,
              input_override: str | None = None, **kwargs):
    from pipeline.config import load_config
    from pipeline.runner import BuildRequest, build

    config = load_config(SAMPLE_CONFIG, {"run.stages": FAST_STAGES, **(overrides or {})})
    request = BuildRequest(
        config=config, input=input_override or os.path.join(sample, "manifest.csv"), out=out, media_root=sample,
        executor=executor, progress=False, **kwargs,
    )
    return build(request)


def copy_run(src: str, dst: str) -> str:
    """Copy a run folder with hard links: every write in a run is a rename, so links are safe."""
    import shutil

    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def manifest_bytes(out: str) -> dict[str, bytes]:
    """Every stage manifest of a run folder, by relative path."""
    files = sorted(glob.glob(os.path.join(out, "manifests", "*", "*.parquet")))
    return {os.path.relpath(f, out): open(f, "rb").read() for f in files}


def write_ingested(out, clips) -> list[dict]:
    """What ingest leaves for each clip (work/ingest/<id>/audio.npy, frames.npy) and its manifest row."""
    import numpy as np

    rows = []
    for clip in clips:
        folder = os.path.join(str(out), "work", "ingest", clip.clip_id)
        os.makedirs(folder)
        np.save(os.path.join(folder, "audio.npy"), clip.audio)
        np.save(os.path.join(folder, "frames.npy"), clip.frames)
        rows.append({"clip_id": clip.clip_id, "source_id": clip.clip_id, "window_start": 0,
                     "window_samples": len(clip.audio), "frame_fps": clip.fps})
    return rows
