"""The whole sample pipeline as `make build-dataset` runs it: Ray executor, every stage, then a rerun."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from runhelpers import ROOT, SAMPLE_CONFIG, manifest_bytes


@pytest.fixture(scope="module")
def full_run(sample_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full") / "run")
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", SAMPLE_CONFIG, "--input",
           os.path.join(sample_dir, "manifest.csv"), "--media-root", sample_dir, "--out", out, "--no-progress"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, cmd, result.stdout


def test_every_stage_runs_and_the_funnel_says_so(full_run):
    out, _, stdout = full_run
    stats = json.load(open(os.path.join(out, "stats.json")))
    s = stats["stages"]
    assert list(s) == ["ingest", "duration", "silence", "quality", "localize", "train_unet", "convert", "validate", "shard"]
    assert s["ingest"]["in"] == 24 and s["shard"]["kept"] == 17
    assert all(s[name]["in"] == 17 and s[name]["kept"] == 17 for name in ("quality", "localize", "train_unet", "convert"))
    assert stats["preflight"]["quality"]["backend"] == "dsp"  # no Audiobox checkpoint offline: said loudly
    for line in ("failed: no audio stream x1", "dropped: too short x2", "dropped: mostly silent x2", "note [quality]: backend=dsp"):
        assert line in stdout


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


def test_rerun_does_nothing_and_changes_nothing(full_run):
    out, cmd, _ = full_run
    before = manifest_bytes(out)
    shards = {f: open(os.path.join(out, "shards", f), "rb").read() for f in os.listdir(os.path.join(out, "shards")) if f.endswith(".tar")}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
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
