"""localize stage on the sample run's real ingest output: accuracy against the generator's truth."""

import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from samplegen.localizer_eval import score_clip
from runhelpers import copy_run
from stages.base import ConfigError, RunContext
from stages.localize import LocalizeStage


def kept_rows(out: str, stage: str = "silence") -> list[dict]:
    files = sorted(glob.glob(os.path.join(out, "manifests", stage, "chunk-*.parquet")))
    return [r for f in files for r in pq.read_table(f).to_pylist() if r["status"] == "kept"]


def make_stage(out: str, **params) -> LocalizeStage:
    stage = LocalizeStage(LocalizeStage.params_from(params), RunContext(out=out))
    stage.setup()  # as every executor does before measuring
    return stage


@pytest.fixture(scope="module")
def localized(local_run, sample_dir, tmp_path_factory):
    src, _ = local_run
    out = copy_run(src, str(tmp_path_factory.mktemp("localize") / "run"))
    rows = kept_rows(out)
    stage = make_stage(out)
    results = stage.measure(rows)
    truths = {}
    for row in rows:
        with open(os.path.join(sample_dir, "truth", f"{row['source_id']}.json"), encoding="utf-8") as fh:
            truths[row["clip_id"]] = json.load(fh)
    return out, stage, rows, results, truths


def test_every_kept_sample_clip_is_localised_with_work_files(localized):
    out, _, rows, results, _ = localized
    assert len(rows) == 17
    for row, res in zip(rows, results):
        assert "_error" not in res, (row["clip_id"], res)
        folder = os.path.join(out, "work", "localize", row["clip_id"])
        heat, spatial, traj = (np.load(os.path.join(folder, f"{n}.npy")) for n in ("heatmap", "spatial", "traj"))
        t = int(round(row["window_samples"] / 16000 * row["frame_fps"]))
        assert heat.shape[0] == spatial.shape[0] == traj.shape[0] == t
        assert heat.dtype == spatial.dtype == traj.dtype == np.float32
        assert spatial.shape[1] == 5 and traj.shape[1] == 3
        assert 0 <= heat.min() and heat.max() <= 1
        assert np.all(traj[:, 2] == 1.0) and np.all(np.abs(traj[:, 0]) <= 60) and np.all(np.abs(traj[:, 1]) <= 45)
        assert res["loc_method"] == "motion"
        assert res["az_mean_deg"] == round(float(traj[:, 0].mean()), 4)
        assert res["az_start_deg"] == round(float(traj[0, 0]), 4) and res["az_end_deg"] == round(float(traj[-1, 0]), 4)
        assert 0.0 < res["loc_confidence"] <= 1.0


def clip_scores(localized):
    out, _, rows, _, truths = localized
    scores = {}
    for row in rows:
        traj = np.load(os.path.join(out, "work", "localize", row["clip_id"], "traj.npy"))
        offset = row["window_start"] / 16000 * row["frame_fps"]  # the window's first frame, in frames
        truth = dict(truths[row["clip_id"]])
        shift = lambda rec: {**rec, "times_s": list(np.asarray(rec["times_s"]) - offset / row["frame_fps"])}  # noqa: E731
        truth = shift(truth)
        if "distractor" in truth:
            truth["distractor"] = shift(truth["distractor"])
        scores[row["clip_id"]] = (truths[row["clip_id"]]["kind"], score_clip(traj, truth, row["frame_fps"]))
    return scores


def test_azimuth_follows_the_true_trajectory_on_moving_clips(localized):
    scores = clip_scores(localized)
    spearman = {cid: s["spearman"] for cid, (_, s) in scores.items() if np.isfinite(s["spearman"])}
    assert len(spearman) >= 12  # every clip whose source moves
    assert min(spearman.values()) >= 0.8, spearman
    assert np.median(list(spearman.values())) >= 0.95
    static = {cid: s["mae_az_deg"] for cid, (kind, s) in scores.items() if kind == "static"}
    assert len(static) == 3 and max(static.values()) < 5.0, static


def test_the_sounding_object_wins_over_the_silent_distractor(localized):
    scores = {cid: s for cid, (kind, s) in clip_scores(localized).items() if kind == "distractor"}
    assert len(scores) == 2
    for cid, s in scores.items():
        assert s["mae_az_deg"] < 15.0, (cid, s)
        assert s["hit_rate"] >= 0.9, (cid, s)


def test_remeasuring_gives_identical_bytes(localized):
    out, stage, rows, results, _ = localized
    path = os.path.join(out, "work", "localize", rows[0]["clip_id"], "traj.npy")
    before = open(path, "rb").read()
    again = make_stage(out).measure(rows[:1])
    assert again == results[:1] and open(path, "rb").read() == before


def test_a_clip_without_intermediates_fails_alone(localized):
    out, stage, rows, _, _ = localized
    ghost = {**rows[0], "clip_id": "ghost", "source_id": "ghost"}
    res = stage.measure([ghost, rows[1]])
    assert res[0]["_error"].startswith("missing intermediate")
    assert "_error" not in res[1]


def test_params_are_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="method"):
        LocalizeStage.params_from({"method": "clip"})
    # learned without a checkpoint: the run's train_localizer model (checked with run.stages, test_train_localizer)
    assert LocalizeStage.params_from({"method": "learned"}).checkpoint is None
    with pytest.raises(ConfigError, match="stages.localize.tracker: expected one of"):
        LocalizeStage.params_from({"tracker": "peak"})
    with pytest.raises(ConfigError, match="stages.localize.jump_cost: must be >= 0"):
        LocalizeStage.params_from({"jump_cost": -1.0})
    with pytest.raises(ConfigError, match="grid"):
        LocalizeStage.params_from({"grid": 2})
    with pytest.raises(ConfigError, match=r"stages.localize.fov_deg: unknown setting"):
        LocalizeStage.params_from({"fov_deg": 100.0})  # the field of view is the run's spatial.fov_deg
    params = LocalizeStage.params_from({"method": "learned", "checkpoint": str(tmp_path / "none.pt")})
    with pytest.raises(ConfigError, match="no such file"):
        LocalizeStage.preflight(params)
    assert LocalizeStage.preflight(LocalizeStage.params_from({})) == {"method": "motion"}
    assert LocalizeStage.preflight(LocalizeStage.params_from({"method": "semantic"})) == {"method": "semantic"}
    assert LocalizeStage.preflight(LocalizeStage.params_from({"method": "objectness"})) == {"method": "objectness"}
    stage = make_stage(str(tmp_path), num_gpus=0.5, batch_size=2)
    assert stage.resources().gpus == 0.5 and stage.batch_size() == 2
    assert "num_gpus" not in stage.measure_settings() and "grid" in stage.measure_settings()
    assert stage.spatial_settings() == {"fov_deg": 120.0, "vfov_deg": 90.0}  # fingerprinted with the stage


def test_semantic_methods_run_through_the_stage(localized):
    out, _, rows, _, _ = localized
    row = next(r for r in rows if "distractor_sweep" in r["clip_id"])
    for method in ("semantic", "semantic+motion", "objectness", "fusion-object"):
        res = make_stage(out, method=method).measure([row])[0]
        assert res["loc_method"] == method and "_error" not in res
        heat = np.load(os.path.join(out, "work", "localize", row["clip_id"], "heatmap.npy"))
        coarse = method in ("semantic", "objectness")  # MobileNetV2's stride-32 grid; fusions: motion's
        assert heat.shape[0] == 80 and heat.shape[1:] == ((7, 10) if coarse else (56, 74))  # 224 x 298 frames
