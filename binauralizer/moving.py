"""Moving sources (FoleySpace section IV): time-varying HRIR rendering along a trajectory.

The trajectory (times, azimuth, elevation, distance) is sampled every `update_s` (40 ms by
default, FoleySpace's 200 positions per 8 s). Position k owns the filter pair F_k of its direction
(`sh` or `direct`, exactly as render_static would use). The mono signal is cut into segments
with triangular windows w_k (1 at position k, 0 at positions k-1 and k+1; the windows sum to 1),
each windowed segment is convolved with its position's filter and the renderings overlap-add
(filter tails included):  y = sum_k F_k * (w_k s). Between two positions the output therefore
crossfades linearly from one position's rendering to the next, which is FoleySpace's smoothing
(their eq. with a linearly increasing weight), without clicks. In `sh` mode the same sum is
computed as time-varying SH encoding gains (linear between positions) followed by the fixed
decoder filters, which is identical and costs n_sh convolutions instead of one per segment.

Distance: clipped to 0..6 m (FoleySpace's range). The reference distance (default 1 m) renders
exactly as render_static. Gain = r_ref / max(r, 0.2 m) (1/r law; the floor keeps a source at the
head finite, at most +14 dB), and propagation delay (r - r_ref) / 343 m/s relative to the
reference, applied as a time-varying fractional delay (cubic Lagrange) on the mono signal before the
head filters, so a distance change also gives the right Doppler shift. A source nearer than the
reference arrives early by up to r_ref/c (2.9 ms at 1 m): rendering is offline, so it reads ahead.
FoleySpace instead resamples the HRIRs; delaying the source signal is the same time-of-arrival
shift without stretching the head's own response.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from binauralizer import sh_render
from binauralizer.hrir import HRIRSet, load_hrirs

SPEED_OF_SOUND = 343.0
MAX_DISTANCE_M = 6.0
REFERENCE_DISTANCE_M = 1.0
NEAREST_GAIN_DISTANCE_M = 0.2
UPDATE_S = 0.04


def _trajectory(times_s, az_deg, el_deg, dist_m) -> tuple[np.ndarray, ...]:
    arrays = [np.atleast_1d(np.asarray(a, float)) for a in (times_s, az_deg, el_deg)]
    dist = np.full_like(arrays[0], REFERENCE_DISTANCE_M) if dist_m is None else np.atleast_1d(np.asarray(dist_m, float))
    arrays.append(dist)
    if len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise ValueError("times_s, az_deg, el_deg and dist_m must be non-empty and of equal length")
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("trajectory contains NaN or inf (interpolate gaps before rendering)")
    if np.any(np.diff(arrays[0]) <= 0):
        raise ValueError("trajectory times must be strictly increasing")
    if np.any(np.abs(arrays[2]) > 90):
        raise ValueError("elevation must be within -90..90 degrees")
    t, az, el, dist = arrays
    return t, np.degrees(np.unwrap(np.radians(az))), el, np.clip(dist, 0.0, MAX_DISTANCE_M)


def _update_grid(n_samples: int, fs: int, update_s: float) -> tuple[np.ndarray, int]:
    """Update times k * hop / fs (k = 0..K-1) with (K-1) * hop >= n_samples, and the hop in samples."""
    hop = max(1, int(round(update_s * fs)))
    k = max(n_samples - 1, 0) // hop + 2  # every sample lies between two update points
    return np.arange(k) * hop / fs, hop


def _between_updates(values: np.ndarray, n: int, hop: int) -> np.ndarray:
    """Per-sample linear interpolation of (C, K) values given at the update points: (C, n) float32."""
    v = np.asarray(values, np.float32)
    ramp = np.arange(hop, dtype=np.float32) / hop
    out = v[:, :-1, None] + np.diff(v, axis=1)[:, :, None] * ramp  # (C, K-1, hop)
    return out.reshape(len(v), -1)[:, :n]


def update_positions(times_s, az_deg, el_deg, n_samples: int, fs: int, update_s: float = UPDATE_S):
    """Azimuth and elevation at the update points k * hop (k = 0..K-1, covering all samples); hop in samples."""
    t, az, el, _ = _trajectory(times_s, az_deg, el_deg, None)
    tk, hop = _update_grid(n_samples, fs, update_s)
    return np.interp(tk, t, az), np.interp(tk, t, el), hop


def apply_distance(mono: np.ndarray, times_s, dist_m, fs: int, reference_m: float = REFERENCE_DISTANCE_M,
                   update_s: float = UPDATE_S) -> np.ndarray:
    """1/r gain and propagation delay (relative to `reference_m`) along a distance trajectory.

    Like the direction, the distance is updated every `update_s` and interpolated linearly in between.
    """
    x = np.asarray(mono, np.float32)
    t = np.atleast_1d(np.asarray(times_s, float))
    r = np.clip(np.atleast_1d(np.asarray(dist_m, float)), 0.0, MAX_DISTANCE_M)
    if np.all(r == reference_m):
        return x
    tk, hop = _update_grid(len(x), fs, update_s)
    r_n = _between_updates(np.interp(tk, t, r)[None], len(x), hop)[0]
    gain = np.float32(reference_m) / np.maximum(r_n, np.float32(NEAREST_GAIN_DISTANCE_M))
    delay = (r_n - np.float32(reference_m)) * np.float32(fs / SPEED_OF_SOUND)  # samples
    return gain * (fractional_delay(x, delay) if np.any(delay != 0) else x)


def fractional_delay(x: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """y[n] = x(n - delay[n]) by 4-point (third-order) Lagrange interpolation, zeros outside x.

    The standard fractional-delay interpolator (Laakso et al. 1996): exact for integer delays,
    within 1.1 dB of flat up to a quarter of the sample rate (worst case: half-sample delay).
    """
    d = np.asarray(delay, np.float32)
    whole = np.ceil(d)
    f = whole - d  # x(n - d) = x(base + f) with base = n - whole, 0 <= f < 1
    lead, tail = int(max(whole.max(), 0)) + 2, int(max(-whole.min(), 0)) + 3
    padded = np.zeros(lead + len(x) + tail, np.float32)
    padded[lead: lead + len(x)] = x
    j = np.arange(lead, lead + len(x)) - whole.astype(np.int64)  # index of x[base] in padded
    a, b, c = f + 1, f - 1, f - 2
    fb, ac = f * b, a * c
    return (-fb * c / 6 * padded[j - 1] + ac * b / 2 * padded[j] - ac * f / 2 * padded[j + 1]
            + a * fb / 6 * padded[j + 2]).astype(np.float32)


def _tents(hop: int) -> np.ndarray:
    """A position's window over its two neighbouring segments: rises 0 -> 1, then falls 1 -> 0."""
    ramp = np.arange(hop) / hop
    return np.concatenate([ramp, 1.0 - ramp]).astype(np.float32)


