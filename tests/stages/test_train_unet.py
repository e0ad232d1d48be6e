"""train_unet as a pipeline stage: kept rows in, model + curve + checkpoints out, rows through."""

import json
import os

import numpy as np
import pytest

from binauralizer.testing import synthetic_pool
from runhelpers import write_ingested
from stages.base import ConfigError, RunContext
from stages.train_unet import TrainUNetStage, model_path


def make_run(tmp_path, n=3):
    """A run folder holding what ingest writes: work/ingest/<id>/audio.npy and frames.npy."""
    ctx = RunContext(out=str(tmp_path))
    return ctx, write_ingested(tmp_path, synthetic_pool(n, seed=9, seconds=1.5))


MICRO = {"steps": 4, "batch_size": 4, "width": 0.0625, "frame_height": 64, "frame_width": 128, "checkpoint_every": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_trains_writes_the_model_and_passes_rows_through(tmp_path):
    ctx, rows = make_run(tmp_path)
    rows.append({"clip_id": "missing", "source_id": "missing", "window_start": 0, "window_samples": 16000})
    stage = TrainUNetStage(TrainUNetStage.params_from(MICRO), ctx)
    out = stage.run_global(rows)
    assert out[:3] == [{}, {}, {}]
    assert "missing" in out[3]["_error"] or "ingest" in out[3]["_error"]
    assert os.path.exists(model_path(ctx))
    work = tmp_path / "work" / "train_unet"
    history = json.loads((work / "loss_curve.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4] and all(np.isfinite(h["total"]) for h in history)
    assert (work / "loss_curve.png").stat().st_size > 1000
    first = (work / "train_summary.json").read_text()
    # same settings again: resumes at the last checkpoint (step 4), trains nothing, same summary
    assert stage.run_global(rows)[:3] == [{}, {}, {}]
    assert json.loads((work / "train_summary.json").read_text())["resumed_from"] == 4
    assert json.loads(first)["final_loss"] == json.loads((work / "train_summary.json").read_text())["final_loss"]


def test_no_usable_clip_fails_every_row_with_a_reason(tmp_path):
    ctx = RunContext(out=str(tmp_path))
    stage = TrainUNetStage(TrainUNetStage.params_from(MICRO), ctx)
    out = stage.run_global([{"clip_id": "a", "source_id": "a", "window_start": 0, "window_samples": 10}])
    assert "_error" in out[0] and not os.path.exists(model_path(ctx))


def test_settings_are_validated_and_batch_size_is_fingerprinted(tmp_path):
    with pytest.raises(ConfigError, match="visual"):
        TrainUNetStage.params_from({"visual": "vgg"})
    with pytest.raises(ConfigError, match="frame"):
        TrainUNetStage.params_from({"frame_height": 16})
    with pytest.raises(ConfigError, match="split"):
        TrainUNetStage.params_from({"batch_size": 15, "ddp_workers": 2})
    with pytest.raises(ConfigError, match="ddp_workers: N and num_gpus: 1"):
        TrainUNetStage.params_from({"num_gpus": 8})  # per worker, as everywhere
    with pytest.raises(ConfigError, match="visual_checkpoint"):
        TrainUNetStage.params_from({"visual": "resnet18", "visual_checkpoint": str(tmp_path / "none.pth")})
    with pytest.raises(ConfigError, match="resnet18"):
        TrainUNetStage.params_from({"visual": "resnet18"})
    ctx = RunContext(out=str(tmp_path))
    a = TrainUNetStage(TrainUNetStage.params_from({"batch_size": 16}), ctx).measure_settings()
    b = TrainUNetStage(TrainUNetStage.params_from({"batch_size": 32}), ctx).measure_settings()
    assert a != b and "num_gpus" not in a


def test_different_rows_are_a_new_training_identity(tmp_path):
    """A checkpoint of other data is never resumed: one row fewer retrains from step 0."""
    ctx, rows = make_run(tmp_path)
    stage = TrainUNetStage(TrainUNetStage.params_from(MICRO), ctx)
    stage.run_global(rows)
    work = tmp_path / "work" / "train_unet"
    first = json.loads((work / "train_summary.json").read_text())
    stage.run_global(rows[:2])
    second = json.loads((work / "train_summary.json").read_text())
    assert second["resumed_from"] == 0 and second["fingerprint"] != first["fingerprint"]
    assert second["config"]["data_digest"] != first["config"]["data_digest"]
