"""One level convention for every conversion mode (unet, sh, mono): per-ear RMS = the mono's RMS.

A single gain scales both ears, so interaural level differences survive; the gain is lowered when
needed so no sample exceeds PEAK_CEILING. `mono` mode (L = R = x) is then exactly the source, and a
binaural clip plays as loud as the clip it came from.
"""

from __future__ import annotations

import numpy as np

PEAK_CEILING = 0.99


def level_gain(mono: np.ndarray, binaural: np.ndarray) -> float:
    """The one gain for both ears: per-ear RMS = the mono's RMS, peak at most PEAK_CEILING; 0 for silence."""
    level_in = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    level_out = float(np.sqrt(np.mean(np.square(binaural, dtype=np.float64))))
    if level_in == 0.0 or level_out == 0.0:
        return 0.0
    gain = level_in / level_out
    peak = float(np.max(np.abs(binaural)))
    return min(gain, PEAK_CEILING / peak)


def match_level(mono: np.ndarray, binaural: np.ndarray) -> np.ndarray:
    """(2, N) float32 binaural scaled by `level_gain`."""
    binaural = np.asarray(binaural, np.float64)
    return (binaural * level_gain(mono, binaural)).astype(np.float32)
