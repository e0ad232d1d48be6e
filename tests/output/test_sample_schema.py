"""The one sample schema: json members are checked against it; the HF features come from it."""

import copy

import pytest

from output import sample_schema as S


def conforming() -> dict:
    """A json member with every field of the schema, the values of one real-looking sample."""
    def fill(fields):
        values = {"string": "x", "float64": 1.5, "int64": 3, "bool": False}
        return {f.name: fill(f.fields) if f.dtype == "struct" else values[f.dtype] for f in fields}

    return fill(S.JSON_FIELDS)


def test_a_conforming_member_passes_and_nulls_are_allowed():
    meta = conforming()
    S.check_json(meta)
    meta["quality"]["aes_pq"] = None
    meta["trajectory"] = None
    S.check_json(meta)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("spatial_caption"), "fields ['spatial_caption'] missing"),
    (lambda m: m["window"].update(extra=1), "json.window: fields [] missing and ['extra'] not in"),
    (lambda m: m.update(sample_rate="16000"), "json.sample_rate: expected int64, got str '16000'"),
    (lambda m: m["media"].update(clipped_samples=True), "json.media.clipped_samples: expected int64, got bool"),
    (lambda m: m.update(quality=[1]), "json.quality: expected an object, got list"),
])
def test_a_member_that_differs_is_named(change, message):
    meta = copy.deepcopy(conforming())
    change(meta)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        S.check_json(meta)


def test_features_declare_every_member_and_field():
    features = S.hf_features()
    assert list(features) == ["__key__", "__url__", "mp4", "flac", "mono.flac", "json", "spatial.npy", "traj.npy"]
    assert "mp4" not in S.hf_features(with_video=False)
    assert set(features["json"]) == {f.name for f in S.JSON_FIELDS}
    assert set(features["json"]["quality"]) == {"backend", *S.QUALITY_SCORES}
    rows = S.field_rows()
    assert ("spatial_metrics.itd_ms", "float64", "mean |interaural time difference|, ms") in rows
    assert len(rows) == 53
    assert any(name.endswith("centre_pull") for name, _, _ in rows)  # how much low confidence pulled to the centre
    assert any(name == "trajectory.model" for name, _, _ in rows)  # which learned localiser placed the source
