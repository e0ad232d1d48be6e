"""The Ray executor on a real local Ray cluster: same manifests as local; crashes isolated."""

import os
import subprocess
import sys

import pyarrow.parquet as pq

from runhelpers import ROOT, SAMPLE_CONFIG, build_run, manifest_bytes


def test_ray_and_local_give_identical_manifests(local_run, sample_dir, tmp_path):
    out, _ = local_run
    ray_out = str(tmp_path / "ray")
    stats = build_run(sample_dir, ray_out, "ray")
    assert stats["executor"] == "ray"
    assert manifest_bytes(ray_out) == manifest_bytes(out)


def test_worker_crash_fails_only_its_clip(sample_dir, tmp_path):
    """A worker that dies mid-batch costs one failed row; the rest of the chunk is measured."""
    config = tmp_path / "c.yaml"
    config.write_text("run: {chunk_size: 8, stages: [ingest, crashy]}\nstages:\n  ingest: {fps: 2, short_side: 64}\n")
    env = {**os.environ, "BINAURALIZE_EXTRA_STAGES": "crashy=crash_stage:CrashStage",
           "PYTHONPATH": os.path.join(ROOT, "tests", "pipeline")}
    out = str(tmp_path / "run")
    lines = open(os.path.join(sample_dir, "manifest.csv")).read().splitlines()
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(lines[:7]) + "\n")  # header + s000..s005
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", str(config), "--input", str(manifest), "--media-root", sample_dir, "--out", out, "--executor", "ray", "--no-progress"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["clip_id"]: r for r in pq.read_table(os.path.join(out, "manifests", "crashy", "chunk-00000.parquet")).to_pylist()}
    assert rows["s000_moving_lr"]["status"] == "failed"
    assert rows["s000_moving_lr"]["reason"].startswith("worker died while measuring this clip")
    assert rows["s004_distractor_sweep"]["reason"] == "deliberate failure"
    others = [r for k, r in rows.items() if k not in ("s000_moving_lr", "s004_distractor_sweep")]
    assert others and all(r["status"] == "kept" and r["crash_ok"] == 1 for r in others)
    assert "crashy" in result.stdout and "worker died" in result.stdout
