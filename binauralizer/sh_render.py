"""Static binaural rendering: spherical-harmonic pseudo-binaural (SpatialV2A eq. 1) and direct HRIR.

`sh` mode (PseudoBinaural, SpatialV2A section 3.2): a mono source s at direction theta is encoded
into real spherical harmonics, Psi = Y(theta) s; M virtual loudspeakers get s' = D_dec Psi; each
loudspeaker goes through the HRIR pair of its nearest measured direction and the ears sum
(eq. 1). Decoders:
  * "lsq": s' = pinv(D) Psi with D = Y(loudspeakers)^T, the least-squares decoder
    (D^T D)^-1 D^T of SpatialV2A. With more loudspeakers than SH channels (always the case here)
    D^T D is singular and the Moore-Penrose inverse is its minimum-norm form D^T (D D^T)^-1;
    on the horizontal ring it also drops the unobservable Z channel.
  * "sampling": the released PseudoBinaural code, s'_m = Y_sn3d(loudspeaker m) . Psi_sn3d, here
    scaled by 1/M so that the loudspeaker gains of any source sum to 1 (first order: the
    cardioid (1 + cos gamma)/M). Beyond first order this SN3D dot product weights every degree
    alike (sum_l P_l(cos gamma)) and does not converge; it is there to compare with the paper.
  * "magls": not a loudspeaker decoder but spaudiopy.decoder.magls_bin (magnitude least squares,
    Zotter & Frank 2019, with phase continuation): SH-domain ear filters fitted to ALL measured
    HRIRs, least squares below N * 600 Hz and magnitude-only above. Much closer to direct
    rendering at low orders (KEMAR, order 1: 2.5 dB mean log-magnitude error instead of 6.5 dB;
    orders 2-5: 1.9-1.6 dB). KEMAR's grid stops at -40 degrees elevation, and from order 6 on the
    fit breaks down there (7 dB): use magls up to order 5 with KEMAR.

Accuracy against `direct` (KEMAR at 16 kHz, mean |log-magnitude difference| over 100 Hz-7 kHz,
six directions off the loudspeaker grid; tests/binauralizer/test_sh_render.py prints the table):
lsq order 1 (ring) 6.5 dB (2.7 dB below 1.5 kHz), order 4 4.0 (0.7), order 6 3.1 (0.6).
At order 1 the 6-point t-design (an octahedron) is worse than the ring: with KEMAR its two
strong same-side loudspeakers interfere and the ILD at 45 degrees even flips sign.
`direct` mode: each source through the HRIR pair of its own direction (barycentric onset-aligned
interpolation by default, or the nearest measured pair); no SH stage.

SH convention: real SH in ACN channel order, orthonormal on the sphere (spaudiopy.sph.sh_matrix,
sh_type='real', which spaudiopy calls N3D-ACN; Y_00 = 1/sqrt(4 pi)). foa.py works in SN3D
(AmbiX); `sn3d_to_orthonormal` converts.

Virtual layouts: "ring8" (PseudoBinaural: 8 loudspeakers at 0, 45, ..., 315 degrees azimuth on the
horizontal plane; the default at order 1) and "tdesign" (Hardin-Sloane t-design of degree 2N+1
from spaudiopy.grids; the default from order 2 on).

Speed: everything is linear, so a decoder collapses to `sh_to_ear` filters (n_sh, 2, taps),
E_n = sum_m D_dec[m, n] h_m, and a static source to ONE filter pair sum_n Y_n(theta) E_n; a
render is then a single FFT convolution. Several sources either each get their pair or, when
there are more sources than SH channels, are mixed in the SH domain first (same result).

Output length: the first N samples of the convolution (the filter tail is dropped) so the
binaural audio stays aligned with the mono input and its video.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from binauralizer.hrir import HRIRSet, load_hrirs

RING8_AZ = np.arange(8) * 45.0
MODES = ("sh", "direct")
DECODERS = ("lsq", "sampling", "magls")
LOUDSPEAKER_DECODERS = ("lsq", "sampling")
LAYOUTS = ("auto", "ring8", "tdesign")


# -- spherical harmonics -----------------------------------------------------------------------
def _spaudiopy():
    """spaudiopy, imported on first use (1.4 s; it warns that no sound device exists, irrelevant here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import spaudiopy
    return spaudiopy


def n_sh(order: int) -> int:
    return (order + 1) ** 2


def sh_degrees(order: int) -> np.ndarray:
    """Degree l of each ACN channel."""
    return np.concatenate([[l] * (2 * l + 1) for l in range(order + 1)])


def sn3d_to_orthonormal(order: int) -> np.ndarray:
    """Per-channel factors: Psi_orthonormal = factor * Psi_sn3d (ACN)."""
    return np.sqrt((2 * sh_degrees(order) + 1) / (4 * np.pi))


def sh_matrix(order: int, az_deg, el_deg) -> np.ndarray:
    """Real orthonormal ACN spherical harmonics at directions: (..., n_sh).

    spaudiopy.sph.sh_matrix's real SH exactly (tested), computed in one vectorised call of
    scipy.special.sph_harm_y: spaudiopy 0.2.0 loops over the deprecated sph_harm, which is 20x slower
    and gone in SciPy 1.17, and this sits in the moving-source loop.
    """
    from scipy.special import sph_harm_y

    az, el = np.broadcast_arrays(np.asarray(az_deg, float), np.asarray(el_deg, float))
    degree = sh_degrees(order)[:, None]
    m = np.concatenate([np.arange(-l, l + 1) for l in range(order + 1)])[:, None]
    y = sph_harm_y(degree, np.abs(m), np.radians(90.0 - el.ravel()), np.radians(az.ravel()))  # (n_sh, Q)
    sign = np.sqrt(2.0) * (-1.0) ** np.abs(m)
    real = np.where(m < 0, sign * y.imag, np.where(m > 0, sign * y.real, y.real))
    return real.T.reshape(*az.shape, n_sh(order))


def virtual_layout(order: int, layout: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Virtual loudspeaker directions (az_deg, el_deg)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "ring8" or (layout == "auto" and order == 1):
        return RING8_AZ.copy(), np.zeros(8)
    spaudiopy = _spaudiopy()
    degree = 2 * order + 1
    if degree > 21:
        raise ValueError(f"order {order} needs a t-design of degree {degree}; spaudiopy ships up to 21 (order 10)")
    x, y, z = spaudiopy.grids.load_t_design(degree).T
    return np.degrees(np.arctan2(y, x)), np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))


