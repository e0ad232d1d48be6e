"""Faults: clips that kill or hang their worker, SIGKILLs of workers and of the driver, a full disk."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from corpus import clip
from runhelpers import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_media(folder: str, ids: list[str]) -> str:
    os.makedirs(folder, exist_ok=True)
    lines = ["clip_id,video"]
    for k, clip_id in enumerate(ids):
        clip(os.path.join(folder, f"{clip_id}.mp4"), seconds=1.0, freq=300 + 50 * k)
        lines.append(f"{clip_id},{clip_id}.mp4")
    path = os.path.join(folder, "manifest.csv")
    open(path, "w").write("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_killer_clip_bounded_attempts_and_hanging_clip_times_out(tmp_path):
    manifest = tiny_media(str(tmp_path / "media"), ["killer", "a", "hanger", "b", "c"])
    config = tmp_path / "c.yaml"
    config.write_text("run: {chunk_size: 8, stages: [ingest, faulty]}\n"
                      "executor: {name: ray, num_cpus: 2, max_attempts: 3, clip_timeout_s: 4}\n"
                      "stages:\n  ingest: {fps: 2, short_side: 32}\n")
    deaths = tmp_path / "deaths"
    env = {**os.environ, "BINAURALIZE_EXTRA_STAGES": "faulty=fault_stage:FaultStage", "PYTHONPATH": HERE,
           "FAULT_DEATHS": str(deaths)}
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", str(config), "--input", manifest,
           "--media-root", str(tmp_path / "media"), "--out", out, "--no-progress"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["clip_id"]: r for r in pq.read_table(os.path.join(out, "manifests", "faulty", "chunk-00000.parquet")).to_pylist()}
    assert rows["killer"]["status"] == "failed"
    assert rows["killer"]["reason"].startswith("worker died while measuring this clip (3 attempts, executor.max_attempts")
    assert deaths.read_text() == "x" * 4  # the whole batch once, then the clip alone 3 times: bounded
    assert rows["hanger"]["status"] == "failed"
    assert rows["hanger"]["reason"] == "timed out after 4 s (executor.clip_timeout_s)"
    assert all(rows[c]["status"] == "kept" and rows[c]["fault_ok"] == 1 for c in ("a", "b", "c"))

