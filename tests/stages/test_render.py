"""render stage on a tiny run folder: real KEMAR HRIRs, real trajectories, validate reading the result."""

from __future__ import annotations

import os

import numpy as np
import pytest

from binauralizer import metrics as M
from manifests.schema import STAGE_COLUMNS
from stages.base import ConfigError, RunContext
from stages.clipdata import atomic_save_npy
from binauralizer.level import PEAK_CEILING, level_gain
from stages.render import NO_TRAJECTORY, RenderStage
from stages.validate import ValidateStage

SR = 16000
FPS = 8
SECONDS = 4
N = SECONDS * SR


def _mono(seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(N)).astype(np.float32)


def _traj(az_start: float, az_end: float, dist_m: float = 1.0) -> np.ndarray:
    az = np.linspace(az_start, az_end, SECONDS * FPS)
    return np.stack([az, np.zeros_like(az), np.full_like(az, dist_m)], 1).astype(np.float32)


def add_clip(ctx: RunContext, clip_id: str, mono: np.ndarray, traj: np.ndarray | None) -> dict:
    atomic_save_npy(os.path.join(ctx.work, "ingest", clip_id, "audio.npy"), mono)
    if traj is not None:
        atomic_save_npy(os.path.join(ctx.work, "localize", clip_id, "traj.npy"), traj)
    return {"clip_id": clip_id, "source_id": clip_id, "window_start": 0, "window_samples": N, "frame_fps": FPS}


def make_stage(ctx: RunContext, **params) -> RenderStage:
    stage = RenderStage(RenderStage.params_from(params), ctx)
    stage.setup()  # as every executor does before measuring
    return stage


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ctx = RunContext(out=str(tmp_path_factory.mktemp("render") / "out"))
    mono = _mono()
    rows = {
        "sweep": add_clip(ctx, "sweep", mono, _traj(60.0, -60.0)),
        "centre": add_clip(ctx, "centre", mono, _traj(0.0, 0.0)),
        "far": add_clip(ctx, "far", mono, _traj(30.0, 30.0, dist_m=3.0)),
        "near": add_clip(ctx, "near", mono, _traj(30.0, 30.0, dist_m=1.0)),
        "notraj": add_clip(ctx, "notraj", mono, None),
        "badtraj": add_clip(ctx, "badtraj", mono, np.zeros((32, 2), np.float32)),
    }
    results = dict(zip(rows, make_stage(ctx).measure(list(rows.values()))))
    return ctx, mono, rows, results


def _binaural(ctx: RunContext, result: dict) -> np.ndarray:
    return np.load(os.path.join(ctx.out, result["binaural_path"]))


def test_output_columns_file_and_shape(run):
    ctx, _, _, results = run
    assert results["sweep"] == {"conversion_mode": "sh", "binaural_path": "work/render/sweep/binaural.npy"}
    binaural = _binaural(ctx, results["sweep"])
    assert binaural.shape == (2, N) and binaural.dtype == np.float32
    assert np.all(np.isfinite(binaural))
    assert RenderStage.writes == STAGE_COLUMNS["render"]


def test_ild_over_time_follows_the_trajectory_from_left_to_right(run):
    ctx, _, _, results = run
    seg = M.segments(_binaural(ctx, results["sweep"]), SR, 0.5)
    # measured with KEMAR, order 1, lsq, ring of 8: +8.5 dB at the start, -8.4 dB at the end
    assert seg.ild_db[0] > 6.0 and seg.ild_db[-1] < -6.0
    az_at_segments = np.interp(seg.times_s, np.arange(SECONDS * FPS) / FPS, _traj(60.0, -60.0)[:, 0])
    assert np.corrcoef(seg.ild_db, az_at_segments)[0, 1] > 0.95
    assert np.all(np.diff(seg.ild_db) < 0.1)  # monotone within rounding as the source crosses


def test_static_centre_source_has_no_level_difference(run):
    ctx, _, _, results = run
    binaural = _binaural(ctx, results["centre"])
    seg = M.segments(binaural, SR, 0.5)
    assert np.max(np.abs(seg.ild_db)) < 1.0
    assert abs(10 * np.log10(np.sum(binaural[0] ** 2) / np.sum(binaural[1] ** 2))) < 1.0


def test_level_is_preserved_with_one_gain_for_both_ears(run):
    ctx, mono, _, results = run
    mono_db = 20 * np.log10(np.sqrt(np.mean(mono.astype(np.float64) ** 2)))
    for clip in ("sweep", "centre", "far"):
        binaural = _binaural(ctx, results[clip]).astype(np.float64)
        ear_db = 20 * np.log10(np.sqrt(np.mean(binaural**2)))
        downmix_db = 20 * np.log10(np.sqrt(np.mean(binaural.mean(axis=0) ** 2)))
        assert abs(ear_db - mono_db) < 0.01  # the documented normalisation: per-ear RMS = mono RMS
        assert abs(downmix_db - mono_db) < 3.0  # sweep: -2.1 dB (the ears decorrelate off centre)


