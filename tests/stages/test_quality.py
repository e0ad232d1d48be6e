"""The quality stage driven directly (no runner): backends, failures, decisions, OOM retry.

The Audiobox model runs with the session's random-weight checkpoint (real architecture and
format, written once per session at the same path tests/audioquality/test_audiobox.py uses).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audioquality import AES_COLUMNS, DSP_COLUMNS
from audioquality.audiobox import REPO_ID, write_random_checkpoint
from stages.base import DROPPED, FAILED, KEPT, ConfigError, RunContext
from stages.clipdata import atomic_save_npy
from stages.quality import QualityStage

SR = 16000




pytestmark = pytest.mark.usefixtures("offline")  # every test: no hub, empty cache


def make_stage(out, **settings) -> QualityStage:
    return QualityStage(QualityStage.params_from(settings), RunContext(out=str(out)))


def write_clips(out) -> list[dict]:
    """Three scorable rows (one is a window inside a longer source) and three that must fail."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    sources = {
        # broadband bursts at 3 Hz over a floor 40 dB down: clean by every dsp measure
        "bursts": 0.2 * rng.standard_normal(t.size) * (0.01 + np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2),
        "noise": 0.2 * rng.standard_normal(3 * SR),
        "long": 0.1 * rng.standard_normal(6 * SR) * np.repeat(rng.random(60), SR // 10),
        "nan": np.where(np.arange(3 * SR) == 100, np.nan, 0.1),
        "short": 0.1 * rng.standard_normal(SR // 2),
    }
    for source_id, wav in sources.items():
        atomic_save_npy(f"{out}/work/ingest/{source_id}/audio.npy", np.asarray(wav, np.float32))
    rows = [{"clip_id": s, "source_id": s, "window_start": 0, "window_samples": len(w)} for s, w in sources.items()]
    rows.insert(2, {"clip_id": "long_w1", "source_id": "long", "window_start": 2 * SR, "window_samples": 3 * SR})
    rows = [r for r in rows if r["clip_id"] != "long"]
    rows.append({"clip_id": "gone", "source_id": "gone", "window_start": 0, "window_samples": SR})
    return rows  # bursts, noise, long_w1, nan, short, gone


@pytest.fixture(scope="module")
def audiobox_run(random_checkpoint, tmp_path_factory):
    """One actor's worth: setup once, measure every row once; the tests below reuse it."""
    out = tmp_path_factory.mktemp("quality_audiobox")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        stage = make_stage(out, backend="audiobox", checkpoint=random_checkpoint, batch_size=4, num_cpus=2)
        rows = write_clips(out)
        stage.setup()
        measured = stage.measure(rows)
    return stage, rows, measured


def test_audiobox_scores_four_axes_and_fails_bad_clips(audiobox_run):
    stage, rows, measured = audiobox_run
    assert stage.backend == "audiobox" and stage.resolved["checkpoint_origin"] == "config"
    assert stage.scorer.windows_scored == 3  # one 10 s window per scorable clip, nothing more
    for m in measured[:3]:
        assert m["quality_backend"] == "audiobox"
        assert all(m[c] is None for c in DSP_COLUMNS)  # dsp numbers never appear under a model run
        for column in AES_COLUMNS.values():
            # The package does not clamp; the random checkpoint stays near its means (3.6..5.7).
            assert math.isfinite(m[column]) and 1.0 <= m[column] <= 10.0
    assert len({m["aes_pq"] for m in measured[:3]}) == 3  # different audio, different scores
    assert measured[3] == {"_error": "quality: 1 non-finite audio samples (NaN/inf)"}
    assert measured[4]["_error"].startswith("quality: audio too short to score: 0.500 s < 1 s")
    assert "missing intermediate" in measured[5]["_error"] and "gone" in measured[5]["_error"]


def test_changed_threshold_redecides_without_rescoring(audiobox_run, tmp_path):
    stage, rows, measured = audiobox_run
    windows_before = stage.scorer.windows_scored
    scored = [dict(r, **m) for r, m in zip(rows[:3], measured[:3])]
    pq = sorted(r["aes_pq"] for r in scored)
    threshold = round((pq[0] + pq[1]) / 2, 4)

    stricter = make_stage(tmp_path, backend="audiobox", checkpoint=stage.params.checkpoint, min_pq=threshold)
    # Thresholds are decision keys: the measurement fingerprint does not move, so no rescoring.
    assert stricter.measure_settings() == stage.measure_settings()
    assert stricter.decision_settings() != stage.decision_settings()

    decisions = {r["clip_id"]: stricter.decide(r) for r in scored}
    worst = min(scored, key=lambda r: r["aes_pq"])
    assert decisions[worst["clip_id"]] == (DROPPED, f"quality: PQ {worst['aes_pq']:.2f} < {threshold:g}")
    assert [d for c, d in decisions.items() if c != worst["clip_id"]] == [(KEPT, "")] * 2
    assert [stage.decide(r) for r in scored] == [(KEPT, "")] * 3  # no thresholds: all kept
    assert not hasattr(stricter, "scorer")  # deciding never loaded a model
    assert stage.scorer.windows_scored == windows_before

    both = make_stage(tmp_path, backend="audiobox", min_ce=10.0, min_pq=10.0)
    status, reason = both.decide(worst)
    assert status == DROPPED and reason.startswith("quality: CE ") and "; PQ " in reason
    assert both.decide({"quality_backend": "audiobox", "aes_pq": None})[0] == FAILED


def test_gpu_out_of_memory_halves_the_batch_then_fails_only_that_clip(audiobox_run, monkeypatch):
    stage, rows, measured = audiobox_run
    model = stage.scorer.model
    real_forward = model.forward
    sizes = []

    def forward_fitting_one_window(batch):  # fault injection: a GPU that fits one window
        sizes.append(batch["wav"].shape[0])
        if batch["wav"].shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real_forward(batch)

    monkeypatch.setattr(model, "forward", forward_fitting_one_window)
    monkeypatch.setattr(stage, "_batch_size", 4)
    again = stage.measure(rows[:2])
    assert sizes == [2, 1, 1]  # both windows in one forward -> OOM; halved to 1 per forward -> fits
    assert stage._batch_size == 1  # later batches start at the size that fit
    for m, before in zip(again, measured[:2]):
        assert all(abs(m[c] - before[c]) < 1e-3 for c in AES_COLUMNS.values())

    def forward_always_oom(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(model, "forward", forward_always_oom)
    failed = stage.measure(rows[:2])
    assert failed == [{"_error": "quality: GPU out of memory even for one 10 s window at a time"}] * 2


def test_auto_without_checkpoint_falls_back_to_dsp(tmp_path, offline):
    stage = make_stage(tmp_path, min_pq=4.3, min_dsp_score=5.0)
    found = QualityStage.preflight(stage.params)
    assert found["backend"] == "dsp"
    assert f"Hugging Face cache {offline}" in found["why"] and "fell back to the signal-based dsp scorer" in found["why"]
    assert found["ignored_thresholds"] == ["min_pq"]

    rows = write_clips(tmp_path)
    stage.setup()
    measured = stage.measure(rows)
    for m in measured[:3]:
        assert m["quality_backend"] == "dsp" and set(m) == set(QualityStage.writes)  # one schema per run
        assert all(m[c] is None for c in QualityStage.writes if c.startswith("aes_"))
        assert 1.0 <= m["dsp_score"] <= 10.0
    assert measured[3]["_error"].startswith("quality: 1 non-finite")
    bursts, noise = (dict(r, **m) for r, m in zip(rows[:2], measured[:2]))
    assert bursts["dsp_snr_db"] > 30 and 0 > noise["dsp_snr_db"]  # stationary noise reads as noise
    assert bursts["dsp_bandwidth_hz"] > 7000 and bursts["dsp_clipping"] == 0.0
    assert bursts["dsp_score"] > 9 > 5 > noise["dsp_score"]
    assert stage.decide(bursts) == (KEPT, "")  # min_pq does not apply to dsp rows
    status, reason = stage.decide(noise)
    assert (status, reason) == (DROPPED, f"quality: dsp_score {noise['dsp_score']:.2f} < 5")


def test_audiobox_backend_without_checkpoint_stops_before_work(tmp_path, offline):
    params = QualityStage.params_from({"backend": "audiobox"})
    with pytest.raises(ConfigError) as err:
        QualityStage.preflight(params)
    text = str(err.value)
    assert "No Audiobox Aesthetics checkpoint found" in text
    assert f"Hugging Face cache {offline}" in text
    assert "download: not allowed (set stages.quality.allow_download: true" in text  # never downloads by default
    assert "quality.checkpoint: /path/to/checkpoint.pt" in text

    # A checkpoint that was named but is not there is an error for `auto` too, never a fallback.
    missing = QualityStage.params_from({"backend": "auto", "checkpoint": str(tmp_path / "ckpt.pt")})
    with pytest.raises(ConfigError, match="no such file or directory"):
        QualityStage.preflight(missing)


def test_auto_finds_the_hugging_face_cache(random_checkpoint, offline):
    repo = offline / f"models--{REPO_ID.replace('/', '--')}"
    (repo / "snapshots" / "feedbeef").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("feedbeef")
    (repo / "snapshots" / "feedbeef" / "checkpoint.pt").symlink_to(random_checkpoint)
    found = QualityStage.preflight(QualityStage.params_from({}))
    assert found["backend"] == "audiobox" and found["checkpoint_origin"] == "hf-cache"


def test_settings_are_checked_before_work():
    for bad in ({"backend": "model"}, {"precision": "int8"}, {"min_pq": "4.3"}, {"batch_size": 0}, {"colour": 1}):
        with pytest.raises(ConfigError):
            QualityStage.params_from(bad)
    params = QualityStage.params_from({"num_gpus": 0.25, "batch_size": 16})
    stage = QualityStage(params, RunContext(out="unused"))
    assert stage.resources().gpus == 0.25 and stage.batch_size() == 16
    assert stage.kind == "actor" and QualityStage.data_deps == ("ingest", "duration")
    assert set(QualityStage.decision_keys) == {"min_ce", "min_cu", "min_pc", "min_pq", "min_dsp_score"}
    assert QualityStage.preflight(QualityStage.params_from({"backend": "dsp"}))["backend"] == "dsp"
