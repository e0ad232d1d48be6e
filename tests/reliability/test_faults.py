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


STAGES = ["ingest", "duration", "silence", "convert", "shard"]
CHEAP = [f"run.stages={STAGES}", "run.chunk_size=2", "executor.num_cpus=2", "stages.ingest.fps=4",
         "stages.ingest.short_side=32", "stages.duration.min_seconds=0.5", "stages.duration.window_seconds=1.0",
         "stages.convert.mode=mono", "stages.convert.batch_size=2", "stages.shard.video=encode",
         "stages.shard.num_workers=1", "stages.shard.video_threads=1", "stages.shard.max_samples_per_shard=3"]


def shard_bytes(out: str) -> dict[str, bytes]:
    folder = os.path.join(out, "shards")
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in sorted(files)}


def build_cmd(manifest: str, media: str, out: str, executor: str = "ray") -> list[str]:
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", os.path.join(ROOT, "configs", "sample.yaml"),
           "--input", manifest, "--media-root", media, "--out", out, "--executor", executor, "--no-progress"]
    for item in CHEAP:
        cmd += ["--set", item]
    return cmd


def run_steps(cmd: list[str], steps, timeout: float = 300) -> tuple[int, list[bool]]:
    """Start a build; for each (ready, act) in order, act(proc) once ready() holds. Returns the exit code
    and which steps acted (a step whose moment never came did not act)."""
    import time

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    acted, deadline = [], time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline and len(acted) < len(steps):
            ready, act = steps[len(acted)]
            if ready(proc):
                acted.append(bool(act(proc)))
            time.sleep(0.02)
        proc.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, acted


@pytest.mark.slow
def test_sigkills_of_workers_and_driver_then_rerun_give_identical_shards(tmp_path):
    """Worker killed in ingest and in convert, driver killed in convert and in shard: same shard bytes."""
    import glob
    import signal

    from procs import ray_workers

    media = str(tmp_path / "media")
    manifest = tiny_media(media, [f"c{k:02d}" for k in range(10)])
    reference = str(tmp_path / "reference")
    done = subprocess.run(build_cmd(manifest, media, reference, "local"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = shard_bytes(reference)
    assert sum(name.endswith(".tar") for name in expected) == 4  # 10 samples, 3 per shard

    out = str(tmp_path / "run")
    cmd = build_cmd(manifest, media, out)
    markers = lambda stage: len(glob.glob(os.path.join(out, "completions", stage, "*.json")))  # noqa: E731

    def kill_worker(title):
        def act(proc):
            pids = ray_workers(proc.pid, title)
            for pid in pids[:1]:
                os.kill(pid, signal.SIGKILL)
            return bool(pids)
        return act

    def kill_driver(proc):
        proc.send_signal(signal.SIGKILL)
        return True

    # run 1: a task worker dies during ingest (the run carries on), then the driver dies during convert
    code, acted = run_steps(cmd, [
        (lambda proc: 1 <= markers("ingest") < 5 and ray_workers(proc.pid, "ray::_run_batch"), kill_worker("ray::_run_batch")),
        (lambda proc: markers("silence") == 5 and markers("convert") < 5, kill_driver),
    ])
    assert code == -signal.SIGKILL and acted == [True, True], (code, acted)
    assert markers("convert") < 5 and not glob.glob(os.path.join(out, "shards", "*.tar"))
    # run 2: an actor dies during convert (the run carries on), then the driver dies while samples are packaged
    code, acted = run_steps(cmd, [
        (lambda proc: markers("convert") < 5 and ray_workers(proc.pid, "ray::_StageActor"), kill_worker("ray::_StageActor")),
        (lambda proc: markers("package") >= 1 and markers("shard") == 0, kill_driver),
    ])
    assert code == -signal.SIGKILL and acted == [True, True], (code, acted)
    assert not os.path.exists(os.path.join(out, "completions", "shard"))
    # run 3: completes; the dataset is byte-identical to the uninterrupted run
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert shard_bytes(out) == expected
    assert not glob.glob(os.path.join(out, "**", ".tmp-*"), recursive=True)
