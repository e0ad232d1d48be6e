"""Binaural metrics: what makes two channels spatial, measured per clip.

All signals are (2, N) float arrays, row 0 = left, at `sr` Hz (16 kHz unless stated). Signs follow
the project's convention (azimuth positive to the LEFT): ILD > 0 and ITD > 0 mean the left ear is
louder / earlier, i.e. a source on the left.

Without a reference (SpatialV2A Table 2; REFERENCE.md "Binaural metrics"):

- IACC: max over |tau| <= 1 ms of |sum l[n] r[n+tau]| / sqrt(sum l^2 sum r^2) (ISO 3382-1).
  Per clip `iacc` = mean over active 0.5 s segments (a moving source decorrelates a whole-clip
  IACC: 60 to -60 degrees over 10 s gives 0.05 although every moment is 0.86);
  `iacc_broadband` = the whole clip at once.
- ILD: mean over all STFT bins of |20 log10((|L| + eps) / (|R| + eps))|, dB. Broadband (signed):
  10 log10(sum l^2 / sum r^2).
- IPD: mean over all STFT bins of |angle(L conj(R))|, radians.
- ITD: GCC-PHAT, G(tau) = IFFT(R conj(L) / |R conj(L)|), peak within +-1 ms refined by a parabola
  through the peak and its neighbours (sub-sample), in milliseconds. Per clip `itd_ms` = mean |ITD|
  over 100 ms frames, dropping frames more than 30 dB below the loudest (silence has no delay);
  `itd_broadband_ms` = signed GCC-PHAT ITD of the whole clip.
- ISD (interaural spectral difference; the paper does not define it, this is our definition): the
  spectral *shape* of the interaural difference that a broadband level difference does not explain.
  Per 0.5 s segment, long-term power spectra P_L(f), P_R(f) (mean of |STFT|^2 over the segment's
  frames); the interaural level spectrum D(f) = 10 log10(P_L / P_R) over bins where both channels are
  within 60 dB of the segment's peak; ISD_segment = standard deviation of D over frequency, dB; the
  clip value is the mean over active segments. It is 0 for any pure gain or pure delay and large
  for head shadow (KEMAR at 90 degrees: about 6 dB), so it complements ILD instead of repeating it.

With a reference binaural (errors, lower is better):

- dILD (dB), dIPD (rad): mean |difference| over bins within 20 dB of each frequency's maximum (over
  time) in both reference channels; IPD differences wrapped with angle(exp(j delta)).
- dITD (microseconds): |broadband ITD(pred) - broadband ITD(ref)|.
- STFT distance and envelope distance (2.5D Visual Sound), both signals first peak-normalised: sum
  over channels of the mean squared error of the stacked real and imaginary STFT parts; sum over
  channels of the RMS difference of Hilbert envelopes.

Lateral consistency: per 0.5 s segment, the sign of the broadband ILD against the visual azimuth
(mean of the trajectory's frames in that segment) where the source is off centre (|az| > 15
degrees) and the segment is active; a segment agrees when ILD has the azimuth's sign and |ILD| >=
0.5 dB (a centred image does not count as agreeing). The clip value is the agreeing fraction, or
None when no segment qualifies.

STFT (librosa's convention, as in Sep-Stereo/PseudoBinaural): n_fft 512, hop 160, periodic Hann of
400 samples centred in the 512-sample frame, frames centred with reflect padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from binauralizer.constants import SAMPLE_RATE
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sfft
from scipy import signal

EPS = 1e-8
MAX_LAG_MS = 1.0
ITD_FRAME_S = 0.1
ACTIVE_DB = 30.0  # ITD frames / segments quieter than the loudest by more than this are dropped
SEGMENT_S = 0.5  # ISD and lateral-consistency segment length
ISD_FLOOR_DB = 60.0
CENTRE_DEG = 15.0
MIN_ILD_DB = 0.5
REF_BINS_DB = 20.0


@dataclass(frozen=True)
class StftSettings:
    n_fft: int = 512
    hop: int = 160
    win_length: int = 400


DEFAULT_STFT = StftSettings()


def check_binaural(x: np.ndarray) -> np.ndarray:
    """(2, N) float64, finite; raise ValueError with a readable reason otherwise."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != 2:
        raise ValueError(f"binaural audio must have shape (2, N), got {tuple(x.shape)}")
    if x.shape[1] < 2:
        raise ValueError(f"binaural audio too short: {x.shape[1]} samples")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("binaural audio has non-finite samples (NaN/inf)")
    return x