def test_peak_ceiling_and_silence():
    loud = np.clip(np.random.default_rng(1).standard_normal(N) * 0.5, -1, 1)
    lateral = np.stack([loud * 2.0, loud * 0.2])
    assert np.max(np.abs(lateral * level_gain(loud, lateral))) == pytest.approx(PEAK_CEILING)
    assert level_gain(np.zeros(N), np.zeros((2, N))) == 0.0


def test_rerun_is_byte_identical(run):
    ctx, _, rows, results = run
    path = os.path.join(ctx.out, results["sweep"]["binaural_path"])
    with open(path, "rb") as fh:
        first = fh.read()
    again = make_stage(ctx).measure([rows["sweep"]])
    assert again == [results["sweep"]]
    with open(path, "rb") as fh:
        assert fh.read() == first


def test_missing_or_malformed_trajectory_fails_the_clip_with_a_reason(run):
    _, _, _, results = run
    assert results["notraj"] == {"_error": NO_TRAJECTORY}
    assert NO_TRAJECTORY == "no trajectory: run localize first"
    assert results["badtraj"]["_error"] == "traj.npy has shape (32, 2), expected (T, 3) with T >= 1"
    assert "binaural_path" in results["sweep"]  # the bad clips did not stop the batch


def test_distance_is_ignored_by_default_and_delays_the_source_when_used(run):
    ctx, _, rows, results = run
    far, near = _binaural(ctx, results["far"]), _binaural(ctx, results["near"])
    assert far.tobytes() == near.tobytes()  # localize's distance is a constant: off by default
    ctx2 = RunContext(out=os.path.join(ctx.out, "with_distance"))
    for clip in ("far", "near"):
        add_clip(ctx2, clip, np.load(os.path.join(ctx.work, "ingest", clip, "audio.npy")),
                 np.load(os.path.join(ctx.work, "localize", clip, "traj.npy")))
    out = make_stage(ctx2, use_distance=True).measure([rows["far"], rows["near"]])
    far, near = _binaural(ctx2, out[0]), _binaural(ctx2, out[1])
    # 2 m further: (3 - 1) / 343 s = 93.3 samples later; the overall level is renormalised
    xcorr = np.correlate(far[0, :8000], near[0, :8000], "full")
    lag = int(np.argmax(xcorr)) - 7999
    assert lag in (93, 94)
    assert np.sqrt(np.mean(far.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(near.astype(np.float64) ** 2)), rel=1e-3)


def test_validate_reads_the_render_output(run):
    ctx, _, rows, results = run
    assert not os.path.exists(os.path.join(ctx.work, "convert"))  # only render wrote binaural audio
    validate = ValidateStage(ValidateStage.params_from({}), ctx)
    metrics = validate.clip_metrics({**rows["sweep"], **results["sweep"]})
    assert metrics["lateral_agree"] == 1.0  # ILD sign agrees with the trajectory in every off-centre segment
    direct = M.clip_metrics(_binaural(ctx, results["sweep"]), SR, traj=_traj(60.0, -60.0), traj_fps=FPS)
    assert metrics["ild_db"] == direct["ild_db"] and metrics["ild_db"] > 3.0  # measured 5.3 dB
    # first-order SH through 8 virtual loudspeakers decorrelates the ears off centre: per-segment IACC 0.66
    assert 0.5 < metrics["iacc"] < 0.8
    with pytest.raises(Exception, match="rerun render or convert"):
        validate.clip_metrics({**rows["sweep"], "binaural_path": "work/render/gone/binaural.npy"})


def test_preflight_names_the_set_and_how_to_get_it():
    info = RenderStage.preflight(RenderStage.params_from({}))
    assert info["hrir"].endswith("MIT_KEMAR_normal_pinna.sofa")
    assert info["directions"] == 710 and info["source_fs"] == 44100
    with pytest.raises(ConfigError, match=r"stages.render.hrir '/no/such.sofa'.*kemar, sonicom-1, sonicom-2"):
        RenderStage.preflight(RenderStage.params_from({"hrir": "/no/such.sofa"}))


@pytest.mark.parametrize("section, key", [({"mode": "ambisonic"}, "mode"), ({"order": 0}, "order"),
                                          ({"decoder": "mmse"}, "decoder"), ({"update_s": 0.0}, "update_s"),
                                          ({"use_distance": "yes"}, "use_distance")])
def test_bad_settings_are_config_errors(section, key):
    with pytest.raises(ConfigError, match=f"stages.render.{key}"):
        RenderStage.params_from(section)
