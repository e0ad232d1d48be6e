"""Weight-free audio-visual localiser: where does the picture change when the sound changes?

No pretrained weights exist offline, so this localiser uses only signal statistics:

1. Frames are block-averaged to a coarse grid (short side ~`grid` cells) -- fast, and denoised.
2. Motion energy per cell: mean absolute frame difference over the colour channels, smoothed a
   little in space and time; each frame's spatial median is subtracted so a global change
   (camera shake, a lighting flicker) does not count as local motion.
3. Audio activity per frame: how much the loudness changes, |RMS_t - RMS_t-1|, with the RMS
   taken over the audio that belongs to each frame (the audio is split evenly among the
   frames, so the frame rate is implied by len(audio) / T).
4. Per cell, the Pearson correlation of motion energy and audio activity over a sliding window
   (`window_s`, centred): things that move *when the sound changes* get r near 1, a silent object
   that moves a lot gets r near 0. Window statistics use a motion-variance floor so noise-only
   cells cannot reach a high r.
5. Evidence = max(r, 0)^3 x the motion energy averaged over the same window: the correlation
   picks the sounding object, the motion places it. The cube suppresses chance correlations of
   large silent motions (r of unrelated 2 s series scatters by ~0.25); the window average keeps
   a sounding object visible in frames where it happens not to change (a static source between
   two sounds) without the lag a one-sided average would add.
6. A centre prior (Gaussian, `prior_sigma` of the frame size) is added at `prior_weight` of the
   clip's evidence scale, so frames without evidence, or a video where nothing moves, point
   straight ahead. Values are divided by max(clip evidence, `evidence_floor`): a clip with no
   audio-visual evidence stays dim (low confidence) instead of being stretched to 1.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d, uniform_filter1d

from binauralizer.localize.base import check_inputs, register
from binauralizer.constants import SAMPLE_RATE


def coarse_frames(frames: np.ndarray, grid: int = 56) -> np.ndarray:
    """Block-average (T,H,W,3) uint8 frames so the short side is about `grid` cells: float32 (T,h,w,3).

    Integer strided sums (one pass per block offset) are ~8x faster than a float mean over
    reshaped block axes, which is most of this localiser's run time.
    """
    t, h, w, c = frames.shape
    f = max(1, int(round(min(h, w) / max(1, grid))))  # f <= min(h, w)
    hh, ww = h // f, w // f
    acc_type = np.uint16 if f * f * 255 < 2**16 else np.uint32
    x = frames[:, : hh * f, : ww * f]
    rows = sum(x[:, i::f].astype(acc_type) for i in range(f))
    cells = sum(rows[:, :, i::f] for i in range(f))
    return cells.astype(np.float32) / float(f * f)


def frame_rms(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """RMS of the audio around each frame time: frame i owns samples centred on i * N / T."""
    n = audio.size
    edges = np.clip(np.round((np.arange(n_frames + 1) - 0.5) * n / n_frames).astype(np.int64), 0, n)
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    return np.sqrt((energy[edges[1:]] - energy[edges[:-1]]) / np.maximum(np.diff(edges), 1))


def window_correlation(x: np.ndarray, y: np.ndarray, length: int, x_var_floor: float = 0.0) -> np.ndarray:
    """Pearson r between every cell's series x (T,h,w) and y (T,) over a centred sliding window.

    `length` >= T (or <= 0) uses the whole clip. `x_var_floor` is added to x's variance, which
    pulls the r of nearly constant cells towards 0.
    """
    t = x.shape[0]
    yy = y.astype(np.float64)[:, None, None]
    if length <= 0 or length >= t:
        mean = lambda a: np.broadcast_to(a.mean(axis=0, keepdims=True), (t,) + a.shape[1:])  # noqa: E731
    else:
        mean = lambda a: uniform_filter1d(a, length, axis=0, mode="nearest")  # noqa: E731
    x = x.astype(np.float64)
    mx, my = mean(x), mean(yy)
    cov = mean(x * yy) - mx * my
    vx = np.maximum(mean(x * x) - mx * mx, 0.0)
    vy = np.maximum(mean(yy * yy) - my * my, 0.0)
    return cov / np.sqrt((vx + x_var_floor) * vy + 1e-12)


def centre_prior(h: int, w: int, sigma: float = 0.25) -> np.ndarray:
    """Gaussian bump at the frame centre, peak 1, `sigma` as a fraction of each side."""
    ys = ((np.arange(h) + 0.5) / h - 0.5) / sigma
    xs = ((np.arange(w) + 0.5) / w - 0.5) / sigma
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


@register("motion")
class MotionLocaliser:
    """Motion energy weighted by its correlation with the audio's loudness changes (see module doc)."""

    def __init__(
        self,
        grid: int = 56,
        window_s: float = 2.0,
        smoothing: float = 0.7,
        spatial_sigma: float = 1.5,
        prior_sigma: float = 0.25,
        prior_weight: float = 0.05,
        evidence_floor: float = 0.5,
        sample_rate: int = SAMPLE_RATE,
    ):
        self.grid = int(grid)
        self.window_s = float(window_s)
        self.smoothing = float(smoothing)
        self.spatial_sigma = float(spatial_sigma)
        self.prior_sigma = float(prior_sigma)
        self.prior_weight = float(prior_weight)
        self.evidence_floor = float(evidence_floor)
        self.sample_rate = int(sample_rate)

    def motion_energy(self, frames: np.ndarray) -> np.ndarray:
        """(T, h, w) local motion energy in grey levels per pixel, global change removed."""
        cells = coarse_frames(frames, self.grid)
        t = cells.shape[0]
        if t < 2:
            return np.zeros(cells.shape[:3], np.float32)
        diff = np.abs(np.diff(cells, axis=0)).mean(axis=-1)
        diff = np.concatenate([diff[:1], diff], axis=0)
        diff = gaussian_filter(diff, (self.smoothing, self.spatial_sigma, self.spatial_sigma), mode="nearest")
        diff -= np.median(diff.reshape(t, -1), axis=1)[:, None, None]
        return np.maximum(diff, 0.0)

    def audio_activity(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        """(T,) loudness change per frame, smoothed like the motion energy."""
        rms = frame_rms(audio, n_frames)
        change = np.abs(np.diff(rms, prepend=rms[:1]))
        return gaussian_filter1d(change, self.smoothing, mode="nearest") if n_frames > 1 else change

    def evidence(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """(T, h, w) unnormalised audio-visual evidence: max(r, 0)^3 x windowed motion energy."""
        frames, audio = check_inputs(frames, audio)
        motion = self.motion_energy(frames)
        t = motion.shape[0]
        activity = self.audio_activity(audio, t)
        fps = t * self.sample_rate / audio.size
        length = max(3, int(round(self.window_s * fps)))
        r = window_correlation(motion, activity, length, x_var_floor=1.0)
        local = uniform_filter1d(motion, min(length, t), axis=0, mode="nearest")
        return (np.maximum(r, 0.0) ** 3 * local).astype(np.float32)

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        ev = self.evidence(frames, audio)
        scale = max(float(ev.max()), self.evidence_floor)
        prior = self.prior_weight * scale * centre_prior(*ev.shape[1:], sigma=self.prior_sigma)
        out = (ev + prior[None]) / ((1.0 + self.prior_weight) * scale)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


@register("motion-centroid")
class MotionCentroidLocaliser:
    """The weight-free baseline every localiser must beat: where the picture moves most, ignoring the
    audio. Heatmap = local motion energy (global change removed), so the track is its centroid."""

    def __init__(self, grid: int = 56, **motion_options):
        self.motion = MotionLocaliser(grid=grid, **motion_options)

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        from binauralizer.localize.base import normalise_clip

        frames, audio = check_inputs(frames, audio)
        return normalise_clip(self.motion.motion_energy(frames))