def stft(x: np.ndarray, settings: StftSettings = DEFAULT_STFT) -> np.ndarray:
    """Complex64 STFT (..., F, T), librosa-compatible framing (see the module docstring).

    Single precision halves the time; its ~1e-7 relative error is far below any metric's resolution.
    """
    n_fft, hop, win = settings.n_fft, settings.hop, settings.win_length
    x = np.asarray(x, dtype=np.float32)
    pad = n_fft // 2
    mode = "reflect" if x.shape[-1] > pad else "constant"
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode=mode)
    frames = sliding_window_view(xp, n_fft, axis=-1)[..., ::hop, :]
    window = np.zeros(n_fft, np.float32)
    left = (n_fft - win) // 2
    window[left : left + win] = signal.get_window("hann", win, fftbins=True)
    return np.swapaxes(sfft.rfft(frames * window, axis=-1), -1, -2)


def _max_lag(sr: int, max_lag_ms: float) -> int:
    return max(1, int(round(max_lag_ms * 1e-3 * sr)))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.add.reduce(a * b))


def iacc(x: np.ndarray, sr: int = SAMPLE_RATE, max_lag_ms: float = MAX_LAG_MS) -> float:
    """Interaural cross-correlation coefficient in [0, 1]; NaN for a silent channel."""
    x = check_binaural(x)
    left, right = x
    # Elementwise products, not np.dot: OpenBLAS threads stall for 100s of ms on a busy machine.
    denom = np.sqrt(_dot(left, left) * _dot(right, right))
    if denom <= 0:
        return float("nan")
    n, lag = left.shape[0], _max_lag(sr, max_lag_ms)
    values = []
    for tau in range(-lag, lag + 1):  # 33 dot products at 16 kHz: exact and fast
        if tau >= 0:
            values.append(_dot(left[: n - tau], right[tau:]))
        else:
            values.append(_dot(left[-tau:], right[: n + tau]))
    return float(np.max(np.abs(values)) / denom)


def segment_iacc(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    segment_s: float = SEGMENT_S,
    active_db: float = ACTIVE_DB,
    max_lag_ms: float = MAX_LAG_MS,
) -> np.ndarray:
    """IACC per non-overlapping segment (lags within the segment); NaN for inactive segments."""
    x = check_binaural(x)
    lag = _max_lag(sr, max_lag_ms)
    size = max(int(round(segment_s * sr)), 2 * lag + 2)
    count = x.shape[1] // size
    if count == 0:
        return np.array([iacc(x, sr, max_lag_ms)])
    left, right = x[:, : count * size].reshape(2, count, size)
    values = np.empty((2 * lag + 1, count))
    for k, tau in enumerate(range(-lag, lag + 1)):
        if tau >= 0:
            values[k] = np.add.reduce(left[:, : size - tau] * right[:, tau:], axis=-1)
        else:
            values[k] = np.add.reduce(left[:, -tau:] * right[:, : size + tau], axis=-1)
    el, er = np.add.reduce(left * left, -1), np.add.reduce(right * right, -1)
    loud = el + er
    active = (np.minimum(el, er) > 0) & (loud > max(loud.max() * 10 ** (-active_db / 10), 1e-12))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(values).max(0) / np.sqrt(el * er)
    return np.where(active, out, np.nan)


