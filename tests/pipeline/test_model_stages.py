"""A model stage (quality, Audiobox architecture with random weights) inside the runner, on both executors."""

import os

import pytest

from runhelpers import build_run, manifest_bytes


@pytest.fixture(scope="module")
def small_sample(sample_dir, tmp_path_factory):
    """Four decodable clips of the sample: enough for two actor batches of two."""
    keep = ("s000_moving_lr", "s010_static_left", "s012_stereo", "s015_moving_rl")
    lines = open(os.path.join(sample_dir, "manifest.csv")).read().splitlines()
    folder = tmp_path_factory.mktemp("small")
    path = folder / "manifest.csv"
    path.write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.split(",")[0] in keep]) + "\n")
    return str(path)


def test_quality_actor_stage_same_on_both_executors_and_rethresholds_without_the_model(
    sample_dir, small_sample, random_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = {
        "run.stages": ["ingest", "duration", "silence", "quality"],
        "stages.quality.backend": "audiobox",
        "stages.quality.checkpoint": random_checkpoint,
        "stages.quality.batch_size": 2,
        "stages.quality.num_cpus": 1.0,
        "run.chunk_size": 2,
    }
    outs = {}
    for executor in ("local", "ray"):
        out = str(tmp_path / executor)
        stats = build_run(sample_dir, out, executor, overrides=settings, input_override=small_sample)
        assert stats["stages"]["quality"]["in"] == 4
        assert stats["preflight"]["quality"]["backend"] == "audiobox"
        outs[executor] = out
    assert manifest_bytes(outs["local"]) == manifest_bytes(outs["ray"])

    import glob

    import pyarrow.parquet as pq

    rows = [r for f in sorted(glob.glob(os.path.join(outs["local"], "manifests", "quality", "*.parquet")))
            for r in pq.read_table(f).to_pylist()]
    scores = sorted(r["aes_pq"] for r in rows)
    assert all(r["quality_backend"] == "audiobox" for r in rows)
    assert all(1.0 <= r[k] <= 10.0 for r in rows for k in ("aes_ce", "aes_cu", "aes_pc", "aes_pq"))
    threshold = (scores[1] + scores[2]) / 2  # drops exactly the two lowest-PQ clips
    stats = build_run(sample_dir, outs["local"], "local", input_override=small_sample, only="quality",
                      overrides={**settings, "stages.quality.min_pq": threshold})
    assert stats["stages"]["quality"]["state"] == "ran 2/2 chunks, measured 0"  # the model never ran
    assert stats["stages"]["quality"]["kept"] == 2 and stats["stages"]["quality"]["dropped"] == {"quality": 2}
