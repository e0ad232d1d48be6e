"""The weight-free localiser on drawn scenes whose sounding object is known."""

import time

import numpy as np
import pytest
from scipy import stats

from binauralizer.localize import build_localiser
from binauralizer.localize.motion import MotionLocaliser, coarse_frames, frame_rms, window_correlation
from binauralizer.localize.trajectory import confidence, track_positions

SR, FPS, H, W = 16000, 8.0, 224, 298


def bursts(rng, n_frames):
    """Per-frame loudness: random bursts over a quiet floor (like speech, barks, hits)."""
    env = np.full(n_frames, 0.1)
    i = int(rng.integers(0, 3))
    while i < n_frames:
        length = int(rng.integers(1, 4))
        env[i : i + length] = rng.uniform(0.7, 1.0)
        i += length + int(rng.integers(1, 5))
    return env


def audio_for(env, rng):
    """Noise whose RMS in each frame's slot follows `env` (frame i centred on i / FPS)."""
    n = int(len(env) * SR / FPS)
    gain = np.interp(np.arange(n) / SR, np.arange(len(env)) / FPS, env)
    return (0.3 * gain * rng.standard_normal(n)).astype(np.float32)


def scene(seconds=10.0, sounder="static", pulse_px=6.0, distractor=True, seed=0, shake=0.0):
    """Frames with a red disk whose radius follows the sound and a silent blue square sweeping across."""
    rng = np.random.default_rng(seed)
    t = int(seconds * FPS)
    env = bursts(rng, t)
    bg = np.clip(120 + 25 * rng.standard_normal((H, W, 1)) * np.array([0.9, 1.0, 0.95]), 0, 255)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    u = np.linspace(0.2, 0.8, t) if sounder == "moving" else np.full(t, 0.22)
    cx, cy = u * W, np.full(t, 0.4 * H)
    dx = W * (0.5 + 0.38 * np.sin(2 * np.pi * 1.5 * np.arange(t) / t))
    frames = np.empty((t, H, W, 3), np.uint8)
    for i in range(t):
        f = bg.copy()
        if distractor:
            f[int(0.7 * H) - 20 : int(0.7 * H) + 20, max(0, int(dx[i]) - 20) : int(dx[i]) + 20] = (40, 90, 235)
        r = 18.0 + pulse_px * (env[i] - 0.5)
        f[(xx - cx[i]) ** 2 + (yy - cy[i]) ** 2 <= r * r] = (235, 40, 30)
        f += shake * rng.standard_normal()  # global brightness flicker
        frames[i] = np.clip(f, 0, 255)
    return frames, audio_for(env, rng), cx / W, dx / W


def test_static_sounder_beats_a_large_silent_sweeping_distractor():
    frames, audio, truth_u, distractor_u = scene()
    heat = MotionLocaliser().heatmaps(frames, audio)
    assert heat.shape == (80, 56, 74) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    u = track_positions(heat)[:, 0]
    hits = np.abs(u - truth_u) < np.abs(u - distractor_u)
    assert hits.mean() >= 0.95
    assert np.median(np.abs(u - truth_u)) < 0.02


def test_motion_alone_would_pick_the_distractor():
    """Sanity check of the scene: plain motion energy points at the sweeping square."""
    frames, audio, truth_u, distractor_u = scene()
    motion = MotionLocaliser().motion_energy(frames)
    u = track_positions(motion)[:, 0]
    assert np.mean(np.abs(u - distractor_u) < np.abs(u - truth_u)) > 0.7


def test_a_sounder_that_barely_moves_is_still_found():
    frames, audio, truth_u, distractor_u = scene(pulse_px=2.0, seed=7)  # radius changes by 2 px
    u = track_positions(MotionLocaliser().heatmaps(frames, audio))[:, 0]
    assert np.mean(np.abs(u - truth_u) < np.abs(u - distractor_u)) >= 0.9


def test_moving_sounder_is_tracked():
    frames, audio, truth_u, _ = scene(sounder="moving", seed=1)
    u = track_positions(MotionLocaliser().heatmaps(frames, audio))[:, 0]
    assert stats.spearmanr(u, truth_u).statistic > 0.9
    assert np.mean(np.abs(u - truth_u) < 0.05) > 0.85


def test_global_flicker_does_not_move_the_estimate():
    frames, audio, truth_u, distractor_u = scene(shake=6.0, seed=2)
    u = track_positions(MotionLocaliser().heatmaps(frames, audio))[:, 0]
    assert np.mean(np.abs(u - truth_u) < np.abs(u - distractor_u)) >= 0.9


def test_nothing_moving_gives_a_dim_centre_prior():
    rng = np.random.default_rng(4)
    still = np.repeat(rng.integers(60, 200, (1, H, W, 3), dtype=np.uint8), 40, axis=0)
    heat = MotionLocaliser().heatmaps(still, audio_for(bursts(rng, 40), rng))
    u, v = track_positions(heat).T
    np.testing.assert_allclose(u, 0.5, atol=0.01)
    np.testing.assert_allclose(v, 0.5, atol=0.01)
    assert confidence(heat) < 0.06  # dim: no audio-visual evidence anywhere


def test_a_single_frame_points_straight_ahead():
    frames, audio, _, _ = scene(seconds=0.125)
    heat = MotionLocaliser().heatmaps(frames, audio)
    assert heat.shape[0] == 1
    np.testing.assert_allclose(track_positions(heat)[0], [0.5, 0.5], atol=0.01)


def test_ten_second_clip_is_fast_and_deterministic():
    frames, audio, _, _ = scene(seconds=10.0)
    loc = build_localiser("motion")
    first = loc.heatmaps(frames, audio)
    best = min(_timed(lambda: loc.heatmaps(frames, audio)) for _ in range(3))
    assert best < 0.5, f"{best:.3f} s for a 10 s clip at 8 fps"
    assert loc.heatmaps(frames, audio).tobytes() == first.tobytes()


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_building_blocks():
    frames = np.arange(2 * 8 * 12 * 3, dtype=np.uint8).reshape(2, 8, 12, 3)
    cells = coarse_frames(frames, grid=2)  # 4 x 4 blocks
    assert cells.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(cells, frames.reshape(2, 2, 4, 3, 4, 3).mean(axis=(2, 4)))
    # RMS per frame slot of a signal that is 0.5 in the first half and 0 in the second
    # frame i owns the samples centred on i * N / T: here [0, 400) and [400, 1200)
    audio = np.r_[np.full(400, 0.5), np.full(800, 0.2), np.zeros(400)].astype(np.float32)
    np.testing.assert_allclose(frame_rms(audio, 2), [0.5, 0.2], rtol=1e-6)
    # correlation of a cell that copies y is 1, of an anti-copy -1
    y = np.sin(np.arange(50) / 3.0)
    x = np.stack([y, -y], axis=1)[:, None, :]
    r = window_correlation(x, y, 0)
    np.testing.assert_allclose(r[0, 0], [1.0, -1.0], atol=1e-9)


@pytest.mark.parametrize("frames, audio, message", [
    (np.zeros((4, 8, 8), np.uint8), np.zeros(100, np.float32), "frames must be"),
    (np.zeros((4, 8, 8, 3), np.float32), np.zeros(100, np.float32), "uint8"),
    (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(0, np.float32), "audio is empty"),
    (np.zeros((4, 8, 8, 3), np.uint8), np.full(100, np.nan, np.float32), "NaN"),
])
def test_bad_inputs_raise_readable_errors(frames, audio, message):
    with pytest.raises(ValueError, match=message):
        MotionLocaliser().heatmaps(frames, audio)
