"""The dsp fallback scorer on signals whose faults are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from audioquality import DSP_COLUMNS, audio_problem
from audioquality.dsp import bandwidth_hz, clipping_ratio, combine, dsp_scores, snr_db

SR = 16000


def speech_like(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Voiced harmonics (f0 ~140 Hz, up to 7.8 kHz) and fricative noise in 3 Hz syllables with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 0.5 * t)) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 49))
    syllables = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    fricatives = np.clip(np.sin(2 * np.pi * 3.0 * t + np.pi), 0, None) ** 4
    x = 0.3 * voiced * syllables + 0.15 * rng.standard_normal(n) * fricatives + 1e-4 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


LOWPASS_4K = signal.butter(8, 4000, fs=SR, output="sos")


@pytest.fixture(scope="module")
def variants() -> dict[str, np.ndarray]:
    clean = speech_like()
    rng = np.random.default_rng(1)
    return {
        "clean": clean,
        "lowpassed": signal.sosfilt(LOWPASS_4K, clean).astype(np.float32),
        "clipped": np.clip(clean * 8, -0.5, 0.5).astype(np.float32),
        "noisy": (clean + np.sqrt(np.mean(clean**2)) * rng.standard_normal(clean.size)).astype(np.float32),  # 0 dB
    }


def test_each_fault_shows_in_its_own_measurement(variants):
    s = {name: dsp_scores(wav) for name, wav in variants.items()}
    assert set(s["clean"]) == set(DSP_COLUMNS)

    assert s["clean"]["dsp_clipping"] == 0.0
    assert s["clipped"]["dsp_clipping"] > 0.2  # x8 into a +-0.5 clipper flattens most voiced peaks

    assert s["clean"]["dsp_bandwidth_hz"] > 7000
    assert 3000 < s["lowpassed"]["dsp_bandwidth_hz"] < 4100

    assert s["clean"]["dsp_snr_db"] > 30
    assert s["noisy"]["dsp_snr_db"] < 12
    assert s["lowpassed"]["dsp_snr_db"] > 30 and s["lowpassed"]["dsp_clipping"] == 0.0


def test_scores_order_clean_above_every_fault(variants):
    score = {name: dsp_scores(wav)["dsp_score"] for name, wav in variants.items()}
    assert score["clean"] == pytest.approx(10.0)
    assert score["clean"] > score["lowpassed"] > score["noisy"] > score["clipped"]
    assert score["clipped"] == pytest.approx(1.0)  # 2 % clipped samples or more sinks the score
    assert all(1.0 <= v <= 10.0 for v in score.values())


def test_bandwidth_of_lowpassed_white_noise_is_the_cutoff():
    white = np.random.default_rng(2).standard_normal(4 * SR)
    assert bandwidth_hz(white) > 7800  # full band: 99 % of a flat spectrum lies below 0.99 * 8 kHz
    # The 99 % point of an 8th-order Butterworth lies a little above its -3 dB cut-off (its tail).
    lowpassed = signal.sosfilt(LOWPASS_4K, white)
    assert 3950 <= bandwidth_hz(lowpassed) <= 4300
    narrow = signal.sosfilt(signal.butter(8, 1000, fs=SR, output="sos"), white)
    assert 1000 <= bandwidth_hz(narrow) <= 1150


def test_snr_tracks_added_noise():
    clean = speech_like(seed=3)
    rms = np.sqrt(np.mean(clean**2))
    rng = np.random.default_rng(4)
    estimates = [snr_db(clean + rms * 10 ** (-snr / 20) * rng.standard_normal(clean.size)) for snr in (30, 20, 10, 0)]
    assert all(a > b for a, b in zip(estimates, estimates[1:]))
    assert snr_db(rng.standard_normal(4 * SR)) < 0  # stationary noise reads as noise
    assert snr_db(np.zeros(4 * SR)) == -20.0


def test_flat_tops_count_but_a_sine_peak_does_not():
    t = np.arange(2 * SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    assert clipping_ratio(tone) == 0.0
    assert clipping_ratio(np.zeros(SR)) == 0.0
    clipped = np.clip(2 * tone, -0.5, 0.5)  # a 440 Hz sine into a clipper at half its peak
    # |sin| >= 0.5 for 2/3 of the time: that share of samples sits on flat tops.
    assert clipping_ratio(clipped) == pytest.approx(2 / 3, abs=0.02)


def test_combine_formula_endpoints():
    assert combine(0.0, 8000.0, 60.0) == pytest.approx(10.0)
    assert combine(0.05, 8000.0, 60.0) == pytest.approx(1.0)  # clipping alone sinks it
    assert combine(0.0, 1000.0, 60.0) == pytest.approx(1.0)  # no bandwidth alone sinks it
    # Halfway on SNR only: 1 + 9 * 0.5 ** 0.4
    assert combine(0.0, 8000.0, 10.0) == pytest.approx(1 + 9 * 0.5**0.4)


def test_unscorable_audio_is_named():
    assert audio_problem(np.zeros(2 * SR, np.float32)) is None
    bad = np.zeros(2 * SR, np.float32)
    bad[[5, 9]] = [np.nan, np.inf]
    assert audio_problem(bad) == "2 non-finite audio samples (NaN/inf)"
    assert "too short" in audio_problem(np.zeros(SR // 2, np.float32))
    assert "mono" in audio_problem(np.zeros((2, SR * 2), np.float32))
