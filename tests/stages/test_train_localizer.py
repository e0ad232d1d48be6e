"""train_localizer as a pipeline stage (real sample files, real runner, local and Ray executors) and
localize using the model it trained: resume after a SIGKILL, reruns exactly when settings change."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from runhelpers import ROOT, SAMPLE_CONFIG, build_run, copy_run, manifest_bytes, write_ingested
from stages.base import ConfigError, RunContext
from stages.train_localizer import TrainLocalizerStage

STAGES = ["ingest", "duration", "silence", "train_localizer", "localize"]
SETTINGS = {
    "run.stages": STAGES, "run.chunk_size": 2,
    "stages.train_localizer.steps": 4, "stages.train_localizer.batch_size": 3, "stages.train_localizer.dim": 16,
    "stages.train_localizer.frame_height": 48, "stages.train_localizer.frame_width": 80,
    "stages.train_localizer.checkpoint_every": 2, "stages.train_localizer.visual": "tiny",
    "stages.train_localizer.ensemble": 1,  # one model: the checkpoint files these tests kill and resume
    "stages.localize.method": "learned",
}
KEEP = ("s000_moving_lr", "s010_static_left", "s015_moving_rl")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def three_clips(sample_dir, tmp_path_factory):
    lines = open(os.path.join(sample_dir, "manifest.csv")).read().splitlines()
    path = tmp_path_factory.mktemp("three") / "manifest.csv"
    path.write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.split(",")[0] in KEEP]) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def trained(sample_dir, three_clips, tmp_path_factory):
    """One uninterrupted local run: ingest .. silence, train_localizer, localize (learned, no checkpoint)."""
    import torch

    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("trained") / "run")
    stats = build_run(sample_dir, out, "local", overrides=SETTINGS, input_override=three_clips)
    return out, stats


def work(out: str, name: str = "") -> str:
    return os.path.join(out, "work", "train_localizer", name)


def rows(out: str, stage: str) -> list[dict]:
    folder = os.path.join(out, "manifests", stage)
    return [r for f in sorted(os.listdir(folder)) for r in pq.read_table(os.path.join(folder, f)).to_pylist()]


def sha256(path: str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_trains_on_the_kept_clips_and_localize_uses_its_model(trained, sample_dir, three_clips):
    out, stats = trained
    assert stats["stages"]["train_localizer"]["kept"] == 3 and stats["stages"]["localize"]["kept"] == 3
    history = json.load(open(work(out, "history.json")))
    assert len(history["loss"]) == 4 and all(np.isfinite(history["loss"]))
    assert history["chance_loss"] == pytest.approx(np.log(3))
    summary = json.load(open(work(out, "train_summary.json")))
    assert summary["clips"] == 3 and summary["steps"] == 4 and summary["resumed_from"] == 0
    assert summary["model_sha256"] == sha256(work(out, "localizer.pt"))
    assert os.path.getsize(work(out, "loss_curve.png")) > 1000
    for row in rows(out, "localize"):
        assert row["loc_method"] == "learned" and row["loc_model"] == "sha256:" + summary["model_sha256"][:16]
        heat = np.load(os.path.join(out, row["heatmap_path"]))
        assert heat.shape[0] == 80 and heat.max() == 1.0 and 0.0 < row["loc_confidence"] <= 1.0
    # the same command again: nothing reruns (the model's digest in localize's settings is stable)
    again = build_run(sample_dir, out, "local", overrides=SETTINGS, input_override=three_clips)
    assert {s["state"] for s in again["stages"].values()} == {"done earlier"}


def test_trains_on_a_ray_actor_with_the_same_curve_and_model_reading_clips_lazily(trained, sample_dir, three_clips, tmp_path):
    src, _ = trained
    out = copy_run(src, str(tmp_path / "ray"))
    import shutil

    shutil.rmtree(work(out))
    lazy = {**SETTINGS, "stages.train_localizer.lazy_pool_above": 0}  # clips read one frame at a time: same data
    stats = build_run(sample_dir, out, "ray", overrides=lazy, input_override=three_clips, only="train_localizer",
                      force=True)
    assert stats["stages"]["train_localizer"]["state"] == "ran 2/2 chunks, measured 3"
    assert open(work(out, "history.json"), "rb").read() == open(work(src, "history.json"), "rb").read()
    assert sha256(work(out, "localizer.pt")) == sha256(work(src, "localizer.pt"))
    assert manifest_bytes(out) == manifest_bytes(src)


def test_a_killed_training_resumes_on_the_same_curve(trained, sample_dir, three_clips, tmp_path):
    src, _ = trained
    out = copy_run(src, str(tmp_path / "killed"))
    import shutil

    shutil.rmtree(work(out))
    for name in os.listdir(os.path.join(out, "completions", "train_localizer")):
        os.remove(os.path.join(out, "completions", "train_localizer", name))
    sets = [f"--set={k}={json.dumps(v)}" for k, v in SETTINGS.items()]
    cmd = [sys.executable, os.path.join(ROOT, "tests", "reliability", "killpoint.py"), "replace:checkpoint.pt:1",
           "build", "--config", SAMPLE_CONFIG, "--input", three_clips, "--media-root", sample_dir, "--out", out,
           "--executor", "local", "--from", "train_localizer", *sets]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILLed right after the step-2 checkpoint
    assert os.path.exists(work(out, "checkpoint.pt")) and not os.path.exists(work(out, "localizer.pt"))
    stats = build_run(sample_dir, out, "local", overrides=SETTINGS, input_override=three_clips)
    assert stats["stages"]["train_localizer"]["state"].startswith("ran")
    assert json.load(open(work(out, "train_summary.json")))["resumed_from"] == 2
    assert json.load(open(work(out, "history.json"))) == json.load(open(work(src, "history.json")))
    assert sha256(work(out, "localizer.pt")) == sha256(work(src, "localizer.pt"))
    assert stats["stages"]["localize"]["state"] == "done earlier"  # the same model: localize need not rerun


def test_a_new_setting_retrains_and_relocalises_but_never_reingests(trained, sample_dir, three_clips, tmp_path):
    src, _ = trained
    out = copy_run(src, str(tmp_path / "changed"))
    stats = build_run(sample_dir, out, "local", input_override=three_clips,
                      overrides={**SETTINGS, "stages.train_localizer.steps": 5})
    states = {name: s["state"] for name, s in stats["stages"].items()}
    assert states["ingest"] == states["duration"] == states["silence"] == "done earlier"
    assert states["train_localizer"].startswith("ran") and states["localize"] == "ran 2/2 chunks, measured 3"
    assert len(json.load(open(work(out, "history.json")))["loss"]) == 5
    before, after = rows(src, "localize"), rows(out, "localize")
    assert {r["loc_model"] for r in before}.isdisjoint({r["loc_model"] for r in after})
    assert any(not np.array_equal(np.load(os.path.join(src, a["heatmap_path"])), np.load(os.path.join(out, b["heatmap_path"])))
               for a, b in zip(before, after))


def test_fewer_than_two_usable_clips_is_a_reason_on_every_row(tmp_path):
    from binauralizer.testing import synthetic_pool

    ctx = RunContext(out=str(tmp_path))
    ingested = write_ingested(tmp_path, synthetic_pool(1, seed=3, seconds=1.0))
    ghost = {"clip_id": "ghost", "source_id": "ghost", "window_start": 0, "window_samples": 16000}
    stage = TrainLocalizerStage(TrainLocalizerStage.params_from({"steps": 2}), ctx)
    out = stage.run_global([*ingested, ghost])
    assert "1 usable clip(s)" in out[0]["_error"] and "at least 2" in out[0]["_error"]
    assert "rerun ingest" in out[1]["_error"]  # the unreadable clip says why, too
    assert not os.path.exists(work(str(tmp_path), "localizer.pt"))


def test_config_errors_name_the_fix(tmp_path):
    from pipeline.config import load_config

    base = ["ingest", "duration", "silence", "localize"]
    for method in ("learned", "fusion-learned"):
        with pytest.raises(ConfigError, match="add it .*run.stages.*or set stages.localize.checkpoint"):
            load_config(SAMPLE_CONFIG, {"run.stages": base, "stages.localize.method": method})
    with pytest.raises(ConfigError, match="train_localizer is not in run.stages before localize"):
        load_config(SAMPLE_CONFIG, {"run.stages": [*base, "train_localizer"], "stages.localize.method": "learned"})
    ok = load_config(SAMPLE_CONFIG, {"run.stages": base, "stages.localize.method": "learned",
                                     "stages.localize.checkpoint": str(tmp_path / "mine.pt")})
    assert ok.stage_params["localize"].checkpoint.endswith("mine.pt")  # a file of your own needs no stage
    with pytest.raises(ConfigError, match="batch_size: at least 2"):
        TrainLocalizerStage.params_from({"batch_size": 1})
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        TrainLocalizerStage.params_from({"stepz": 3})
    with pytest.raises(ConfigError, match="steps: Input should be a valid integer"):
        TrainLocalizerStage.params_from({"steps": "3"})
    from binauralizer.localize.learned import LocalizerTrainConfig
    import dataclasses

    # every trainer field is a setting, with the trainer's default; resources are not fingerprinted
    params = TrainLocalizerStage.params_from({})
    for f in dataclasses.fields(LocalizerTrainConfig):
        assert f.name == "device" or getattr(params, f.name) == f.default
    stage = TrainLocalizerStage(TrainLocalizerStage.params_from({"num_gpus": 0.5, "batch_size": 8}), RunContext(out="x"))
    assert stage.resources().gpus == 0.5 and stage.measure_settings()["batch_size"] == 8
    assert "num_gpus" not in stage.measure_settings()


def test_fusion_learned_adds_the_runs_model_to_semantic_and_motion(trained, tmp_path):
    from stages.localize import LocalizeStage

    out, _ = trained
    row = {k: v for k, v in rows(out, "silence")[0].items() if k not in ("status", "reason")}
    stage = LocalizeStage(LocalizeStage.params_from({"method": "fusion-learned"}), RunContext(out=out))
    stage.setup()
    res = stage.measure([row])[0]
    assert res["loc_method"] == "fusion-learned" and "_error" not in res
    assert res["loc_model"] == "sha256:" + sha256(work(out, "localizer.pt"))[:16]
    assert np.load(os.path.join(out, res["heatmap_path"])).shape == (80, 56, 74)  # motion's grid, the finest
    # no model yet (train_localizer not run on this folder): every clip fails saying what to run
    empty = LocalizeStage(LocalizeStage.params_from({"method": "learned"}), RunContext(out=str(tmp_path)))
    empty.setup()
    assert "run the train_localizer stage before localize" in empty.measure([row])[0]["_error"]
