"""Audio aesthetics scorers: the Audiobox Aesthetics model and a signal-based `dsp` fallback.

Two backends, kept apart by their column names so a fallback score is never mistaken for a
model score: `audiobox` fills aes_ce/aes_cu/aes_pc/aes_pq, `dsp` fills dsp_*. This module stays
free of torch so the pipeline can name columns and check inputs without loading a model.
"""

from __future__ import annotations

import numpy as np

from binauralizer.constants import SAMPLE_RATE  # noqa: E402

AXES = ("CE", "CU", "PC", "PQ")  # content enjoyment, content usefulness, production complexity/quality
AES_COLUMNS = {axis: f"aes_{axis.lower()}" for axis in AXES}
DSP_COLUMNS = ("dsp_clipping", "dsp_bandwidth_hz", "dsp_snr_db", "dsp_score")

# Below one second the model sees under 50 encoder frames of a 10 s window and the dsp
# estimates rest on too few frames; such clips fail with a reason instead of getting a number.
MIN_SECONDS = 1.0


def audio_problem(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, min_seconds: float = MIN_SECONDS) -> str | None:
    """Why this clip cannot be scored, or None when it can (1-D, finite, long enough)."""
    if wav.ndim != 1:
        return f"expected mono audio (1-D), got shape {tuple(wav.shape)}"
    n_bad = int(np.count_nonzero(~np.isfinite(wav)))
    if n_bad:
        return f"{n_bad} non-finite audio samples (NaN/inf)"
    if wav.shape[0] < min_seconds * sample_rate:
        return f"audio too short to score: {wav.shape[0] / sample_rate:.3f} s < {min_seconds:g} s"
    return None