def _gcc_phat_peak(left: np.ndarray, right: np.ndarray, sr: int, max_lag_ms: float,
                   max_hz: float | None = None) -> np.ndarray:
    """Signed ITD in ms per row of (..., n) frames; positive when the left channel leads.
    `max_hz` keeps the PHAT weights below that frequency only (the band where ITD is a cue)."""
    n = left.shape[-1]
    lag = min(_max_lag(sr, max_lag_ms), n - 1)
    nfft = sfft.next_fast_len(n + lag + 1, real=True)  # no circular wrap within +-lag
    cross = sfft.rfft(right, nfft, axis=-1) * np.conj(sfft.rfft(left, nfft, axis=-1))
    cross /= np.maximum(np.abs(cross), EPS)
    if max_hz is not None:
        cross[..., np.fft.rfftfreq(nfft, 1 / sr) > max_hz] = 0
    gcc = sfft.irfft(cross, nfft, axis=-1)
    window = np.concatenate([gcc[..., nfft - lag :], gcc[..., : lag + 1]], axis=-1)  # lags -lag..lag
    peak = np.argmax(window, axis=-1)
    inner = np.clip(peak, 1, 2 * lag - 1)
    y0 = np.take_along_axis(window, (inner - 1)[..., None], -1)[..., 0]
    y1 = np.take_along_axis(window, inner[..., None], -1)[..., 0]
    y2 = np.take_along_axis(window, (inner + 1)[..., None], -1)[..., 0]
    curvature = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(curvature < 0, 0.5 * (y0 - y2) / curvature, 0.0)
    at_edge = (peak == 0) | (peak == 2 * lag)
    refined = np.where(at_edge, peak, inner + np.clip(delta, -0.5, 0.5))
    return (refined - lag) / sr * 1e3


def itd_ms(x: np.ndarray, sr: int = SAMPLE_RATE, max_lag_ms: float = MAX_LAG_MS, max_hz: float | None = None) -> float:
    """GCC-PHAT ITD of the whole signal, ms (positive: left leads); NaN if silent. Broadband by
    default; `max_hz` limits it to the low band (ITD_MAX_HZ: where the head's phase is unambiguous)."""
    x = check_binaural(x)
    if not (np.any(x[0]) and np.any(x[1])):
        return float("nan")
    return float(_gcc_phat_peak(x[0], x[1], sr, max_lag_ms, max_hz))


def head_itd_max_ms(hrir: str = "kemar") -> float:
    """The largest |ITD| a head produces, ms: GCC-PHAT of its HRIRs at +-90 degrees (pipeline rate)."""
    from binauralizer.hrir import load_hrirs

    hrirs = load_hrirs(hrir)
    return max(abs(itd_ms(hrirs.lookup(az, 0.0, interp="nearest"))) for az in (90.0, -90.0))


def framewise_itd_ms(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    frame_s: float = ITD_FRAME_S,
    active_db: float = ACTIVE_DB,
    max_lag_ms: float = MAX_LAG_MS,
) -> np.ndarray:
    """ITD per non-overlapping frame, ms; NaN for frames `active_db` below the loudest frame."""
    x = check_binaural(x)
    size = max(int(round(frame_s * sr)), 2 * _max_lag(sr, max_lag_ms) + 1)
    count = x.shape[1] // size
    if count == 0:
        return np.array([itd_ms(x, sr, max_lag_ms)])
    frames = x[:, : count * size].reshape(2, count, size)
    itd = _gcc_phat_peak(frames[0], frames[1], sr, max_lag_ms)
    energy = np.minimum((frames[0] ** 2).sum(-1), (frames[1] ** 2).sum(-1))
    active = energy > max(energy.max() * 10 ** (-active_db / 10), 1e-12)
    return np.where(active, itd, np.nan)


def broadband_ild_db(x: np.ndarray) -> float:
    """10 log10(sum l^2 / sum r^2), dB (positive: left louder); NaN when both are silent."""
    x = check_binaural(x)
    el, er = _dot(x[0], x[0]), _dot(x[1], x[1])
    if el <= 0 and er <= 0:
        return float("nan")
    return float(10 * np.log10((el + EPS) / (er + EPS)))