def _render_direct(x: np.ndarray, filters: np.ndarray, hop: int) -> np.ndarray:
    """sum_k filters[k] * (w_k x) by block FFT: one (2*hop)-long windowed segment per position."""
    n, (k, _, taps) = len(x), filters.shape
    nfft = sfft.next_fast_len(2 * hop + taps - 1, real=True)  # no circular wrap
    chunks = -(-nfft // hop)  # the block spans this many segments
    padded = np.zeros(hop + (k + 1) * hop, np.float32)  # segment k spans samples (k-1)*hop .. (k+1)*hop
    padded[hop: hop + n] = x
    segments = sliding_window_view(padded, 2 * hop)[::hop][:k] * _tents(hop)
    spec = sfft.rfft(segments, nfft, axis=-1)[:, None, :] * sfft.rfft(filters, nfft, axis=-1)
    blocks = sfft.irfft(spec, nfft, axis=-1).transpose(1, 0, 2)  # (ears, K, nfft)
    out = np.zeros((2, k + chunks, hop), np.float32)
    for j in range(chunks):  # overlap-add: block k's chunk j lands on segment k + j (shifted by one hop)
        part = blocks[:, :, j * hop: (j + 1) * hop]
        out[:, j: j + k, : part.shape[-1]] += part
    return out.reshape(2, -1)[:, hop: hop + n]


def _render_sh(x: np.ndarray, az_k: np.ndarray, el_k: np.ndarray, hop: int, decoder) -> np.ndarray:
    """Same sum in the SH domain: encoding gains interpolated linearly between positions."""
    y_k = sh_render.sh_matrix(decoder.order, az_k, el_k).T[decoder.active]  # (n_active, K)
    signals = _between_updates(y_k, len(x), hop) * x[None, :]
    return sh_render.filter_sum(signals, decoder.sh_to_ear[decoder.active])


def render_trajectory(mono, times_s, az_deg, el_deg, dist_m=None, hrirs: HRIRSet | None = None, mode: str = "sh",
                      order: int = 1, update_s: float = UPDATE_S, decoder: str = "lsq", layout: str = "auto",
                      interp: str = "barycentric", reference_m: float = REFERENCE_DISTANCE_M) -> np.ndarray:
    """Binaural (2, N) of a mono source (N,) moving along (times_s, az_deg, el_deg, dist_m).

    The trajectory is interpolated linearly (azimuth unwrapped) and held at its ends; dist_m=None
    means the reference distance throughout. Audio at hrirs.fs.
    """
    hrirs = hrirs or load_hrirs()
    x = sh_render._check_mono(mono)
    if x.ndim != 1:
        raise ValueError("render_trajectory takes one mono signal (N,)")
    if update_s <= 0:
        raise ValueError(f"update_s must be positive, got {update_s}")
    t, az, el, dist = _trajectory(times_s, az_deg, el_deg, dist_m)
    if len(x) == 0:
        return np.zeros((2, 0), np.float32)
    x = apply_distance(x, t, dist, hrirs.fs, reference_m, update_s)
    az_k, el_k, hop = update_positions(t, az, el, len(x), hrirs.fs, update_s)
    if mode == "sh":
        return _render_sh(x, az_k, el_k, hop, sh_render.get_decoder(hrirs, int(order), decoder, layout))
    if mode == "direct":
        return _render_direct(x, hrirs.lookup(az_k, el_k, interp).astype(np.float32), hop)
    raise ValueError(f"mode must be one of {sh_render.MODES}, got {mode!r}")


def position_filters(times_s, az_deg, el_deg, n_samples: int, hrirs: HRIRSet | None = None, mode: str = "sh",
                     order: int = 1, update_s: float = UPDATE_S, decoder: str = "lsq", layout: str = "auto",
                     interp: str = "barycentric") -> tuple[np.ndarray, int]:
    """The filter pair F_k of every update position (K, 2, taps) and the hop: what render_trajectory crossfades."""
    hrirs = hrirs or load_hrirs()
    az_k, el_k, hop = update_positions(times_s, az_deg, el_deg, n_samples, hrirs.fs, update_s)
    return sh_render.source_filters(az_k, el_k, hrirs, mode, order, decoder, layout, interp), hop
