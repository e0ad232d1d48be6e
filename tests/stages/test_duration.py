import numpy as np

from stages.base import DROPPED, KEPT, RunContext
from stages.clipdata import atomic_save_npy, load_audio
from stages.duration import DurationStage


def stage(tmp_path, **params):
    return DurationStage(DurationStage.params_from(params), RunContext(out=str(tmp_path)))


def row(n):
    return {"clip_id": "c", "source_id": "c", "n_samples": n}


def test_short_clips_dropped_with_reason(tmp_path):
    s = stage(tmp_path)
    assert s.decide(row(159_999)) == (DROPPED, "too short: 10.00 s < 10 s")
    assert s.decide(row(96_000)) == (DROPPED, "too short: 6.00 s < 10 s")
    assert s.decide(row(160_000)) == (KEPT, "")


def test_windows_exact_to_the_sample(tmp_path):
    first = stage(tmp_path).expand(row(25 * 16000))
    assert [(r["clip_id"], r["window_start"], r["window_samples"]) for r in first] == [("c", 0, 160000)]
    every = stage(tmp_path, windows="all").expand(row(25 * 16000))
    assert [(r["clip_id"], r["window_start"], r["window_samples"]) for r in every] == [
        ("c_w0", 0, 160000), ("c_w1", 160000, 160000)]
    assert all(r["padded_samples"] == 0 and r["source_id"] == "c" for r in every)


def test_tolerance_keeps_and_pads_nearly_full_clips(tmp_path):
    s = stage(tmp_path, tolerance_seconds=0.05)
    n = 159_680  # 9.98 s, as containers often report for 10 s clips
    assert s.decide(row(n))[0] == KEPT
    [window] = s.expand(row(n))
    assert window["padded_samples"] == 320
    atomic_save_npy(str(tmp_path / "work" / "ingest" / "c" / "audio.npy"), np.ones(n, np.float32))
    audio = load_audio(s.ctx, window)
    assert audio.shape == (160000,) and audio[:n].min() == 1.0 and not audio[n:].any()
