"""Runner contracts: funnel, resume after SIGKILL, fingerprint invalidation, re-decision, lock."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from runhelpers import FAST_STAGES, ROOT, SAMPLE_CONFIG, build_run, copy_run, manifest_bytes
from pipeline.lock import RunLock, RunLockedError
from stages.base import ConfigError


def rows(out, stage):
    files = sorted(glob.glob(os.path.join(out, "manifests", stage, "chunk-*.parquet")))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def by_id(out, stage):
    return {r["clip_id"]: r for r in rows(out, stage)}


def test_sample_run_shows_every_outcome(local_run, sample_dir):
    out, stats = local_run
    truth = {os.path.basename(p)[:-5]: json.load(open(p)) for p in glob.glob(os.path.join(sample_dir, "truth", "*.json"))}
    final = {**by_id(out, "ingest"), **by_id(out, "duration"), **by_id(out, "silence")}
    for clip_id, t in truth.items():
        expected = t["expected"]
        row = final[clip_id]
        if expected == "kept":
            assert row["status"] == "kept", (clip_id, row["reason"])
        elif expected == "failed":
            assert row["status"] == "failed" and row["reason"], clip_id
        elif expected == "dropped:duration":
            assert row["status"] == "dropped" and row["reason"].startswith("too short"), clip_id
        elif expected == "dropped:silence":
            assert row["status"] == "dropped" and row["reason"].startswith("mostly silent"), clip_id
    s = stats["stages"]
    assert s["ingest"]["in"] == 24 and sum(s["ingest"]["failed"].values()) == 3
    assert s["duration"]["dropped"] == {"too short": 2}
    assert s["silence"]["dropped"] == {"mostly silent": 2} and s["silence"]["kept"] == 17
    # every clip that entered a stage left it as exactly one row: nothing lost, nothing duplicated
    assert s["duration"]["in"] == s["ingest"]["kept"] and s["silence"]["in"] == s["duration"]["kept"]
    ingest = by_id(out, "ingest")
    assert ingest["s005_surround51"]["audio_channels_in"] == 6 and ingest["s008_mono8k"]["audio_sr_in"] == 8000
    assert ingest["s013_vfr"]["vfr"] is True and ingest["s013_vfr"]["n_frames"] == 88
    assert ingest["s009_zero_bytes"]["reason"].startswith("empty file (0 bytes)")
    assert ingest["s007_noaudio"]["reason"] == "no audio stream"
    for name in ("config.yaml", "stats.json", "input.json", "logs/build.log"):
        assert os.path.exists(os.path.join(out, name)), name


def test_rerun_skips_everything_and_changes_nothing(local_run, tmp_path, sample_dir):
    out, _ = local_run
    copy = copy_run(out, str(tmp_path / "copy"))
    before = manifest_bytes(copy)
    stats = build_run(sample_dir, copy)
    assert all(s["state"] == "done earlier" for s in stats["stages"].values())
    assert manifest_bytes(copy) == before


def test_new_threshold_redecides_without_decoding(local_run, tmp_path, sample_dir):
    out, _ = local_run
    copy = copy_run(out, str(tmp_path / "copy"))
    # Remove the decoded audio: any attempt to measure silence again would now fail every clip.
    for path in glob.glob(os.path.join(copy, "work", "ingest", "*", "audio.npy")):
        os.remove(path)
    ingest_before = {k: v for k, v in manifest_bytes(copy).items() if "/ingest/" in k or "/duration/" in k}
    stats = build_run(sample_dir, copy, overrides={"stages.silence.max_silent_fraction": 0.05}, only="silence")
    assert stats["stages"]["silence"]["state"].endswith("measured 0")
    assert stats["stages"]["silence"]["failed"] == {}
    after = by_id(copy, "silence")
    original = by_id(out, "silence")
    assert {k: r["silent_fraction"] for k, r in after.items()} == {k: r["silent_fraction"] for k, r in original.items()}
    dropped = {k for k, r in after.items() if r["status"] == "dropped"}
    assert dropped == {k for k, r in original.items() if r["silent_fraction"] > 0.05}
    assert "s004_distractor_sweep" in dropped  # 10.8 % silent: kept at 0.8, dropped at 0.05
    assert {k: v for k, v in manifest_bytes(copy).items() if k in ingest_before} == ingest_before


def test_changed_stage_reruns_it_and_downstream_only(local_run, tmp_path, sample_dir):
    out, _ = local_run
    copy = copy_run(out, str(tmp_path / "copy"))
    stats = build_run(sample_dir, copy, overrides={"stages.duration.windows": "all"})
    assert stats["stages"]["ingest"]["state"] == "done earlier"
    assert stats["stages"]["duration"]["state"].startswith("ran 3/3")
    assert stats["stages"]["silence"]["state"].startswith("ran 3/3")
    windows = by_id(copy, "duration")
    assert "s006_long_w0" in windows and "s006_long_w1" in windows and "s006_long" not in windows
    assert windows["s006_long_w1"]["window_start"] == 160000 and windows["s006_long_w1"]["window_samples"] == 160000
    # new windows are new data: all 20 are measured (19 clips, the long one now two windows)
    assert stats["stages"]["silence"]["state"].endswith("measured 20")


def test_upstream_threshold_change_reuses_downstream_measurements(local_run, tmp_path, sample_dir):
    out, _ = local_run
    copy = copy_run(out, str(tmp_path / "copy"))
    stats = build_run(sample_dir, copy, overrides={"stages.duration.min_seconds": 10.6})
    assert stats["stages"]["ingest"]["state"] == "done earlier"
    assert stats["stages"]["duration"]["state"] == "ran 3/3 chunks, measured 0"
    assert by_id(copy, "duration")["s017_static_right"]["reason"] == "too short: 10.52 s < 10.6 s"
    # silence reruns (its input changed) but every silent fraction comes from its measurement cache
    assert stats["stages"]["silence"]["state"] == "ran 3/3 chunks, measured 0"
    assert "s017_static_right" not in by_id(copy, "silence") and stats["stages"]["silence"]["in"] == 18


def test_only_needs_complete_upstream(sample_dir, tmp_path):
    with pytest.raises(ConfigError, match="stage ingest is not complete"):
        build_run(sample_dir, str(tmp_path / "fresh"), only="silence")


def test_second_build_on_same_out_is_refused(tmp_path):
    out = str(tmp_path)
    with RunLock(out):
        with pytest.raises(RunLockedError, match="another build is running"):
            with RunLock(out):
                pass
    with RunLock(out):  # released: a new build may start
        pass


def test_sigkill_mid_stage_then_rerun_equals_uninterrupted_run(local_run, sample_dir, tmp_path):
    out, _ = local_run
    killed = str(tmp_path / "killed")
    cmd = [
        sys.executable, "-m", "pipeline", "build", "--config", SAMPLE_CONFIG, "--input",
        os.path.join(sample_dir, "manifest.csv"), "--media-root", sample_dir, "--out", killed,
        "--executor", "local", "--no-progress", "--set", f"run.stages={FAST_STAGES}",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = os.path.join(killed, "completions", "ingest", "chunk-00000.json")
    deadline = time.time() + 120
    while not os.path.exists(marker) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the second chunk's decoding
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(marker), "the build never finished its first chunk"
    assert not os.path.exists(os.path.join(killed, "completions", "silence", "chunk-00002.json"))
    # the lock died with the process: the rerun starts at once and completes the run
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert manifest_bytes(killed) == manifest_bytes(out)
    assert not glob.glob(os.path.join(killed, "**", ".tmp-*"), recursive=True)
