import numpy as np

from stages.base import DROPPED, KEPT, RunContext
from stages.clipdata import atomic_save_npy
from stages.silence import SilenceStage, frame_activity

SR = 16000


def measure(tmp_path, audio, **params):
    s = SilenceStage(SilenceStage.params_from(params), RunContext(out=str(tmp_path)))
    atomic_save_npy(str(tmp_path / "work" / "ingest" / "c" / "audio.npy"), audio.astype(np.float32))
    row = {"clip_id": "c", "source_id": "c", "window_start": 0, "window_samples": audio.size}
    return s, {**row, **s.measure([row])[0]}


def test_vad_alone_calls_steady_noise_voiced_the_gates_do_not(tmp_path):
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(10 * SR) * 10 ** (-30 / 20)).astype(np.float32)  # -30 dBFS hiss
    voiced, energy = frame_activity(noise, SR, 30, 0, -50.0)
    assert voiced.mean() > 0.95 and energy.mean() == 1.0  # VAD: "speech"; absolute gate: loud enough
    voiced, energy = frame_activity(noise, SR, 30, 0, -25.0)
    assert energy.mean() == 0.0  # a stricter absolute gate silences it
    # a loud 1.5 s event over that noise floor: the relative gate calls the floor silent
    clip = noise.copy()
    clip[: int(1.5 * SR)] += rng.standard_normal(int(1.5 * SR)).astype(np.float32) * 0.4
    s, row = measure(tmp_path, clip)
    assert row["silent_fraction"] < 0.05 and row["vad_speech_fraction"] > 0.95
    s, row = measure(tmp_path, clip, relative_gate_db=20.0)
    assert 0.83 <= row["silent_fraction"] <= 0.87
    assert s.decide(row) == (DROPPED, f"mostly silent: {row['silent_fraction']:.0%} silent > 80%")


def test_low_noise_is_silent(tmp_path):
    rng = np.random.default_rng(2)
    s, row = measure(tmp_path, rng.standard_normal(10 * SR) * 10 ** (-60 / 20))
    assert row["silent_fraction"] == 1.0 and row["energy_active_fraction"] == 0.0
    assert s.decide(row) == (DROPPED, "mostly silent: 100% silent > 80%")


def test_bursts_give_their_duty_cycle(tmp_path):
    rng = np.random.default_rng(1)
    audio = np.zeros(10 * SR)
    for k in range(10):  # 0.3 s of loud noise every second: 30 % active
        audio[k * SR : k * SR + int(0.3 * SR)] = rng.standard_normal(int(0.3 * SR)) * 0.3
    s, row = measure(tmp_path, audio)
    assert 0.66 <= row["silent_fraction"] <= 0.74
    assert s.decide(row) == (KEPT, "")
    strict = SilenceStage(SilenceStage.params_from({"max_silent_fraction": 0.5}), s.ctx)
    assert strict.decide(row)[0] == DROPPED


def test_non_finite_audio_fails_the_clip(tmp_path):
    audio = np.zeros(SR, np.float32)
    audio[100] = np.nan
    _, row = measure(tmp_path, audio)
    assert row["_error"] == "audio has non-finite samples"