def decoder_matrix(order: int, spk_az, spk_el, decoder: str = "lsq") -> np.ndarray:
    """(M, n_sh) loudspeaker gains for orthonormal ACN signals."""
    y_spk = sh_matrix(order, spk_az, spk_el)  # (M, n_sh)
    if decoder == "lsq":
        return np.linalg.pinv(y_spk.T, rcond=1e-10)
    if decoder == "sampling":
        # Y_sn3d(spk) . Psi_sn3d = sum_n (4 pi / (2l+1)) Y_n(spk) Psi_n, scaled by 1/M
        return y_spk * (4 * np.pi / (2 * sh_degrees(order) + 1)) / len(y_spk)
    raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")


class SHDecoder:
    """A binaural SH decoder for one HRIR set, order, layout and decoder.

    Loudspeaker decoders (lsq, sampling) keep their layout, gains and loudspeaker HRIRs; all
    decoders end in `sh_to_ear` (n_sh, 2, taps), the filters from SH signals to the two ears.
    """

    def __init__(self, hrirs: HRIRSet, order: int = 1, decoder: str = "lsq", layout: str = "auto"):
        if int(order) != order or order < 1:
            raise ValueError(f"SH order must be an integer >= 1, got {order!r}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.hrirs, self.order, self.decoder, self.layout = hrirs, int(order), decoder, layout
        if decoder == "magls":
            self.spk_az = self.spk_el = self.gains = self.speaker_hrirs = None
            self.sh_to_ear = _magls_filters(hrirs, self.order)
        else:
            self.spk_az, self.spk_el = virtual_layout(self.order, layout)
            self.gains = decoder_matrix(self.order, self.spk_az, self.spk_el, decoder)  # (M, n_sh)
            self.speaker_hrirs = hrirs.nearest(self.spk_az, self.spk_el).astype(np.float64)  # (M, 2, taps)
            self.sh_to_ear = np.einsum("mn,met->net", self.gains, self.speaker_hrirs)  # (n_sh, 2, taps)
        # channels the layout cannot reproduce (Z on the horizontal ring) decode to nothing: skip them
        peak = np.abs(self.sh_to_ear).max(axis=(1, 2))
        self.active = np.flatnonzero(peak > 1e-9 * peak.max())

    def speaker_feeds(self, psi: np.ndarray) -> np.ndarray:
        """SpatialV2A's s'(t) = D_dec Psi(t): (n_sh, N) -> (M, N)."""
        if self.gains is None:
            raise ValueError(f"decoder {self.decoder!r} has no virtual loudspeakers")
        return self.gains @ psi

    def source_filters(self, az_deg, el_deg) -> np.ndarray:
        """The collapsed filter pair of a source at each direction: (..., 2, taps) float32."""
        y = sh_matrix(self.order, az_deg, el_deg)
        return np.einsum("...n,net->...et", y, self.sh_to_ear).astype(np.float32)


def _magls_filters(hrirs: HRIRSet, order: int) -> np.ndarray:
    """spaudiopy's magnitude-least-squares SH-to-ear filters over every measured direction: (n_sh, 2, taps)."""
    spaudiopy = _spaudiopy()
    measured = spaudiopy.sig.HRIRs(hrirs.ir[:, 0].astype(np.float64), hrirs.ir[:, 1].astype(np.float64),
                                   np.radians(hrirs.az_deg), np.radians(90.0 - hrirs.el_deg), hrirs.fs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        filters = spaudiopy.decoder.magls_bin(measured, order)  # (2, n_sh, taps)
    return np.ascontiguousarray(np.transpose(filters, (1, 0, 2)))


@functools.lru_cache(maxsize=32)
def get_decoder(hrirs: HRIRSet, order: int = 1, decoder: str = "lsq", layout: str = "auto") -> SHDecoder:
    """Cached SHDecoder (HRIR sets hash by identity; load_hrirs returns cached instances)."""
    return SHDecoder(hrirs, order, decoder, layout)


# -- convolution -------------------------------------------------------------------------------
def _block_size(n: int, taps: int) -> int:
    full = sfft.next_fast_len(n + taps - 1, real=True)
    return min(full, max(4096, 1 << int(np.ceil(np.log2(8 * taps)))))


def filter_sum(signals: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """y[..., e, :] = sum_c filters[..., c, e, :] * signals[..., c, :], first N samples, float32.

    Overlap-save with scipy.fft, summing the channels in the frequency domain (one inverse FFT per
    output channel, not per pair; scipy.signal.oaconvolve cannot sum and broadcasts slowly).
    signals (..., C, N); filters (..., C, E, taps) broadcastable over the leading axes.
    """
    x = np.asarray(signals, np.float32)
    h = np.asarray(filters, np.float32)
    n, taps = x.shape[-1], h.shape[-1]
    lead = np.broadcast_shapes(x.shape[:-2], h.shape[:-3])
    if n == 0:
        return np.zeros((*lead, h.shape[-2], 0), np.float32)
    nfft = _block_size(n, taps)
    hop = nfft - taps + 1
    blocks = -(-n // hop)
    padded = np.zeros((*x.shape[:-1], taps - 1 + blocks * hop), np.float32)
    padded[..., taps - 1: taps - 1 + n] = x
    frames = sliding_window_view(padded, nfft, axis=-1)[..., ::hop, :][..., :blocks, :]  # (..., C, B, nfft)
    spec_x = sfft.rfft(frames, axis=-1)
    spec_h = sfft.rfft(h, nfft, axis=-1)  # (..., C, E, F)
    if x.shape[-2] == 1:
        spec_y = spec_x[..., 0, None, :, :] * spec_h[..., 0, :, None, :]
    else:
        spec_y = np.einsum("...cbf,...cef->...ebf", spec_x, spec_h)
    y = sfft.irfft(spec_y, nfft, axis=-1)[..., taps - 1:]  # (..., E, B, hop)
    return np.ascontiguousarray(y.reshape(*y.shape[:-2], blocks * hop)[..., :n])


# -- rendering ---------------------------------------------------------------------------------
def _check_mono(mono) -> np.ndarray:
    x = np.asarray(mono, np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"mono audio must be (N,) or (B, N), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("mono audio contains NaN or inf")
    return x


def _check_angles(az_deg, el_deg) -> tuple[np.ndarray, np.ndarray]:
    az, el = np.broadcast_arrays(np.asarray(az_deg, float), np.asarray(el_deg, float))
    if not (np.all(np.isfinite(az)) and np.all(np.isfinite(el))):
        raise ValueError("source direction contains NaN or inf")
    if np.any(np.abs(el) > 90.0):
        raise ValueError(f"elevation must be within -90..90 degrees, got {el}")
    return az, el


def source_filters(az_deg, el_deg, hrirs: HRIRSet | None = None, mode: str = "sh", order: int = 1,
                   decoder: str = "lsq", layout: str = "auto", interp: str = "barycentric") -> np.ndarray:
    """The binaural filter pair (..., 2, taps) that renders a static source at each direction."""
    hrirs = hrirs or load_hrirs()
    az, el = _check_angles(az_deg, el_deg)
    if mode == "sh":
        return get_decoder(hrirs, int(order), decoder, layout).source_filters(az, el)
    if mode == "direct":
        return hrirs.lookup(az, el, interp).astype(np.float32)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def render_static(mono, az_deg, el_deg=0.0, hrirs: HRIRSet | None = None, mode: str = "sh", order: int = 1,
                  decoder: str = "lsq", layout: str = "auto", interp: str = "barycentric") -> np.ndarray:
    """Render static source(s): mono (N,) -> (2, N); a batch (B, N) with az/el scalars or (B,) -> (B, 2, N).

    The audio must be at hrirs.fs (16 kHz by default). float32 out.
    """
    x = _check_mono(mono)
    filt = source_filters(az_deg, el_deg, hrirs, mode, order, decoder, layout, interp)
    if x.ndim == 1:
        if filt.ndim != 2:
            raise ValueError("one mono signal takes one direction (scalar az/el)")
        return filter_sum(x[None], filt[None])
    if filt.ndim == 2:
        filt = np.broadcast_to(filt, (len(x), *filt.shape))
    if filt.shape[0] != len(x):
        raise ValueError(f"{len(x)} clips but {filt.shape[0]} directions")
    return filter_sum(x[:, None, :], filt[:, None])


def encode(mono, az_deg, el_deg, order: int = 1) -> np.ndarray:
    """Orthonormal ACN SH signals of one source: (n_sh, N) = Y(theta) s (Psi of SpatialV2A)."""
    x = _check_mono(mono)
    az, el = _check_angles(az_deg, el_deg)
    return sh_matrix(order, az, el).reshape(-1, 1) * x[None, :]


def decode(psi: np.ndarray, hrirs: HRIRSet | None = None, order: int | None = None, decoder: str = "lsq",
           layout: str = "auto") -> np.ndarray:
    """Binaural (2, N) from orthonormal ACN SH signals (n_sh, N) through the virtual loudspeakers."""
    psi = np.asarray(psi, np.float32)
    order = int(round(np.sqrt(psi.shape[0]))) - 1 if order is None else order
    if psi.ndim != 2 or psi.shape[0] != n_sh(order):
        raise ValueError(f"expected ({n_sh(order)}, N) SH signals for order {order}, got {psi.shape}")
    dec = get_decoder(hrirs or load_hrirs(), order, decoder, layout)
    return filter_sum(psi[dec.active], dec.sh_to_ear[dec.active])


def render_scene(sources, hrirs: HRIRSet | None = None, mode: str = "sh", order: int = 1, decoder: str = "lsq",
                 layout: str = "auto", interp: str = "barycentric") -> np.ndarray:
    """Mix of static sources [(mono, az_deg, el_deg), ...] -> (2, N), N = the longest source.

    In `sh` mode with more sources than SH channels the sources are mixed in the SH domain and
    decoded once; otherwise each source gets its collapsed filter pair (identical result, fewer FFTs).
    """
    if not sources:
        raise ValueError("render_scene needs at least one source")
    monos = [_check_mono(m) for m, _, _ in sources]
    if any(m.ndim != 1 for m in monos):
        raise ValueError("render_scene takes one (N,) mono signal per source")
    n = max(len(m) for m in monos)
    stack = np.zeros((len(monos), n), np.float32)
    for i, m in enumerate(monos):
        stack[i, : len(m)] = m
    az = np.array([s[1] for s in sources], float)
    el = np.array([s[2] for s in sources], float)
    hrirs = hrirs or load_hrirs()
    if mode == "sh" and len(sources) > n_sh(order):
        psi = sh_matrix(order, *_check_angles(az, el)).T @ stack  # (n_sh, N)
        return decode(psi, hrirs, order, decoder, layout)
    filt = source_filters(az, el, hrirs, mode, order, decoder, layout, interp)  # (S, 2, taps)
    return filter_sum(stack, filt)
