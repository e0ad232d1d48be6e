"""convert as a pipeline stage: three modes, per-clip failures, same bytes every run."""

import numpy as np
import pytest

from binauralizer import metrics
from binauralizer.testing import synthetic_pool
from binauralizer.pseudobinaural.training import TrainConfig, train
from runhelpers import write_ingested
from stages.base import ConfigError, RunContext
from stages.convert import ConvertStage


def make_run(tmp_path, n=3):
    """A run folder holding what ingest writes: work/ingest/<id>/audio.npy and frames.npy."""
    ctx = RunContext(out=str(tmp_path))
    return ctx, write_ingested(tmp_path, synthetic_pool(n, seed=9, seconds=1.5))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_convert(ctx, rows, **params):
    stage = ConvertStage(ConvertStage.params_from(params), ctx)
    stage.setup()
    return stage.measure(rows)


def binaural(tmp_path, clip_id):
    return np.load(tmp_path / "work" / "convert" / clip_id / "binaural.npy")


def test_unet_mode_writes_binaural_and_is_deterministic(tmp_path):
    ctx, rows = make_run(tmp_path)
    assert "no trained model" in run_convert(ctx, rows)[0]["_error"]
    cfg = TrainConfig(steps=2, batch_size=2, width=0.0625, frame_size=(64, 128), checkpoint_every=2)
    train(cfg, synthetic_pool(2, seed=0, seconds=1.0), ctx.work_dir("train_unet"))
    bad = {"clip_id": "broken", "source_id": "broken", "window_start": 0, "window_samples": 100}
    out = run_convert(ctx, rows[:2] + [bad] + rows[2:], window_batch=8)
    assert [o.get("conversion_mode") for o in out] == ["unet", "unet", None, "unet"]
    assert "broken" in out[2]["_error"] or "ingest" in out[2]["_error"]
    first = {r["clip_id"]: binaural(tmp_path, r["clip_id"]).tobytes() for r in rows}
    audio = np.load(tmp_path / "work" / "ingest" / rows[0]["clip_id"] / "audio.npy")
    b = binaural(tmp_path, rows[0]["clip_id"])
    assert b.shape == (2, len(audio)) and b.dtype == np.float32
    # L + R is the input up to the one level gain, and each ear has the input's RMS
    gain = np.sqrt(np.mean(audio.astype(np.float64) ** 2)) / np.sqrt(np.mean(b.astype(np.float64) ** 2))
    assert gain == pytest.approx(1.0, rel=1e-4)
    ratio = b.sum(0).astype(np.float64) / np.where(np.abs(audio) > 1e-3, audio, np.nan)
    assert np.nanstd(ratio) < 1e-3 * abs(np.nanmean(ratio))
    run_convert(ctx, list(reversed(rows)), window_batch=8, batch_size=1)  # other order, same bytes
    assert all(binaural(tmp_path, r["clip_id"]).tobytes() == first[r["clip_id"]] for r in rows)


def test_mono_and_sh_modes(tmp_path):
    ctx, rows = make_run(tmp_path, n=2)
    assert run_convert(ctx, rows, mode="mono") == [{"conversion_mode": "mono"}] * 2
    m = binaural(tmp_path, rows[0]["clip_id"])
    audio = np.load(tmp_path / "work" / "ingest" / rows[0]["clip_id"] / "audio.npy")
    assert np.array_equal(m[0], m[1]) and np.allclose(m[0], audio, atol=1e-6)  # L = R = the source
    out = run_convert(ctx, rows, mode="sh")
    assert "localize" in out[0]["_error"]
    frames = 12  # 1.5 s at 8 fps: a source moving from +70 (left) to -70 degrees
    traj = np.stack([np.linspace(70, -70, frames), np.zeros(frames), np.ones(frames)], 1).astype(np.float32)
    for r in rows:
        (tmp_path / "work" / "localize" / r["clip_id"]).mkdir(parents=True)
        np.save(tmp_path / "work" / "localize" / r["clip_id"] / "traj.npy", traj)
    assert run_convert(ctx, rows, mode="sh") == [{"conversion_mode": "sh"}] * 2
    s = binaural(tmp_path, rows[1]["clip_id"])
    assert metrics.broadband_ild_db(s[:, :4000]) > 2 and metrics.broadband_ild_db(s[:, -4000:]) < -2


def test_mode_is_validated():
    with pytest.raises(ConfigError, match="mode"):
        ConvertStage.params_from({"mode": "stereo"})
