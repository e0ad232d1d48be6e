"""The spatial evaluation's figures measure space: the true path scores, mono and the wrong side fail."""

import numpy as np

from benchmarks import eval_spatial
from samplegen import spatial_scenes


def test_figures_separate_right_from_wrong_on_real_scenes():
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


def test_localiser_rows_use_the_configs_trajectory_settings(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stages:\n  localize: {method: fusion-add, smoothing: 3.0, full_confidence: 0.2}\n")
    assert eval_spatial.trajectory_options(str(cfg)) == {"smoothing": 3.0, "full_confidence": 0.2}
    cfg.write_text("stages:\n  localize: {method: motion}\n")
    assert eval_spatial.trajectory_options(str(cfg)) == {}  # the library's defaults
