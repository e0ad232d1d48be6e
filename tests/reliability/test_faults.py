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



# -- SIGKILLs: workers (from outside, while their stage runs) and the driver (at exact points) --------

N_CLIPS = 8
STAGES = ["ingest", "duration", "silence", "convert", "package", "shard"]
CHEAP = [f"run.stages={STAGES}", "run.chunk_size=1", "executor.num_cpus=2", "stages.ingest.fps=4",
         "stages.ingest.short_side=32", "stages.duration.min_seconds=0.5", "stages.duration.window_seconds=1.0",
         "stages.convert.mode=mono", "stages.convert.batch_size=2", "stages.package.video=encode",
         "stages.package.video_threads=1", "stages.shard.max_samples_per_shard=2"]
MEMBERS_PER_SAMPLE = 6  # mp4, flac, mono.flac, json, spatial.npy, traj.npy


def shard_bytes(out: str) -> dict[str, bytes]:
    """Every file under shards/ by relative path: the tars, each shard's .parquet and .stats.json (which
    record each sample's package fingerprint: content digests, nothing of the run folder), index.parquet
    and sizes.json."""
    folder = os.path.join(out, "shards")
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in sorted(files)}


def build_cmd(manifest: str, media: str, out: str, executor: str = "ray", kill_at: str | None = None) -> list[str]:
    head = [sys.executable, os.path.join(HERE, "killpoint.py"), kill_at] if kill_at else [sys.executable, "-m", "pipeline"]
    cmd = head + ["build", "--config", os.path.join(ROOT, "configs", "sample.yaml"), "--input", manifest,
                  "--media-root", media, "--out", out, "--executor", executor, "--no-progress"]
    for item in CHEAP:
        cmd += ["--set", item]
    return cmd