def _ild_bins(spec: np.ndarray) -> np.ndarray:
    mag = np.abs(spec)
    return 20 * np.log10((mag[0] + EPS) / (mag[1] + EPS))


def _ipd_bins(spec: np.ndarray) -> np.ndarray:
    return np.angle(spec[0] * np.conj(spec[1]))


@dataclass(frozen=True)
class Segments:
    """Per-segment broadband ILD, interaural spectral spread and activity (0.5 s by default)."""

    times_s: np.ndarray  # segment centres
    ild_db: np.ndarray
    isd_db: np.ndarray  # NaN where fewer than two bins qualify
    active: np.ndarray


def segments(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    segment_s: float = SEGMENT_S,
    settings: StftSettings = DEFAULT_STFT,
    spec: np.ndarray | None = None,
    active_db: float = ACTIVE_DB,
) -> Segments:
    """Segment statistics from the STFT: the ILD-over-time trace the report plots."""
    x = check_binaural(x)
    spec = stft(x, settings) if spec is None else spec
    power = np.abs(spec) ** 2  # (2, F, T)
    per = max(1, int(round(segment_s * sr / settings.hop)))
    count = max(1, power.shape[-1] // per)  # a trailing partial segment joins the last one
    seg_power = power[..., : count * per].reshape(2, power.shape[1], count, -1).sum(-1, dtype=np.float64)
    seg_power[..., -1] += power[..., count * per :].sum(-1)  # (2, F, S)
    energy = seg_power.sum(1)  # (2, S)
    with np.errstate(divide="ignore", invalid="ignore"):
        ild = 10 * np.log10((energy[0] + EPS) / (energy[1] + EPS))
    floor = seg_power.max(axis=(0, 1)) * 10 ** (-ISD_FLOOR_DB / 10)  # (S,)
    valid = (seg_power[0] > floor) & (seg_power[1] > floor) & (floor > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = 10 * np.log10(seg_power[0] / seg_power[1])
    spread = np.where(valid, spread, np.nan)
    counts = valid.sum(0)
    with np.errstate(invalid="ignore"):
        mean = np.nansum(np.where(valid, spread, 0), 0) / np.maximum(counts, 1)
        isd = np.sqrt(np.nansum(np.where(valid, (spread - mean) ** 2, 0), 0) / np.maximum(counts, 1))
    isd = np.where(counts >= 2, isd, np.nan)
    both = np.minimum(energy[0], energy[1])
    loud = energy.sum(0)
    active = (loud > max(loud.max() * 10 ** (-active_db / 10), 1e-12)) & (both > 0)
    times = (np.arange(count) + 0.5) * per * settings.hop / sr
    return Segments(times, ild, isd, active)


def segment_azimuth(traj_az_deg: np.ndarray, traj_fps: float, seg: Segments, segment_s: float) -> np.ndarray:
    """Mean visual azimuth of the trajectory frames falling in each segment (NaN if none)."""
    az = np.asarray(traj_az_deg, dtype=np.float64).reshape(-1)
    out = np.full(seg.times_s.shape, np.nan)
    if az.size == 0 or traj_fps <= 0:
        return out
    index = np.minimum(np.floor(np.arange(az.size) / traj_fps / segment_s).astype(int), out.size - 1)
    for k in range(out.size):
        chosen = az[(index == k) & np.isfinite(az)]
        if chosen.size:
            out[k] = chosen.mean()
    return out


def lateral_agreement(
    seg: Segments,
    seg_az_deg: np.ndarray,
    centre_deg: float = CENTRE_DEG,
    min_ild_db: float = MIN_ILD_DB,
) -> tuple[float | None, int]:
    """(fraction of off-centre active segments whose ILD side matches the picture, their count)."""
    az = np.asarray(seg_az_deg, dtype=np.float64)
    eligible = seg.active & np.isfinite(az) & (np.abs(az) > centre_deg) & np.isfinite(seg.ild_db)
    n = int(eligible.sum())
    if n == 0:
        return None, 0
    agree = (np.sign(seg.ild_db) == np.sign(az)) & (np.abs(seg.ild_db) >= min_ild_db)
    return float(agree[eligible].mean()), n


def _nanmean_abs(values: np.ndarray) -> float:
    values = np.abs(np.asarray(values, dtype=np.float64))
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def clip_metrics(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    traj: np.ndarray | None = None,
    traj_fps: float | None = None,
    settings: StftSettings = DEFAULT_STFT,
    segment_s: float = SEGMENT_S,
    centre_deg: float = CENTRE_DEG,
) -> dict:
    """All reference-free metrics of one clip (floats; NaN / None where undefined).

    `traj` is the localiser's (T, 3) [azimuth, elevation, distance] at `traj_fps`; without it
    `lateral_agree` is None.
    """
    x = check_binaural(x)
    spec = stft(x, settings)
    seg = segments(x, sr, segment_s, settings, spec=spec)
    out = {
        "iacc": _nanmean_abs(segment_iacc(x, sr, segment_s)),
        "iacc_broadband": iacc(x, sr),
        "ild_db": float(np.mean(np.abs(_ild_bins(spec)))),
        "ild_broadband_db": broadband_ild_db(x),
        "itd_ms": _nanmean_abs(framewise_itd_ms(x, sr)),
        "itd_broadband_ms": itd_ms(x, sr),
        "ipd_rad": float(np.mean(np.abs(_ipd_bins(spec)))),
        "isd_db": _nanmean_abs(np.where(seg.active, seg.isd_db, np.nan)),
        "lateral_agree": None,
        "lateral_segments": 0,
    }
    if traj is not None and traj_fps:
        traj = np.asarray(traj, dtype=np.float64)
        if traj.ndim == 2 and traj.shape[0] > 0:
            seg_az = segment_azimuth(traj[:, 0], float(traj_fps), seg, segment_s)
            out["lateral_agree"], out["lateral_segments"] = lateral_agreement(seg, seg_az, centre_deg)
    return out


def _peak_normalise(x: np.ndarray) -> np.ndarray:
    peak = np.max(np.abs(x))
    return x / peak if peak > 0 else x


def reference_errors(
    pred: np.ndarray, ref: np.ndarray, sr: int = SAMPLE_RATE, settings: StftSettings = DEFAULT_STFT
) -> dict:
    """dILD (dB), dIPD (rad), dITD (us), STFT and envelope distances of `pred` against `ref`.

    Two ITDs: `d_itd_us` from broadband GCC-PHAT (PHAT weighs every bin alike, so content above
    4 kHz, where phase wraps many times across the head, can set it), and `d_itd_lf_us` below
    ITD_MAX_HZ, the band where ITD is a localisation cue (the spatial evaluation's definition)."""
    pred, ref = check_binaural(pred), check_binaural(ref)
    n = min(pred.shape[1], ref.shape[1])
    pred, ref = pred[:, :n], ref[:, :n]
    sp, sg = stft(pred, settings), stft(ref, settings)
    mag = np.abs(sg)
    per_freq_max = mag.max(axis=-1, keepdims=True)
    strong = mag >= per_freq_max * 10 ** (-REF_BINS_DB / 20)
    mask = strong[0] & strong[1] & (per_freq_max[0] > 0) & (per_freq_max[1] > 0)
    d_ild = np.abs(_ild_bins(sp) - _ild_bins(sg))[mask]
    d_ipd = np.abs(np.angle(np.exp(1j * (_ipd_bins(sp) - _ipd_bins(sg)))))[mask]
    pn, gn = _peak_normalise(pred), _peak_normalise(ref)
    spn, sgn = stft(pn, settings), stft(gn, settings)
    stft_distance = 0.0
    envelope_distance = 0.0
    for c in range(2):
        diff = np.stack([spn[c].real - sgn[c].real, spn[c].imag - sgn[c].imag])
        stft_distance += float(np.mean(diff**2))
        env_p, env_g = np.abs(signal.hilbert(pn[c])), np.abs(signal.hilbert(gn[c]))
        envelope_distance += float(np.sqrt(np.mean((env_g - env_p) ** 2)))
    return {
        "d_ild_db": float(d_ild.mean()) if d_ild.size else float("nan"),
        "d_ipd_rad": float(d_ipd.mean()) if d_ipd.size else float("nan"),
        "d_itd_us": abs(itd_ms(pred, sr) - itd_ms(ref, sr)) * 1e3,
        "d_itd_lf_us": abs(itd_ms(pred, sr, max_hz=ITD_MAX_HZ) - itd_ms(ref, sr, max_hz=ITD_MAX_HZ)) * 1e3,
        "stft_distance": stft_distance,
        "envelope_distance": envelope_distance,
    }


# ---------------------------------------------------------------------------------------------
# Frame-wise cues against a reference (the spatial evaluation, benchmarks/eval_spatial.py)
# ---------------------------------------------------------------------------------------------

ILD_BANDS_HZ = ((125, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000))
ITD_MAX_HZ = 1500.0  # below ~1.5 kHz the head's phase is unambiguous: the ITD lives there


def frame_cues(x: np.ndarray, sr: int = SAMPLE_RATE, frame_s: float = 0.2, itd_max_hz: float = ITD_MAX_HZ,
               max_lag_ms: float = MAX_LAG_MS) -> dict:
    """Per non-overlapping frame: broadband ILD (dB), band-limited GCC-PHAT ITD (ms), energy.

    The ITD is GCC-PHAT with the PHAT weights kept only below `itd_max_hz` (high bins carry
    wrapped phase and would let level-only renderings score a spurious delay).
    """
    x = check_binaural(x)
    size = int(round(frame_s * sr))
    count = x.shape[1] // size
    frames = x[:, : count * size].reshape(2, count, size)
    el, er = (frames[0] ** 2).sum(-1), (frames[1] ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ild = 10 * np.log10((el + EPS) / (er + EPS))
    lag = _max_lag(sr, max_lag_ms)
    nfft = sfft.next_fast_len(size + lag + 1, real=True)
    cross = sfft.rfft(frames[1], nfft, axis=-1) * np.conj(sfft.rfft(frames[0], nfft, axis=-1))
    cross /= np.maximum(np.abs(cross), EPS)
    cross[..., np.fft.rfftfreq(nfft, 1 / sr) > itd_max_hz] = 0
    up = 8  # sub-sample peak on an 8x interpolated correlation
    gcc = sfft.irfft(cross, nfft * up, axis=-1)
    window = np.concatenate([gcc[..., nfft * up - lag * up:], gcc[..., : lag * up + 1]], axis=-1)
    itd = (np.argmax(window, axis=-1) - lag * up) / (sr * up) * 1e3
    return {"ild_db": ild, "itd_ms": itd, "energy": el + er, "frame_s": size / sr}


def band_ild_errors(pred: np.ndarray, ref: np.ndarray, sr: int = SAMPLE_RATE, bands=ILD_BANDS_HZ,
                    settings: StftSettings = DEFAULT_STFT) -> dict:
    """Mean |dILD| (dB) per frequency band over the reference's strong bins (as reference_errors)."""
    pred, ref = check_binaural(pred), check_binaural(ref)
    n = min(pred.shape[1], ref.shape[1])
    sp, sg = stft(pred[:, :n], settings), stft(ref[:, :n], settings)
    mag = np.abs(sg)
    per_freq_max = mag.max(axis=-1, keepdims=True)
    strong = mag >= per_freq_max * 10 ** (-REF_BINS_DB / 20)
    mask = strong[0] & strong[1] & (per_freq_max[0] > 0) & (per_freq_max[1] > 0)
    d_ild = np.abs(_ild_bins(sp) - _ild_bins(sg))
    freqs = np.fft.rfftfreq(settings.n_fft, 1 / sr)
    out = {}
    for lo, hi in bands:
        sel = mask & ((freqs >= lo) & (freqs < hi))[:, None]
        out[f"{lo}-{hi}"] = float(d_ild[sel].mean()) if sel.any() else float("nan")
    return out
