"""The `dsp` fallback scorer: signal measurements that need no model weights.

Used when no Audiobox checkpoint is available (`quality.backend: auto`). It screens for three
technical faults that also lower Audiobox's production-quality axis, and says nothing about
content: a coarse screen, never a stand-in for CE/CU/PC/PQ (its columns are dsp_* only).

  dsp_clipping      fraction of samples on flat tops: runs of >= 3 consecutive samples within
                    0.01 % of the clip's absolute peak (a hard clipper holds the peak value; a
                    natural waveform passes through it). Lossy codecs ripple flat tops, so this
                    undercounts clipping in decoded AAC/MP3; pure tones under ~35 Hz that
                    reach the peak count as flat tops.
  dsp_bandwidth_hz  spectral roll-off: the frequency below which 99 % of the clip's energy lies
                    (Welch power spectrum). A codec or phone band limit puts it at or under the
                    cut-off; naturally dark content (a drum, a low hum) also reads low.
  dsp_snr_db        percentile SNR: 20 ms frame powers, noise = 10th percentile, signal =
                    95th percentile minus noise, 10*log10(signal / noise), clamped to
                    [-20, 80] dB. Stationary sounds (rain, engines) read as noise.
  dsp_score         1 + 9 * q_snr^0.4 * q_bw^0.3 * q_clip^0.3, each quality q in [0, 1]:
                    q_snr  = (snr_db + 10) / 40, clamped (>= 30 dB counts as clean)
                    q_bw   = (bandwidth_hz - 1000) / (6000 - 1000), clamped
                    q_clip = 1 - clipping / 0.02, clamped (2 % clipped samples scores 0)
                    A weighted geometric mean: one fault alone can sink the score.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from audioquality import SAMPLE_RATE

CLIP_TOLERANCE = 1e-4  # relative to the absolute peak
CLIP_MIN_RUN = 3
ROLLOFF = 0.99
FRAME_SECONDS = 0.02
NOISE_PERCENTILE, SIGNAL_PERCENTILE = 10, 95
SNR_RANGE_DB = (-20.0, 80.0)
POWER_FLOOR = 1e-12  # -120 dBFS: digital silence counts as this quiet, not as -inf
WEIGHTS = {"snr": 0.4, "bandwidth": 0.3, "clipping": 0.3}


def _samples_in_long_runs(mask: np.ndarray, min_run: int) -> int:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(lengths[lengths >= min_run].sum())


def clipping_ratio(wav: np.ndarray) -> float:
    """Fraction of samples in flat-topped runs at the clip's absolute peak (either polarity)."""
    x = wav.astype(np.float64)
    peak = np.abs(x).max(initial=0.0)
    if peak <= 0:
        return 0.0
    level = peak * (1 - CLIP_TOLERANCE)
    flat = _samples_in_long_runs(x >= level, CLIP_MIN_RUN) + _samples_in_long_runs(x <= -level, CLIP_MIN_RUN)
    return flat / x.shape[0]


def bandwidth_hz(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Frequency below which ROLLOFF of the energy lies (0 for digital silence)."""
    nperseg = min(1024, wav.shape[0])
    freqs, psd = signal.welch(wav.astype(np.float64), fs=sample_rate, nperseg=nperseg)
    total = psd.sum()
    if total <= 0:
        return 0.0
    cumulative = np.cumsum(psd) / total
    return float(freqs[min(np.searchsorted(cumulative, ROLLOFF), freqs.shape[0] - 1)])


def snr_db(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Percentile SNR of 20 ms frames (non-overlapping), clamped to SNR_RANGE_DB."""
    frame = max(1, int(FRAME_SECONDS * sample_rate))
    n = wav.shape[0] // frame
    if n == 0:
        return SNR_RANGE_DB[0]
    power = np.mean(wav[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    noise = max(np.percentile(power, NOISE_PERCENTILE), POWER_FLOOR)
    signal_power = np.percentile(power, SIGNAL_PERCENTILE) - noise
    if signal_power <= 0:
        return SNR_RANGE_DB[0]
    return float(np.clip(10 * np.log10(signal_power / noise), *SNR_RANGE_DB))


def combine(clipping: float, bandwidth: float, snr: float) -> float:
    """dsp_score in 1..10 from the three measurements (formula in the module docstring)."""
    q = {
        "snr": np.clip((snr + 10.0) / 40.0, 0.0, 1.0),
        "bandwidth": np.clip((bandwidth - 1000.0) / 5000.0, 0.0, 1.0),
        "clipping": np.clip(1.0 - clipping / 0.02, 0.0, 1.0),
    }
    return float(1.0 + 9.0 * np.prod([q[k] ** w for k, w in WEIGHTS.items()]))


def dsp_scores(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """All four dsp_* columns for one finite mono clip."""
    clipping = clipping_ratio(wav)
    bandwidth = bandwidth_hz(wav, sample_rate)
    snr = snr_db(wav, sample_rate)
    return {
        "dsp_clipping": round(clipping, 6),
        "dsp_bandwidth_hz": round(bandwidth, 1),
        "dsp_snr_db": round(snr, 2),
        "dsp_score": round(combine(clipping, bandwidth, snr), 3),
    }