def run_killed(cmd: list[str], kill_worker=None, timeout: float = 300, whole_node: bool = False) -> tuple[int, bool, str]:
    """Run a build that SIGKILLs itself at its kill point; `kill_worker(pid) -> bool` is polled until it
    has killed a worker. Returns (exit code, whether a worker was killed, stderr tail) once the build and
    every process it started (its session: Ray's raylet, GCS, workers) are gone."""
    import signal
    import time

    from procs import in_session

    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed, deadline = False, time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            if kill_worker is not None and not killed:
                killed = kill_worker(proc.pid)
            time.sleep(0.01)
        err = proc.communicate(timeout=max(1.0, deadline - time.time()))[1]
        if whole_node:  # the machine is lost: Ray's processes die with the driver, not a minute later
            for pid in in_session(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        while in_session(proc.pid) and time.time() < deadline:  # Ray's processes follow their driver
            time.sleep(0.05)
        assert not in_session(proc.pid), "Ray processes outlived their killed driver"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, killed, (err or "")[-3000:]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """N_CLIPS tiny clips and the shards of their uninterrupted local run: (media, manifest, shard bytes)."""
    root = tmp_path_factory.mktemp("reference")
    media = str(root / "media")
    manifest = tiny_media(media, [f"c{k:02d}" for k in range(N_CLIPS)])
    done = subprocess.run(build_cmd(manifest, media, str(root / "run"), "local"), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = shard_bytes(str(root / "run"))
    assert sum(name.endswith(".tar") for name in expected) == 4  # 8 samples, 2 per shard
    assert sum(name.endswith((".parquet", ".stats.json")) for name in expected) == 9  # 4 + 4 + index.parquet
    return media, manifest, expected


@pytest.mark.slow
def test_sigkills_of_workers_and_driver_then_rerun_give_identical_shards(tmp_path, reference_run):
    """The driver dies in ingest, in convert and while packing shards; a worker dies in ingest, convert
    and package: the rerun's shards are byte-identical to an uninterrupted run's. The first driver
    death leaves Ray to clean up after it (its processes must follow the driver: about a minute);
    the later ones take the whole node down at once, as a preempted machine does."""
    import glob
    import signal

    from procs import ray_workers

    media, manifest, expected = reference_run
    out = str(tmp_path / "run")
    markers = lambda stage: len(glob.glob(os.path.join(out, "completions", stage, "*.json")))  # noqa: E731

    def worker_killer(stage: str, title: str):
        """Kill one Ray worker running `title` while `stage` is still unfinished."""
        def act(driver: int) -> bool:
            if markers(stage) >= N_CLIPS:
                return False
            pids = ray_workers(driver, title)
            if pids and markers(stage) < N_CLIPS:
                os.kill(pids[0], signal.SIGKILL)
                return True
            return False
        return act

    # 1: the driver dies right after ingest's 3rd chunk (tasks still in flight)
    code, _, err = run_killed(build_cmd(manifest, media, out, kill_at="marker:ingest:3"))
    assert code == -signal.SIGKILL, err
    assert markers("ingest") == 3 and markers("convert") == 0
    # 2: a task worker dies during the rest of ingest (the run carries on); the driver dies after convert's 2nd chunk
    code, killed, err = run_killed(build_cmd(manifest, media, out, kill_at="marker:convert:2"),
                                   worker_killer("ingest", "ray::_run_batch"), whole_node=True)
    assert code == -signal.SIGKILL and killed, (code, killed, err)
    assert markers("ingest") == N_CLIPS and markers("convert") == 2
    # 3: a convert actor and a package worker die (the run carries on); the driver dies inside the 2nd shard's tar
    actor_killer, package_killer = worker_killer("convert", "ray::_StageActor"), worker_killer("package", "ray::_run_batch")
    kills: list[str] = []

    def kill_both(driver: int) -> bool:
        if not kills and actor_killer(driver):
            kills.append("convert")
        elif kills == ["convert"] and markers("convert") == N_CLIPS and package_killer(driver):
            kills.append("package")
        return len(kills) == 2

    code, killed, err = run_killed(build_cmd(manifest, media, out, kill_at=f"tar:{3 * MEMBERS_PER_SAMPLE + 2}"), kill_both,
                                   whole_node=True)
    assert code == -signal.SIGKILL and kills == ["convert", "package"], (code, kills, err)
    shards = sorted(os.listdir(os.path.join(out, "shards")))
    assert [s for s in shards if s.endswith(".tar") and not s.startswith(".tmp-")] == ["train-000000.tar"]
    assert any(s.startswith(".tmp-") and s.endswith(".tar") for s in shards), shards  # the half-written one
    assert markers("package") == N_CLIPS and markers("shard") == 0
    # 4: completes; the dataset is byte-identical to the uninterrupted run, no temp file is left
    rerun = subprocess.run(build_cmd(manifest, media, out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert shard_bytes(out) == expected
    assert not glob.glob(os.path.join(out, "**", ".tmp-*"), recursive=True)


# -- a full disk while the shards are written ----------------------------------------------------------


@pytest.mark.slow
def test_disk_full_while_writing_shards_stops_cleanly_and_resumes(tmp_path):
    """shards/ on a 64 KiB tmpfs (about two one-sample shards): the build stops with a clear error, no
    truncated shard is visible, and once the volume is larger the same command completes."""
    import json
    import tarfile

    media = str(tmp_path / "media")
    manifest = tiny_media(media, [f"d{k}" for k in range(4)])
    out = str(tmp_path / "run")
    shards = os.path.join(out, "shards")
    os.makedirs(shards)
    cmd = build_cmd(manifest, media, out, "local") + ["--set", "stages.shard.max_samples_per_shard=1"]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", shards], check=True)
    try:
        full = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert full.returncode == 4, full.stderr[-3000:]
        assert "error: the disk is full: [Errno 28] No space left on device" in full.stderr
        assert "Traceback" not in full.stderr and "run the same command again" in full.stderr
        visible = sorted(os.listdir(shards))
        assert not [n for n in visible if n.startswith(".tmp-")], visible
        tars = [n for n in visible if n.endswith(".tar")]
        assert 1 <= len(tars) < 4, visible  # some shards were written before the disk filled
        for name in tars:  # every visible shard is whole: its size is the one its stats recorded
            stats = json.load(open(os.path.join(shards, name[:-4] + ".stats.json")))
            assert os.path.getsize(os.path.join(shards, name)) == stats["bytes"]
        assert not os.path.exists(os.path.join(out, "completions", "shard"))

        subprocess.run(["mount", "-o", "remount,size=1m", shards], check=True)  # space freed
        rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        visible = sorted(os.listdir(shards))
        assert [n for n in visible if n.endswith(".tar")] == [f"train-{k:06d}.tar" for k in range(4)]
        assert not [n for n in visible if n.startswith(".tmp-")]
        for k in range(4):
            with tarfile.open(os.path.join(shards, f"train-{k:06d}.tar")) as tar:
                assert sorted(m.name for m in tar.getmembers()) == sorted(
                    f"d{k}.{s}" for s in ("mp4", "flac", "mono.flac", "json", "spatial.npy", "traj.npy"))
    finally:
        subprocess.run(["umount", shards], check=False)


@pytest.mark.slow
def test_disk_full_inside_a_per_clip_stage_stops_and_the_rerun_loses_nothing(tmp_path, reference_run):
    """work/convert/ on a 512 KiB tmpfs (four of the eight 1 s binaural.npy files fit): convert's own write
    fails with ENOSPC. A full disk is not a property of the clip, so no clip is marked failed (a failed row
    would not be retried by a plain rerun: its data would be lost); the build stops with exit 4 naming the
    clip, the file and the volume. Once there is space the same command completes with the shards of an
    uninterrupted run, byte for byte."""
    import pyarrow.parquet as pq

    media, manifest, expected = reference_run
    out = str(tmp_path / "run")
    convert = os.path.join(out, "work", "convert")
    os.makedirs(convert)
    cmd = build_cmd(manifest, media, out, "local")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", convert], check=True)
    try:
        full = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert full.returncode == 4, full.stderr[-3000:]
        assert ("error: the disk is full: [Errno 28] disk full while convert wrote clip 'c04': convert (mono): "
                f"[Errno 28] No space left on device: '{os.path.join(convert, 'c04', 'binaural.npy')}'\n") in full.stderr
        assert f"Free space on the volume mounted at {convert}, then run the same command again" in full.stderr
        assert "Traceback" not in full.stderr
        assert sorted(os.listdir(os.path.join(out, "completions", "convert"))) == [
            f"chunk-{k:05d}.json" for k in range(4)]  # what fitted is finished; c04's chunk has no marker
        for name in os.listdir(os.path.join(out, "manifests", "convert")):
            rows = pq.read_table(os.path.join(out, "manifests", "convert", name)).to_pylist()
            assert [r["status"] for r in rows] == ["kept"], rows  # no clip was failed for the disk
        assert not [f for _, _, files in os.walk(convert) for f in files if f.startswith(".tmp-")]
        assert not os.path.exists(os.path.join(out, "completions", "package"))

        subprocess.run(["mount", "-o", "remount,size=4m", convert], check=True)  # space freed
        rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert f"{N_CLIPS} clips in, {N_CLIPS} kept, 0 dropped, 0 failed" in rerun.stderr
        assert shard_bytes(out) == expected
    finally:
        subprocess.run(["umount", convert], check=False)
