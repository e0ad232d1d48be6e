"""convert as a pipeline stage: three modes, per-clip failures, same bytes every run."""

import numpy as np
import pytest

from binauralizer import metrics
from binauralizer.testing import synthetic_pool
from binauralizer.pseudobinaural.training import TrainConfig, train
from runhelpers import write_ingested
from manifests.io import atomic_save_npy
from stages.base import ConfigError, RunContext, Spatial, StageError
from stages.convert import NO_TRAJECTORY, ConvertStage
from stages.validate import ValidateStage


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
    assert out[0]["binaural_path"] == f"work/convert/{rows[0]['clip_id']}/binaural.npy"
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


def _traj(frames: int, az_start: float, az_end: float, dist_m: float = 1.0) -> np.ndarray:
    az = np.linspace(az_start, az_end, frames)
    return np.stack([az, np.zeros(frames), np.full(frames, dist_m)], 1).astype(np.float32)


def with_traj(tmp_path, row, traj) -> dict:
    """What localize leaves: the trajectory file and its path in the row."""
    rel = f"work/localize/{row['clip_id']}/traj.npy"
    atomic_save_npy(str(tmp_path / rel), traj)
    return {**row, "traj_path": rel}


def test_mono_sh_and_direct_modes(tmp_path):
    ctx, rows = make_run(tmp_path, n=2)
    assert run_convert(ctx, rows, mode="mono") == [
        {"conversion_mode": "mono", "binaural_path": f"work/convert/{r['clip_id']}/binaural.npy"} for r in rows]
    m = binaural(tmp_path, rows[0]["clip_id"])
    audio = np.load(tmp_path / "work" / "ingest" / rows[0]["clip_id"] / "audio.npy")
    assert np.array_equal(m[0], m[1]) and np.allclose(m[0], audio, atol=1e-6)  # L = R = the source
    out = run_convert(ctx, rows, mode="sh")
    assert out[0] == {"_error": NO_TRAJECTORY}
    rows = [with_traj(tmp_path, r, _traj(12, 70, -70)) for r in rows]  # 1.5 s at 8 fps: left to right
    for mode in ("sh", "direct"):
        assert [o["conversion_mode"] for o in run_convert(ctx, rows, mode=mode)] == [mode] * 2
        s = binaural(tmp_path, rows[1]["clip_id"])
        assert metrics.broadband_ild_db(s[:, :4000]) > 2 and metrics.broadband_ild_db(s[:, -4000:]) < -2, mode


def test_direct_mode_uses_distance_and_sh_does_not(tmp_path):
    ctx, rows = make_run(tmp_path, n=1)
    near, far = (with_traj(tmp_path, {**rows[0], "clip_id": name}, _traj(12, 30, 30, d))
                 for name, d in (("near", 1.0), ("far", 3.0)))
    for name in ("near", "far"):  # same audio under both ids
        (tmp_path / "work" / "ingest" / name).mkdir()
        (tmp_path / "work" / "ingest" / name / "audio.npy").write_bytes(
            (tmp_path / "work" / "ingest" / rows[0]["clip_id"] / "audio.npy").read_bytes())
    near, far = {**near, "source_id": "near"}, {**far, "source_id": "far"}
    run_convert(ctx, [near, far], mode="sh")
    assert binaural(tmp_path, "near").tobytes() == binaural(tmp_path, "far").tobytes()  # constant: ignored
    run_convert(ctx, [near, far], mode="direct")
    a, b = binaural(tmp_path, "far"), binaural(tmp_path, "near")
    # 2 m further: (3 - 1) / 343 s = 93.3 samples later; the level is renormalised
    lag = int(np.argmax(np.correlate(a[0, :8000], b[0, :8000], "full"))) - 7999
    assert lag in (93, 94)


def test_validate_reads_binaural_path_and_traj_path(tmp_path):
    ctx, rows = make_run(tmp_path, n=1)
    row = with_traj(tmp_path, rows[0], _traj(12, 60, -60))
    row = {**row, **run_convert(ctx, [row], mode="sh")[0]}
    validate = ValidateStage(ValidateStage.params_from({}), ctx)
    measured = validate.clip_metrics(row)
    assert measured["lateral_agree"] == 1.0  # ILD sign agrees with the trajectory off centre
    direct = metrics.clip_metrics(binaural(tmp_path, row["clip_id"]), 16000, traj=_traj(12, 60, -60), traj_fps=8)
    assert measured["ild_db"] == direct["ild_db"] and measured["ild_db"] > 3.0
    with pytest.raises(StageError, match="rerun convert"):
        validate.clip_metrics({**row, "binaural_path": "work/convert/gone/binaural.npy"})


def test_preflight_names_the_hrir_set():
    info = ConvertStage.preflight(ConvertStage.params_from({"mode": "sh"}), Spatial())
    assert info["hrir"].endswith("MIT_KEMAR_normal_pinna.sofa") and info["directions"] == 710
    with pytest.raises(ConfigError, match=r"spatial.hrir '/no/such.sofa'.*kemar, sonicom-1, sonicom-2"):
        ConvertStage.preflight(ConvertStage.params_from({"mode": "direct"}), Spatial(hrir="/no/such.sofa"))
    assert ConvertStage.preflight(ConvertStage.params_from({}), Spatial(hrir="/no/such.sofa")) == {"mode": "unet"}


@pytest.mark.parametrize("section, key", [({"mode": "stereo"}, "mode"), ({"layout": "cube"}, "layout"),
                                          ({"interp": "cubic"}, "interp"), ({"update_s": 0.0}, "update_s")])
def test_bad_settings_are_config_errors(section, key):
    with pytest.raises(ConfigError, match=f"stages.convert.{key}"):
        ConvertStage.params_from(section)


def test_a_retrained_unet_is_a_new_measurement_identity(tmp_path):
    """mode unet: the model's digest is a setting, so a U-Net retrained on other clips never reuses
    binaural audio cached from the old one; the other modes do not depend on it."""
    import os

    ctx = RunContext(out=str(tmp_path))
    unet = ConvertStage(ConvertStage.params_from({"mode": "unet"}), ctx)
    direct = ConvertStage(ConvertStage.params_from({"mode": "direct"}), ctx)
    assert unet.measure_settings()["model_sha256"] == "absent" and "model_sha256" not in direct.measure_settings()
    path = tmp_path / "work" / "train_unet" / "model.pt"
    os.makedirs(path.parent)
    path.write_bytes(b"one model")
    first = unet.measure_settings()["model_sha256"]
    path.write_bytes(b"another model")
    assert unet.measure_settings()["model_sha256"] not in (first, "absent")
