"""The whole sample pipeline as `make build-dataset` runs it: Ray executor, every stage, then a rerun."""

import json
import math
import os
import re
import subprocess
import sys
import tarfile

import pyarrow.parquet as pq
import pytest

from runhelpers import ROOT, SAMPLE_CONFIG, manifest_bytes


@pytest.fixture(scope="module")
def full_run(sample_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full") / "run")
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", SAMPLE_CONFIG, "--input",
           os.path.join(sample_dir, "manifest.csv"), "--media-root", sample_dir, "--out", out, "--no-progress"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, cmd, result.stdout + result.stderr  # stderr: the log lines (no bars: not a terminal)


def test_every_stage_runs_and_the_funnel_says_so(full_run):
    out, _, stdout = full_run
    stats = json.load(open(os.path.join(out, "stats.json")))
    s = stats["stages"]
    assert list(s) == ["ingest", "duration", "silence", "quality", "train_localizer", "localize", "train_unet",
                       "convert", "validate", "package", "shard"]
    assert s["ingest"]["in"] == 24 and s["shard"]["kept"] == 17
    assert all(s[name]["in"] == 17 and s[name]["kept"] == 17 for name in ("quality", "train_localizer", "localize", "train_unet",
                                                                             "convert"))
    assert stats["preflight"]["quality"]["backend"] == "dsp"  # no Audiobox checkpoint offline: said loudly
    for line in ("failed: no audio stream x1", "dropped: too short x2", "dropped: mostly silent x2", "note [quality]: backend=dsp"):
        assert line in stdout


def test_console_and_build_log_follow_the_training_and_every_stage(full_run):
    out, _, console = full_run
    log = open(os.path.join(out, "logs", "build.log")).read()
    for text in (console, log):
        assert re.search(r"train_unet: 15/150 steps \(10 %\), [\d.]+ steps/s, ETA .*, loss [\d.]+", text)
        assert re.search(r"train_unet: 150/150 steps \(100 %\), [\d.]+ steps/s, finished, loss [\d.]+", text)
        assert re.search(r"stage 6 of 11: localize \(actor\): 3 of 3 chunks to run, 17 clips", text)
        assert re.search(r"localize: 17/17 clips \(100 %\), [\d.]+ clips/s, finished", text)
        assert re.search(r"build finished in .*: 24 clips in, 17 kept, 4 dropped, 3 failed", text)
        assert "\r" not in text


def test_outputs_are_a_dataset_with_a_report(full_run):
    out, _, _ = full_run
    sizes = json.load(open(os.path.join(out, "shards", "sizes.json")))
    tars = sorted(f for f in os.listdir(os.path.join(out, "shards")) if f.endswith(".tar"))
    keys = set()
    for name in tars:
        with tarfile.open(os.path.join(out, "shards", name)) as tar:
            keys |= {m.name.split(".", 1)[0] for m in tar.getmembers()}
    assert len(keys) == 17 and "s018_moving_arc" in keys and "s003_truncated" not in keys
    assert sizes and os.path.getsize(os.path.join(out, "report", "index.html")) > 2000
    html = open(os.path.join(out, "report", "index.html")).read()
    assert "IACC" in html and "dsp" in html
    card = open(os.path.join(out, "README.md")).read()
    assert "17 clips" in card and "webdataset" in card.lower()
    curve = json.load(open(os.path.join(out, "work", "train_unet", "loss_curve.json")))
    losses = [p["total"] for p in curve["history"]]
    assert len(losses) == 150 and sum(losses[-20:]) < 0.8 * sum(losses[:20])  # the tiny U-Net learns
    assert os.path.getsize(os.path.join(out, "work", "train_unet", "loss_curve.png")) > 1000
    # the learned localiser the sample's fusion-learned uses: label-free, and it learns (chance = log batch)
    history = json.load(open(os.path.join(out, "work", "train_localizer", "history.json")))
    assert len(history["loss"]) == 200 and abs(history["chance_loss"] - math.log(17)) < 1e-6
    assert sum(history["loss"][-20:]) / 20 < 0.6 * history["chance_loss"]


def test_validate_and_package_ran_in_ray_workers_not_the_driver(full_run):
    """The per-clip halves of the old global stages reach the cluster: each chunk's marker names the
    processes that measured it, and none of them is the driver."""
    out = full_run[0]
    driver = json.load(open(os.path.join(out, "stats.json")))["driver"]
    for name in ("validate", "package"):
        folder = os.path.join(out, "completions", name)
        workers = set().union(*(json.load(open(os.path.join(folder, f))).get("workers", []) for f in os.listdir(folder)))
        assert workers, name
        assert all(w.rsplit(":", 1)[1] != driver.rsplit(":", 1)[1] for w in workers), (name, workers, driver)
    train = json.load(open(os.path.join(out, "completions", "train_unet", "chunk-00000.json")))
    assert "workers" not in train  # a global stage runs on the driver


def test_a_plugin_filter_before_shard_changes_the_dataset(full_run, sample_dir, tmp_path):
    """run.stages is the order: a plug-in placed before shard drops clips from the shards; nothing
    before it reruns."""
    import yaml

    from runhelpers import copy_run

    out = copy_run(full_run[0], str(tmp_path / "run"))
    index = pq.read_table(os.path.join(out, "shards", "index.parquet")).to_pylist()
    folder = os.path.join(out, "manifests", "validate")
    rows = {r["clip_id"]: r for f in sorted(os.listdir(folder)) for r in pq.read_table(os.path.join(folder, f)).to_pylist()}
    label = rows[index[0]["key"]]["label"]
    dropped = {r["key"] for r in index if rows[r["key"]]["label"] == label}
    config = yaml.safe_load(open(SAMPLE_CONFIG))
    config["run"]["stages"].insert(config["run"]["stages"].index("shard"), "drop_label")
    config["stages"]["drop_label"] = {"labels": [label]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", str(path), "--input",
           os.path.join(sample_dir, "manifest.csv"), "--media-root", sample_dir, "--out", out,
           "--executor", "local", "--no-progress"]
    env = {**os.environ, "BINAURALIZE_EXTRA_STAGES": "drop_label=drop_stage:DropLabelStage",
           "PYTHONPATH": os.path.join(ROOT, "tests", "pipeline")}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.load(open(os.path.join(out, "stats.json")))["stages"]
    assert list(stats)[-3:] == ["package", "drop_label", "shard"]
    assert sum(stats["drop_label"]["dropped"].values()) == len(dropped) and stats["drop_label"]["failed"] in (0, {})
    assert all(stats[n]["state"] == "done earlier" for n in list(stats)[:-2])
    after = {r["key"] for r in pq.read_table(os.path.join(out, "shards", "index.parquet")).to_pylist()}
    assert dropped and after == {r["key"] for r in index} - dropped


def test_rerun_does_nothing_and_changes_nothing(full_run):
    out, cmd, _ = full_run
    before = manifest_bytes(out)
    shards = {f: open(os.path.join(out, "shards", f), "rb").read() for f in os.listdir(os.path.join(out, "shards")) if f.endswith(".tar")}
    pages = {f: open(os.path.join(out, f), "rb").read() for f in ("README.md", "report/index.html")}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {f: open(os.path.join(out, f), "rb").read() for f in pages} == pages  # card and report: same bytes
    assert "stage 11 of 11: shard done earlier" in result.stderr
    assert re.search(r"build finished in .*: 24 clips in, 17 kept, 4 dropped, 3 failed\n$",
                     open(os.path.join(out, "logs", "build.log")).read())
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert all(s["state"] == "done earlier" for s in stats["stages"].values())
    assert manifest_bytes(out) == before
    assert {f: open(os.path.join(out, "shards", f), "rb").read() for f in shards} == shards


def test_every_stage_writes_exactly_its_declared_columns(full_run):
    """The columns each stage adds to its manifest are its declared `writes` and the schema's entry."""
    import pyarrow.parquet as pq

    from manifests.schema import STAGE_COLUMNS, STATUS_COLUMNS
    from stages import stage_class

    out = full_run[0]
    stats = json.load(open(os.path.join(out, "stats.json")))
    previous = set(STATUS_COLUMNS) | {"video", "label", "caption", "split", "start", "end"}
    for name in stats["stages"]:
        folder = os.path.join(out, "manifests", name)
        columns = set().union(*(pq.read_schema(os.path.join(folder, f)).names for f in os.listdir(folder)))
        declared = set(stage_class(name).writes)
        assert columns - previous == declared, name
        assert set(STAGE_COLUMNS.get(name, ())) == declared, name
        previous = columns
