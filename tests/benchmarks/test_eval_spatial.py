"""The spatial evaluation's figures measure space: the true path scores, mono and the wrong side fail."""

import numpy as np

from benchmarks import eval_spatial
from samplegen import spatial_scenes


def test_figures_separate_right_from_wrong_on_real_scenes(tmp_path):
    scenes = [spatial_scenes.scene(i) for i in (1, 18)]  # static right among distractors; moving sweep
    rows = {"oracle": [], "mono": [], "mirrored": []}
    for sc in scenes:
        ref = eval_spatial.truth(sc)
        true = np.stack([sc.az_deg, sc.el_deg, np.ones_like(sc.az_deg)], 1)
        mirrored = true * [-1, 1, 1]
        preds = {"oracle": eval_spatial.render(sc, true), "mono": np.repeat(sc.mono[None], 2, 0),
                 "mirrored": eval_spatial.render(sc, mirrored)}
        for name, pred in preds.items():
            rows[name].append((sc, eval_spatial.score_scene(pred, ref, sc)))
    res = {name: eval_spatial.summarise(r) for name, r in rows.items()}
    # the true path through another head: right side, ILD follows azimuth, ITD close
    assert res["oracle"]["side"] > 0.95 and res["oracle"]["side_static_distractor"] > 0.95
    assert res["oracle"]["spearman_moving"] > 0.9
    assert res["oracle"]["itd_err_us"] < 60
    # mono has no side and no ITD; the mirrored path is on the wrong side with the wrong ITD sign
    assert res["mono"]["side"] == 0.0 and res["mono"]["itd_err_us"] > 150
    assert res["mirrored"]["side"] < 0.05 and res["mirrored"]["spearman_moving"] < -0.9
    assert res["mirrored"]["itd_err_us"] > 2 * res["oracle"]["itd_err_us"] + 100
    assert res["oracle"]["ild_err_db"] < res["mono"]["ild_err_db"] < res["mirrored"]["ild_err_db"]
    # per scene: the table and the tracks plot show which scene went wrong
    per_scene = eval_spatial.per_scene_sides({"localiser fusion-learned (transductive)": rows["oracle"],
                                              "localiser motion-centroid": rows["mirrored"]})
    assert [r["scene"] for r in per_scene] == [sc.scene_id for sc in scenes]
    assert all(r["fusion-learned (transductive)"] > 0.95 and r["motion-centroid"] < 0.05 for r in per_scene)
    assert per_scene[0]["static_among_distractors"] and per_scene[1]["kind"] == "moving"
    table = eval_spatial.per_scene_markdown(per_scene)
    assert table[2] == "| scene | kind | motion-centroid | fusion-learned (transductive) |"
    tracks = {sc.scene_id: {"times_s": sc.times_s, "truth": sc.az_deg, "motion-centroid": -sc.az_deg[::2]}
              for sc in scenes}
    png = tmp_path / "tracks.png"
    eval_spatial.plot_tracks(tracks, per_scene, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_localiser_rows_use_the_configs_trajectory_settings(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stages:\n  localize: {method: fusion-add, smoothing: 3.0, full_confidence: 0.2}\n")
    assert eval_spatial.trajectory_options(str(cfg)) == {"smoothing": 3.0, "full_confidence": 0.2}
    cfg.write_text("stages:\n  localize: {method: fusion-object, tracker: path, jump_cost: 3}\n")
    assert eval_spatial.trajectory_options(str(cfg)) == {"tracker": "path", "jump_cost": 3.0}
    assert eval_spatial.trajectory_options() == {"tracker": "path", "jump_cost": 3.0, "smoothing": 3.0}  # the sample's
    cfg.write_text("stages:\n  localize: {method: motion}\n")
    assert eval_spatial.trajectory_options(str(cfg)) == {}  # the library's defaults
