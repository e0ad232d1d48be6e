"""What a new user ran into: stale models, mixed inputs, late checks, 0600 files, Ctrl-C tracebacks."""

from __future__ import annotations

import glob
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from runhelpers import FAST_STAGES, ROOT, SAMPLE_CONFIG, build_run, copy_run
from stages.base import ConfigError

MICRO_UNET = {"stages.train_unet.steps": 3, "stages.train_unet.batch_size": 2, "stages.train_unet.width": 0.0625,
              "stages.train_unet.frame_height": 64, "stages.train_unet.frame_width": 128,
              "stages.train_unet.checkpoint_every": 3}


def kept(out, stage):
    files = sorted(glob.glob(os.path.join(out, "manifests", stage, "chunk-*.parquet")))
    return [r["clip_id"] for f in files for r in pq.read_table(f).to_pylist() if r["status"] == "kept"]


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, **kwargs)


@pytest.mark.usefixtures("one_torch_thread")
def test_upstream_threshold_change_retrains_the_unet(local_run, sample_dir, tmp_path):
    out = copy_run(local_run[0], str(tmp_path / "run"))
    stages = {"run.stages": FAST_STAGES + ["train_unet"], **MICRO_UNET}
    build_run(sample_dir, out, overrides=stages)
    summary = os.path.join(out, "work", "train_unet", "train_summary.json")
    first = json.load(open(summary))
    model = open(os.path.join(out, "work", "train_unet", "model.pt"), "rb").read()
    silent = {r["clip_id"]: r["silent_fraction"] for f in glob.glob(os.path.join(out, "manifests", "silence", "*.parquet"))
              for r in pq.read_table(f).to_pylist() if r["status"] == "kept"}
    threshold = sorted(silent.values())[-2]  # drops the clip with the most silence, keeps the rest
    build_run(sample_dir, out, overrides={**stages, "stages.silence.max_silent_fraction": threshold})
    second = json.load(open(summary))
    assert len(kept(out, "silence")) == len(silent) - 1
    assert second["resumed_from"] == 0, "a checkpoint of other data was resumed"
    assert second["config"]["data_digest"] != first["config"]["data_digest"]
    assert open(os.path.join(out, "work", "train_unet", "model.pt"), "rb").read() != model


def test_other_input_on_a_run_folder_is_refused_unless_force(local_run, sample_dir, tmp_path):
    out = copy_run(local_run[0], str(tmp_path / "run"))
    lines = open(os.path.join(sample_dir, "manifest.csv")).read().splitlines()
    other = tmp_path / "other.csv"
    other.write_text("\n".join(lines[:6]) + "\n")  # the header and five clips
    before = sorted(glob.glob(os.path.join(out, "**"), recursive=True))
    with pytest.raises(ConfigError, match="holds a run of a different input .* add --force"):
        build_run(sample_dir, out, input_override=str(other))
    assert sorted(glob.glob(os.path.join(out, "**"), recursive=True)) == before  # nothing touched
    stats = build_run(sample_dir, out, input_override=str(other), force=True)
    assert stats["input"]["rows"] == 5 and stats["stages"]["ingest"]["in"] == 5  # not 24 + 5
    assert len(glob.glob(os.path.join(out, "manifests", "ingest", "*.parquet"))) == 1
    status = json.loads(cli("status", "--out", out, "--json").stdout)
    assert status["stages"]["ingest"]["in"] == 5 and status["input"]["rows"] == 5


def test_inputs_are_checked_before_anything_is_written(sample_dir, tmp_path):
    manifest = os.path.join(sample_dir, "manifest.csv")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="--media-root .*nowhere does not exist"):
        build_run(str(tmp_path / "nowhere"), str(out), input_override=manifest)
    with pytest.raises(ConfigError, match="stage ingest is not complete: .* holds no earlier run"):
        build_run(sample_dir, str(out), from_stage="silence")
    assert not out.exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = cli("build", "--config", SAMPLE_CONFIG, "--input", manifest, "--media-root", sample_dir,
                 "--out", str(a_file), "--executor", "local")
    assert result.returncode == 2 and "is a file; the run folder must be a folder" in result.stderr
    assert "Traceback" not in result.stderr and a_file.read_text() == "x"
    quote = tmp_path / "quote.csv"
    quote.write_text("clip_id,video,label\na,a.mp4,\"dog\n" + "b,b.mp4,cat\n" * 3000)
    result = cli("build", "--config", SAMPLE_CONFIG, "--input", str(quote), "--media-root", sample_dir,
                 "--out", str(out), "--executor", "local")
    assert result.returncode == 2 and "error: line 2: a quote opened on this line is never closed" in result.stderr
    assert not out.exists()


def test_measurement_cache_accumulates_across_runs(local_run, sample_dir, tmp_path):
    out = copy_run(local_run[0], str(tmp_path / "run"))
    silent = sorted(r["silent_fraction"] for f in glob.glob(os.path.join(out, "manifests", "silence", "*.parquet"))
                    for r in pq.read_table(f).to_pylist() if r["status"] == "kept")
    strict = build_run(sample_dir, out, overrides={"stages.silence.max_silent_fraction": silent[len(silent) // 2]})
    assert strict["stages"]["quality"]["in"] < len(silent)
    back = build_run(sample_dir, out)  # the old threshold: quality's cache still holds every clip
    assert back["stages"]["quality"]["state"].endswith("measured 0"), back["stages"]["quality"]["state"]
    assert back["stages"]["quality"]["in"] == len(silent)


def test_run_files_follow_the_umask(sample_dir, tmp_path):
    old = os.umask(0o022)
    try:
        out = str(tmp_path / "run")
        build_run(sample_dir, out, overrides={"run.stages": ["ingest"]},
                  input_override=_first_clips(sample_dir, tmp_path, 2))
    finally:
        os.umask(old)
    files = [os.path.join(out, n) for n in ("config.yaml", "input.json", "stats.json", "preflight.json")]
    files += glob.glob(os.path.join(out, "manifests", "*", "*.parquet")) + glob.glob(os.path.join(out, "work", "**", "*.npy"), recursive=True)
    assert len(files) > 6
    assert {oct(stat.S_IMODE(os.stat(f).st_mode)) for f in files} == {oct(0o644)}


def _first_clips(sample_dir, tmp_path, n):
    lines = open(os.path.join(sample_dir, "manifest.csv")).read().splitlines()
    path = tmp_path / f"first{n}.csv"
    path.write_text("\n".join(lines[: n + 1]) + "\n")
    return str(path)


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_exits_130(sample_dir, tmp_path):
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", SAMPLE_CONFIG, "--input",
           os.path.join(sample_dir, "manifest.csv"), "--media-root", sample_dir, "--out", out,
           "--executor", "ray", "--no-progress", "--set", f"run.stages={FAST_STAGES}", "--set", "executor.num_cpus=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not glob.glob(os.path.join(out, "work", "ingest", "*", "audio.npy")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Nothing is lost" in stderr and "Resume by running the same command" in stderr
    assert "Traceback" not in stderr
    assert not os.path.exists(os.path.join(out, "completions", "silence", "chunk-00002.json"))
