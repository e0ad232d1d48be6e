"""HRIR sets: loading, resampling, the coordinate convention, lookup and interpolation (real SOFA files)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft

from binauralizer.hrir import load_hrirs, resolve_sofa
from binauralizer.sh_render import render_static

FS = 16000


def gcc_phat_itd_ms(left: np.ndarray, right: np.ndarray, fs: int, max_ms: float = 1.0, upsample: int = 16) -> float:
    """GCC-PHAT interaural time difference in ms, positive when the LEFT ear leads.

    The phase-transform cross-spectrum is zero-padded `upsample`-fold before the inverse FFT, which
    interpolates the correlation to 1/16 sample.
    """
    n = sfft.next_fast_len(len(left) + len(right))
    cross = sfft.rfft(right, n) * np.conj(sfft.rfft(left, n))  # peak at lag d when right = left delayed by d
    cross /= np.abs(cross) + 1e-12
    cc = sfft.irfft(cross, n * upsample)
    max_lag = int(max_ms * 1e-3 * fs * upsample)
    window = np.concatenate([cc[-max_lag:], cc[: max_lag + 1]])
    return (np.argmax(window) - max_lag) / (fs * upsample) * 1e3


def broadband_ild_db(binaural: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(binaural[0].astype(float) ** 2) / np.sum(binaural[1].astype(float) ** 2)))


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(7).standard_normal(FS).astype(np.float32)


def test_kemar_loads_resampled_to_16k_with_the_documented_layout():
    h = load_hrirs()
    assert (h.fs, h.source_fs, h.ir.shape) == (16000, 44100, (710, 2, 186))  # 512 taps * 16/44.1 = 186
    assert h.az_deg.min() > -180 and h.az_deg.max() <= 180
    assert (h.el_deg.min(), h.el_deg.max()) == (-40.0, 90.0)
    assert h.distance_m == pytest.approx(1.4)
    assert load_hrirs() is h and load_hrirs(resolve_sofa("kemar")) is h  # cached, by name or path
    assert not h.ir.flags.writeable  # shared through the cache


def test_source_on_the_left_is_louder_in_the_left_ear(noise):
    h = load_hrirs()
    left = render_static(noise, 90.0, 0.0, h, mode="direct", interp="nearest")
    right = render_static(noise, -90.0, 0.0, h, mode="direct", interp="nearest")
    assert broadband_ild_db(left) > 8.0  # REFERENCE.md measured 9.4 dB
    assert broadband_ild_db(right) < -8.0


def test_kemar_itd_at_90_degrees_after_resampling(noise):
    h = load_hrirs()
    itd_left = gcc_phat_itd_ms(*render_static(noise, 90.0, 0.0, h, mode="direct", interp="nearest"), FS)
    itd_right = gcc_phat_itd_ms(*render_static(noise, -90.0, 0.0, h, mode="direct", interp="nearest"), FS)
    assert 0.60 <= itd_left <= 0.75
    assert -0.75 <= itd_right <= -0.60

    # PseudoBinaural's bug for contrast: 44.1 kHz HRIRs applied to 16 kHz audio stretch the ITD 2.76x
    raw = load_hrirs(fs=44100)
    stretched = gcc_phat_itd_ms(*render_static(noise, 90.0, 0.0, raw, mode="direct", interp="nearest"), FS, max_ms=3.0)
    assert stretched / itd_left == pytest.approx(44100 / 16000, rel=0.1)
    assert stretched > 1.6


def test_ild_sign_follows_azimuth_across_the_front():
    h = load_hrirs()
    noise = np.random.default_rng(3).standard_normal(8000).astype(np.float32)
    az = np.arange(-90, 91, 10, dtype=float)
    ilds = np.array([broadband_ild_db(render_static(noise, a, 0.0, h, mode="direct")) for a in az])
    side = az != 0
    assert np.all(np.sign(ilds[side]) == np.sign(az[side]))
    assert abs(ilds[az == 0][0]) < 0.5
    assert np.all(np.abs(ilds[np.abs(az) >= 30]) > 5.0)


def test_nearest_picks_the_closest_measured_direction():
    h = load_hrirs()
    i = h.nearest_index(32.0, 1.0)  # measured grid at el 0 is every 5 degrees
    assert (h.az_deg[i], h.el_deg[i]) == (30.0, 0.0)
    assert h.az_deg[h.nearest_index(-179.0, 0.0)] == 180.0  # wraps around the back
    assert h.nearest([10.0, -10.0], [0.0, 0.0]).shape == (2, 2, 186)


def test_interpolation_is_exact_on_measured_directions_and_between_neighbours_elsewhere():
    h = load_hrirs()
    for az, el in [(30.0, 0.0), (-75.0, 0.0), (0.0, 90.0)]:
        np.testing.assert_allclose(h.interpolated(az, el), h.nearest(az, el), atol=2e-6)
    verts, weights = h.barycentric(32.5, 0.0)
    assert set(zip(h.az_deg[verts][weights > 0.01], h.el_deg[verts][weights > 0.01])) == {(30.0, 0.0), (35.0, 0.0)}
    np.testing.assert_allclose(weights[weights > 0.01], [0.5, 0.5], atol=0.01)

    # onset-aligned: the interpolated ITD lies between the neighbours' and no comb notch appears
    noise = np.random.default_rng(5).standard_normal(FS).astype(np.float32)
    itd = [gcc_phat_itd_ms(*render_static(noise, a, 0.0, h, mode="direct"), FS) for a in (30.0, 32.5, 35.0)]
    assert min(itd[0], itd[2]) - 0.02 <= itd[1] <= max(itd[0], itd[2]) + 0.02
    # the magnitude at the midpoint stays at the neighbours' RMS magnitude; mixing unaligned IRs comb-filters
    band = (np.fft.rfftfreq(512, 1 / FS) >= 100) & (np.fft.rfftfreq(512, 1 / FS) <= 7000)
    for a, b in [(30.0, 35.0), (-60.0, -55.0), (0.0, 5.0)]:
        pair = h.nearest([a, b], [0.0, 0.0])
        rms = np.sqrt(np.mean(np.abs(np.fft.rfft(pair, 512)) ** 2, axis=0))[:, band]
        aligned = np.abs(np.fft.rfft(h.interpolated((a + b) / 2, 0.0), 512))[:, band]
        naive = np.abs(np.fft.rfft(pair.mean(axis=0), 512))[:, band]
        dev_aligned = np.mean(np.abs(20 * np.log10(aligned / rms)))
        dev_naive = np.mean(np.abs(20 * np.log10(naive / rms)))
        assert dev_aligned < 0.2 and dev_aligned < dev_naive / 3


def test_interpolation_covers_the_unmeasured_cap_below_minus_40():
    h = load_hrirs()
    ir = h.interpolated(-60.0, -80.0)
    verts, weights = h.barycentric(-60.0, -80.0)
    assert np.all(h.el_deg[verts] == -40.0) and weights.sum() == pytest.approx(1.0)
    assert np.all(np.isfinite(ir)) and np.abs(ir).max() > 0.05


def test_resampling_keeps_the_frequency_response_below_7_khz():
    """resample_poly's anti-aliasing filter is flat to 0.1 dB up to 6 kHz and starts rolling off near 8 kHz."""
    hi = load_hrirs(fs=44100, normalize=False)
    lo = load_hrirs(fs=16000, normalize=False)
    f = np.array([250, 1000, 3000, 5000, 6000, 7000])
    tolerance_db = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 1.0])
    for idx in (0, 300, 650):
        for ear in (0, 1):
            h_hi = np.abs(np.fft.rfft(hi.ir[idx, ear], 44100))[f]
            h_lo = np.abs(np.fft.rfft(lo.ir[idx, ear], 16000))[f]
            assert np.all(np.abs(20 * np.log10(h_lo / h_hi)) <= tolerance_db)


@pytest.mark.parametrize("name", ["sonicom-1", "sonicom-2"])
def test_sonicom_sets_load_by_name_with_the_same_convention(name):
    h = load_hrirs(name)
    assert (h.fs, h.source_fs, h.ir.shape[:2]) == (16000, 48000, (793, 2))
    assert h.ir.shape[2] == 86  # 256 taps * 16/48 rounded up
    left, right = h.nearest(90.0, 0.0), h.nearest(-90.0, 0.0)
    assert np.sum(left[0] ** 2) > 4 * np.sum(left[1] ** 2)
    assert np.sum(right[1] ** 2) > 4 * np.sum(right[0] ** 2)


def test_unknown_set_names_fail_with_a_readable_message():
    with pytest.raises(FileNotFoundError, match="kemar, sonicom-1, sonicom-2"):
        load_hrirs("cipic-003")
