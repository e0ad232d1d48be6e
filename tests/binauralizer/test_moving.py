"""Moving sources: static consistency, click-free crossfades (with a derived bound), distance gain, delay, Doppler."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from binauralizer import moving
from binauralizer.hrir import load_hrirs
from binauralizer.moving import position_filters, render_trajectory
from binauralizer.sh_render import MODES, render_static

FS = 16000


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(21).standard_normal(2 * FS).astype(np.float32)


@pytest.mark.parametrize("mode", MODES)
def test_a_static_trajectory_equals_render_static(noise, mode):
    h = load_hrirs()
    moving_static = render_trajectory(noise, [0.0, 1.0, 2.0], [35.0] * 3, [10.0] * 3, None, h, mode=mode)
    np.testing.assert_allclose(moving_static, render_static(noise, 35.0, 10.0, h, mode=mode), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_a_static_source_at_another_distance_is_scaled_and_delayed(noise, mode):
    h = load_hrirs()
    delay = 32  # samples; r - r_ref = 32 / 16000 * 343 m
    r = moving.REFERENCE_DISTANCE_M + delay / FS * moving.SPEED_OF_SOUND
    far = render_trajectory(noise, [0.0, 2.0], [-50.0, -50.0], [0.0, 0.0], [r, r], h, mode=mode)
    near = render_static(noise, -50.0, 0.0, h, mode=mode)
    np.testing.assert_allclose(far[:, delay:], near[:, :-delay] / r, atol=2e-5)
    assert np.abs(far[:, : delay - 1]).max() < 1e-6  # nothing arrives before the sound has travelled


def click_bound(filters: np.ndarray, hop: int, freq: float, amplitude: float) -> np.ndarray:
    """Largest possible |y[n+1] - y[n]| per ear for a sine through the crossfaded filters (n >= taps).

    y = sum_k F_k * (w_k x) with tents w_k (slope 1/hop). Splitting y[n+1] - y[n]:
      * the sine's own change: |x[m+1] - x[m]| <= A 2 sin(w/2), through F_bar = sum_k w_k[n+1] F_k,
        whose gain at w is at most G = max_k |F_k(w)| (a convex mix of responses), plus the part of
        the filter that differs over its own length: the weights change by at most j/hop at tap j,
        across at most three positions: R1 = (2/hop) sum_j j max|F_k[j] - F_k'[j]| (k' = k+1, k+2);
      * the weights' change: |dw| = 1/hop between neighbours: A sum_j max_k |F_k+1[j] - F_k[j]| / hop.
    bound = A (2 sin(w/2) (G + R1) + sum_j D1[j] / hop). A hard switch between positions (no
    crossfade) jumps by up to A |F_k+1 - F_k| at once, which this bound does not allow.
    """
    f = filters.astype(np.float64)
    gain = np.abs(np.fft.rfft(f, FS, axis=-1))[..., int(freq)].max(axis=0)  # 1 Hz bins
    d1 = np.abs(np.diff(f, axis=0)).max(axis=0)
    d2 = np.maximum(d1, np.abs(f[2:] - f[:-2]).max(axis=0)) if len(f) > 2 else d1
    taps = np.arange(f.shape[-1])
    r1 = 2.0 / hop * np.sum(taps * d2, axis=-1)
    return amplitude * (2 * np.sin(np.pi * freq / FS) * (gain + r1) + d1.sum(axis=-1) / hop)


def hard_switch_render(x: np.ndarray, filters: np.ndarray, hop: int) -> np.ndarray:
    """The clicky way: each sample takes the full rendering of its nearest position, no crossfade."""
    full = np.stack([ss.fftconvolve(x[None].astype(float), f.astype(float), axes=-1)[:, : len(x)] for f in filters])
    nearest = np.minimum((np.arange(len(x)) + hop // 2) // hop, len(filters) - 1)
    return full[nearest, :, np.arange(len(x))].T


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("update_s", [0.04, 0.5])
def test_a_sine_moving_through_180_degrees_has_no_clicks(mode, update_s):
    freq, amplitude = 250.0, 0.5
    n = 2 * FS
    x = (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / FS)).astype(np.float32)
    traj = ([0.0, 2.0], [90.0, -90.0], [0.0, 0.0])  # left to right through the front
    h = load_hrirs()
    y = render_trajectory(x, *traj, None, h, mode=mode, update_s=update_s)
    filters, hop = position_filters(*traj, n, h, mode=mode, update_s=update_s)
    assert hop == round(update_s * FS)
    taps = filters.shape[-1]
    bound = click_bound(filters, hop, freq, amplitude)
    steps = np.abs(np.diff(y[:, taps:], axis=-1)).max(axis=-1)
    assert np.all(steps <= bound), (steps, bound)
    # the bound has teeth: at 0.5 s updates (positions 45 degrees apart) hard switching breaks it
    if update_s == 0.5:
        naive = np.abs(np.diff(hard_switch_render(x, filters, hop)[:, taps:], axis=-1)).max(axis=-1)
        assert np.any(naive > 1.5 * bound), (naive, bound)


@pytest.mark.parametrize("mode", MODES)
def test_the_interaural_level_difference_follows_the_path(noise, mode):
    y = render_trajectory(noise, [0.0, 2.0], [80.0, -80.0], [0.0, 0.0], None, load_hrirs(), mode=mode)
    q = FS // 4

    def ild(seg):
        return 10 * np.log10(np.sum(seg[0].astype(float) ** 2) / np.sum(seg[1].astype(float) ** 2))

    assert ild(y[:, :q]) > 5.0
    assert ild(y[:, -q:]) < -5.0
    assert abs(ild(y[:, FS - q // 2: FS + q // 2])) < 2.0


def test_distance_gives_inverse_distance_gain_and_a_doppler_shift():
    h = load_hrirs()
    freq = 1000.0
    t = np.arange(2 * FS) / FS
    x = np.sin(2 * np.pi * freq * t).astype(np.float32)
    # standing at 6 m, approaching at 5 m/s to 1 m between 0.5 s and 1.5 s, then standing at 1 m
    y = render_trajectory(x, [0.0, 0.5, 1.5, 2.0], [0.0] * 4, [0.0] * 4, [6.0, 6.0, 1.0, 1.0], h, mode="direct")
    mid = y[0, int(0.75 * FS): int(1.25 * FS)] * np.hanning(FS // 2)
    spec = np.abs(np.fft.rfft(mid, 16 * FS))
    measured = np.argmax(spec) / 16  # Hz at 1/16 Hz resolution
    # the delay tau = (r - 1)/c falls at 5/343 s per s, so the frequency rises by that factor
    assert measured == pytest.approx(freq * (1 + 5.0 / 343.0), abs=0.5)
    assert measured > freq + 10
    # 1/r: the level at 6 m is 1/6 of the level at 1 m (same direction and filter)
    far = np.std(y[0, int(0.1 * FS): int(0.45 * FS)])
    near = np.std(y[0, int(1.6 * FS):])
    assert 20 * np.log10(near / far) == pytest.approx(20 * np.log10(6.0), abs=0.1)


def test_distance_is_clipped_to_six_metres(noise):
    h = load_hrirs()
    far = render_trajectory(noise, [0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [25.0, 25.0], h)
    six = render_trajectory(noise, [0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [6.0, 6.0], h)
    np.testing.assert_array_equal(far, six)
    head = render_trajectory(noise, [0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], h)
    assert np.isfinite(head).all()  # the 1/r gain is capped at 1 / 0.2 m


def test_foleyspace_default_update_and_azimuth_wrap():
    _, _, hop = moving.update_positions([0.0, 1.0], [0.0, 0.0], [0.0, 0.0], FS, FS)
    assert hop == 640  # 40 ms at 16 kHz: 200 positions per 8 s
    az, _, _ = moving.update_positions([0.0, 1.0], [170.0, -170.0], [0.0, 0.0], FS, FS)
    assert np.all(np.abs(np.diff(az)) < 1.0)  # crosses the back the short way (170 -> 190), not through 0


def test_bad_trajectories_raise_readable_errors(noise):
    h = load_hrirs()
    with pytest.raises(ValueError, match="NaN"):
        render_trajectory(noise, [0.0, 1.0], [0.0, np.nan], [0.0, 0.0], None, h)
    with pytest.raises(ValueError, match="increasing"):
        render_trajectory(noise, [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], None, h)
    with pytest.raises(ValueError, match="equal length"):
        render_trajectory(noise, [0.0, 1.0], [0.0], [0.0, 0.0], None, h)
    assert render_trajectory(noise[:1], [0.0], [20.0], [0.0], None, h).shape == (2, 1)
