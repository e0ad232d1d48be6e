"""validate stage: per-clip metric columns, failed rows with reasons, downmix quality backends."""

from __future__ import annotations

import os

import numpy as np
import pytest

import outputruns
from stages.base import ConfigError
from manifests.schema import STAGE_COLUMNS
from output.publish import publish
from stages.validate import ValidateStage




@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    ctx, rows = outputruns.build_run(str(tmp_path_factory.mktemp("run")))
    os.unlink(os.path.join(ctx.out, "work", "convert", "clipB_w1", "binaural.npy"))  # convert never ran
    bad = os.path.join(ctx.out, "work", "convert", "clipA_w1", "binaural.npy")
    np.save(bad, np.zeros((3, 100), np.float32))  # wrong shape
    return ctx, rows, outputruns.validate_run(ctx, rows, report_clips=1)


def test_metric_columns_per_clip(validated):
    _, rows, out = validated
    assert len(out) == len(rows)
    a0, b0 = out[0], out[2]
    assert set(a0) == set(ValidateStage.writes) == set(STAGE_COLUMNS["validate"]) and set(b0) == set(a0)
    assert 0.8 < a0["iacc"] < 0.95 and a0["ild_db"] > 5 and 0.4 < a0["itd_ms"] < 0.6  # KEMAR at 60 degrees
    assert a0["lateral_agree"] == 1.0 and a0["itd_within_head"] is True  # KEMAR's own ITD fits KEMAR
    assert b0["lateral_agree"] == 1.0  # moving left to right, rendered along the same path
    assert b0["iacc"] > 0.7  # per-segment IACC: motion does not decorrelate it


def test_bad_clips_fail_with_reasons_and_do_not_stop_the_rest(validated):
    ctx, _, out = validated
    assert out[3] == {"_error": f"validate: missing {ctx.out}/work/convert/clipB_w1/binaural.npy: rerun convert"}
    assert out[1]["_error"].startswith("validate: binaural audio must have shape (2, N)")
    assert os.path.exists(os.path.join(ctx.out, "report", "index.html"))
    assert os.path.exists(os.path.join(ctx.out, "README.md"))


def test_downmix_quality_is_scored_per_clip_by_the_sources_backend(validated, offline):
    _, _, out = validated
    assert all(1 <= o["downmix_dsp_score"] <= 10 and o["downmix_aes_pq"] is None for o in (out[0], out[2]))
    params = ValidateStage.params_from({})
    assert ValidateStage.preflight(params, None, {"quality": {"backend": "dsp"}}) == {"downmix_backend": "dsp"}
    missing = ValidateStage.preflight(params, None, {"quality": {"backend": "audiobox"}})
    assert missing["downmix_backend"] == "audiobox" and "CheckpointNotFound" in missing["downmix_skipped"]
    given = ValidateStage.preflight(params, None, {"quality": {"backend": "audiobox", "checkpoint": "/c.pt"}})
    assert given == {"downmix_backend": "audiobox", "downmix_checkpoint": "/c.pt"}
    off = ValidateStage.preflight(ValidateStage.params_from({"downmix_quality": "off"}), None, {})
    assert off["downmix_skipped"] == "downmix_quality is off"


@pytest.mark.parametrize("settings, key", [
    ({"report_clips": -1}, "report_clips"),
    ({"downmix_quality": "magic"}, "downmix_quality"),
    ({"segment_s": 0.0}, "segment_s"),
    ({"centre_deg": 95.0}, "centre_deg"),
    ({"colour": "red"}, "unknown"),
])
def test_bad_settings_are_config_errors(settings, key):
    with pytest.raises(ConfigError, match=key):
        ValidateStage.params_from(settings)


def test_publish_rerenders_with_the_final_funnel_and_shard_sizes(validated):
    import json

    ctx, _, _ = validated
    with open(os.path.join(ctx.out, "stats.json")) as fh:
        preflight = json.load(fh)["preflight"]
    with open(os.path.join(ctx.out, "stats.json"), "w") as fh:
        json.dump({"stages": {"validate": {"in": 4, "kept": 2, "dropped": {}, "failed": 2, "wall_s": 1.0}},
                   "preflight": preflight}, fh)
    os.makedirs(os.path.join(ctx.out, "shards"), exist_ok=True)
    with open(os.path.join(ctx.out, "shards", "sizes.json"), "w") as fh:
        json.dump({"total": {"shards": 3, "samples": 2, "bytes": 3 << 30}, "splits": {"train": {"shards": 3}}}, fh)
    assert publish(ctx.out)["clips"] == 2
    html = open(os.path.join(ctx.out, "report", "index.html"), encoding="utf-8").read()
    assert "<td>validate</td><td>4</td><td>2</td><td>0</td><td>2</td>" in html
    card = open(os.path.join(ctx.out, "README.md"), encoding="utf-8").read()
    assert "Shards: 3 tar files, 3.00 GiB in all." in card
    assert [line.split(" | ")[-1] for line in card.splitlines() if line.startswith("| train | ")] == ["3 |"]
    assert "| validate | 4 | 2 | 0 | 2 |" in card
    assert publish(str(ctx.out) + "_none") is None  # validate never ran there


def test_itd_is_checked_against_the_runs_head():
    """validate reads spatial.hrir: the head's largest ITD bounds what a clip may show."""
    from stages.base import Spatial
    from stages.validate import ValidateParams, ValidateStage

    kemar = ValidateStage.preflight(ValidateParams(), Spatial(hrir="kemar"), {})
    sonicom = ValidateStage.preflight(ValidateParams(), Spatial(hrir="sonicom-1"), {})
    assert 0.70 < kemar["head_itd_max_ms"] < 0.78 and 0.70 < sonicom["head_itd_max_ms"] < 0.80
    assert kemar["head_itd_max_ms"] != sonicom["head_itd_max_ms"]
