"""PseudoBinaural's training data: mono sources placed in a picture and rendered binaurally.

A scene has 1, 2 or 3 sources (probability 0.4 / 0.5 / 0.1). Each source is a 0.63 s mono
excerpt (10080 samples at 16 kHz) of a kept clip, RMS-normalised to 0.1, with an image patch cut
from that clip's frame nearest the excerpt's middle (around the localiser's heatmap peak when
there is one, else the centre). The patch goes to a random place on a black 360 x 640 canvas and
its centre gives the direction: az = (W/2 - cx)/W * pi * 2/3 (-60..+60 degrees, positive =
left), el = (H/2 - cy)/H * pi/2. The audio is rendered with the binauralizer's first-order
spherical-harmonic path (8 virtual loudspeakers, least-squares decoder) through HRIRs that were
RESAMPLED to 16 kHz -- PseudoBinaural's released code applies 44.1 kHz HRIRs to 16 kHz audio
unresampled, which stretches interaural time differences 2.76x. Optionally a source moves along
a short path (time-varying HRIR rendering) and the camera pans (FOA rotation).

Outputs per scene: `binaural` (2, N) normalised so RMS(L + R) = 0.1, `mixture` = L + R (the
network's input, as in PseudoBinaural and Sep-Stereo: the mono downmix of the target), `mono` =
the plain sum of the sources' mono excerpts, the canvas, and each source's direction.

Scene i is generated from `numpy.random.default_rng(seed + i)` alone, so any scene can be
rebuilt from (seed, index): training order is a function of (seed, step), which is what makes
resume-after-kill exact and DDP sharding trivial.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from binauralizer.constants import SAMPLE_RATE  # noqa: E402
EXCERPT_SAMPLES = 10080
CANVAS_HW = (360, 640)


@dataclass
class SourceClip:
    """A kept clip as raw material: mono audio (16 kHz float32), frames (T, H, W, 3) uint8."""

    clip_id: str
    audio: np.ndarray
    frames: np.ndarray
    fps: float = 8.0
    heatmap: np.ndarray | None = None  # (T, h, w) from the localiser, optional


@dataclass
class ClipRef:
    """A clip read on demand (large pools: 10 s of frames is ~20 MB, so never all at once).

    `reader` is a picklable zero-argument callable returning the SourceClip; the stage that owns
    the run folder supplies it, so this module never learns where clips are stored.
    """

    clip_id: str
    reader: object

    def load(self) -> SourceClip:
        return self.reader()


@dataclass
class PairConfig:
    excerpt_samples: int = EXCERPT_SAMPLES
    canvas_hw: tuple[int, int] = CANVAS_HW
    fov: float = 2.0 / 3.0  # horizontal field of view as a fraction of pi (120 degrees)
    source_count_probs: tuple[float, ...] = (0.4, 0.5, 0.1)
    source_rms: float = 0.1
    target_rms: float = 0.1
    patch_frac: tuple[float, float] = (0.25, 0.5)  # patch side as a fraction of canvas height
    crop_frac: tuple[float, float] = (0.5, 0.8)  # crop side as a fraction of the frame's short side
    sh_order: int = 1
    decoder: str = "lsq"
    moving_prob: float = 0.0  # chance that a source moves along a path during the excerpt
    max_move_deg: float = 30.0  # total azimuth travel of a moving source
    camera_rotation_prob: float = 0.0  # chance of a camera pan (FOA rotation) per scene
    max_pan_deg: float = 20.0  # total yaw travel of a pan, centred on the frame shown
    min_excerpt_rms: float = 1e-4  # excerpts quieter than this are redrawn (up to 8 tries)


@dataclass
class Scene:
    mixture: np.ndarray  # (N,) = L + R, network input
    binaural: np.ndarray  # (2, N) target, RMS(L + R) = target_rms
    mono: np.ndarray  # (N,) sum of the sources' mono excerpts
    frame: np.ndarray  # (H, W, 3) uint8 canvas
    az_deg: np.ndarray  # (n,) direction of each source at the excerpt's middle
    el_deg: np.ndarray
    clip_ids: list[str] = field(default_factory=list)
    moving: bool = False
    camera_pan_deg: float = 0.0


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


def canvas_to_direction(cx: float, cy: float, canvas_hw=CANVAS_HW, fov: float = 2.0 / 3.0) -> tuple[float, float]:
    """Patch centre (pixels) -> (azimuth, elevation) in degrees; left half = positive azimuth."""
    h, w = canvas_hw
    az = (w / 2 - cx) / w * math.pi * fov
    el = (h / 2 - cy) / h * math.pi / 2
    return math.degrees(az), math.degrees(el)


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Area-centred nearest-neighbour resize: cheap and exact enough for a patch the network
    sees again downsampled (the frame encoder resizes the canvas with antialiasing)."""
    h, w = img.shape[:2]
    rows = np.minimum(((np.arange(hw[0]) + 0.5) * h / hw[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(hw[1]) + 0.5) * w / hw[1]).astype(np.int64), w - 1)
    return img[rows[:, None], cols[None, :]]


def crop_patch(frame: np.ndarray, heat: np.ndarray | None, side_frac: float) -> np.ndarray:
    """Square crop of the frame around the heatmap's peak (or its centre when there is none)."""
    fh, fw = frame.shape[:2]
    side = max(2, int(round(side_frac * min(fh, fw))))
    cy, cx = fh / 2, fw / 2
    if heat is not None and heat.size and np.isfinite(heat).all() and float(heat.max()) > float(heat.min()):
        py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
        cy, cx = (py + 0.5) / heat.shape[0] * fh, (px + 0.5) / heat.shape[1] * fw
    y0 = int(np.clip(round(cy - side / 2), 0, fh - side))
    x0 = int(np.clip(round(cx - side / 2), 0, fw - side))
    return frame[y0 : y0 + side, x0 : x0 + side]


# ---------------------------------------------------------------------------------------------
# Rendering (the binauralizer does the physics; this module only places sources)
# ---------------------------------------------------------------------------------------------


def render_sources(sources: list[np.ndarray], az_deg: np.ndarray, el_deg: np.ndarray, hrirs, cfg: PairConfig,
                   moves_deg: np.ndarray | None = None, pan_deg: float = 0.0) -> np.ndarray:
    """Sum of each source's binaural rendering, (2, N). Static sources use the SH path."""
    from binauralizer import sh_render

    n = len(sources[0])
    moves_deg = np.zeros(len(sources)) if moves_deg is None else moves_deg
    if pan_deg:
        return _render_with_camera_pan(sources, az_deg, el_deg, hrirs, cfg, moves_deg, pan_deg)
    out = np.zeros((2, n), np.float64)
    static = [(m, float(a), float(e)) for m, a, e, mv in zip(sources, az_deg, el_deg, moves_deg) if not mv]
    if static:  # 8 virtual loudspeakers on the horizontal ring at first order ("ring8")
        out += sh_render.render_scene(static, hrirs, mode="sh", order=cfg.sh_order, decoder=cfg.decoder,
                                      layout="ring8" if cfg.sh_order == 1 else "auto")[:, :n]
    for mono, az, el, move in zip(sources, az_deg, el_deg, moves_deg):
        if move:
            out += _render_moving(mono, az, el, move, hrirs, cfg)
    return out


def _path(az: float, move: float, n_points: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Linear azimuth path through `az` at the excerpt's middle, `move` degrees end to end."""
    times = np.linspace(0.0, EXCERPT_SAMPLES / SAMPLE_RATE, n_points)
    return times, az + move * (np.linspace(0.0, 1.0, n_points) - 0.5)


def _render_moving(mono: np.ndarray, az: float, el: float, move: float, hrirs, cfg: PairConfig) -> np.ndarray:
    from binauralizer import moving

    times, path = _path(az, move)
    return moving.render_trajectory(mono, times, path, np.full_like(path, el), None, hrirs, mode="sh", order=cfg.sh_order,
                                    decoder=cfg.decoder)[:, : len(mono)]


def _render_with_camera_pan(sources, az_deg, el_deg, hrirs, cfg, moves_deg, pan_deg) -> np.ndarray:
    """Encode the scene to FOA, rotate it by the camera's yaw over time, decode binaurally.

    The yaw passes through zero at the excerpt's middle (the frame the network sees), so the
    picture and the audio agree there; sources are static in the scene during a pan (a pan
    and a moving source are not combined).
    """
    from binauralizer import foa

    n = len(sources[0])
    times = np.linspace(0.0, n / SAMPLE_RATE, 9)
    yaw = pan_deg * (np.linspace(0.0, 1.0, len(times)) - 0.5)  # zero at the frame shown
    return foa.render_rotated(sources, az_deg, el_deg, hrirs, times_s=times, yaw_deg=yaw, decoder=cfg.decoder)[:, :n]


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class PseudoPairGenerator:
    """Indexable, seeded scene factory: `gen[i]` is always the same scene for the same seed."""

    def __init__(self, pool: list[SourceClip], hrirs, seed: int = 0, config: PairConfig | None = None):
        if not pool:
            raise ValueError("pseudo pairs need at least one source clip (no kept clip had audio and frames)")
        self.pool = pool
        self.hrirs = hrirs
        self.seed = int(seed)
        self.config = config or PairConfig()

    def __len__(self) -> int:  # conceptually infinite; a large bound keeps len()-based tools happy
        return 2**31 - 1 - self.seed

    def __getitem__(self, index: int) -> Scene:
        return self.scene(index)

    def scene(self, index: int) -> Scene:
        cfg = self.config
        rng = np.random.default_rng(self.seed + int(index))
        n_src = int(rng.choice(len(cfg.source_count_probs), p=np.asarray(cfg.source_count_probs))) + 1
        canvas = np.zeros((*cfg.canvas_hw, 3), np.uint8)
        monos, azs, els, ids = [], [], [], []
        for _ in range(n_src):
            clip = self.pool[int(rng.integers(len(self.pool)))]
            if isinstance(clip, ClipRef):
                clip = clip.load()
            mono, mid_s = self._excerpt(clip, rng)
            patch = self._patch(clip, mid_s, rng)
            ph, pw = patch.shape[:2]
            cx = float(rng.uniform(pw / 2, cfg.canvas_hw[1] - pw / 2))
            cy = float(rng.uniform(ph / 2, cfg.canvas_hw[0] - ph / 2))
            y0, x0 = int(round(cy - ph / 2)), int(round(cx - pw / 2))
            canvas[y0 : y0 + ph, x0 : x0 + pw] = patch
            az, el = canvas_to_direction(cx, cy, cfg.canvas_hw, cfg.fov)
            monos.append(mono)
            azs.append(az)
            els.append(el)
            ids.append(clip.clip_id)
        moves = np.where(rng.random(n_src) < cfg.moving_prob, rng.uniform(-1, 1, n_src) * cfg.max_move_deg, 0.0)
        pan = float(rng.uniform(-1, 1) * cfg.max_pan_deg) if rng.random() < cfg.camera_rotation_prob else 0.0
        az_arr, el_arr = np.asarray(azs), np.asarray(els)
        binaural = render_sources(monos, az_arr, el_arr, self.hrirs, cfg, moves, pan)
        mixture = binaural[0] + binaural[1]
        gain = cfg.target_rms / max(float(np.sqrt(np.mean(mixture**2))), 1e-8)
        return Scene(
            mixture=(mixture * gain).astype(np.float32),
            binaural=(binaural * gain).astype(np.float32),
            mono=np.sum(monos, axis=0).astype(np.float32),
            frame=canvas,
            az_deg=az_arr,
            el_deg=el_arr,
            clip_ids=ids,
            moving=bool(np.any(moves)),
            camera_pan_deg=pan,
        )

    def _excerpt(self, clip: SourceClip, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """A 0.63 s excerpt with sound in it, RMS 0.1; returns it and its middle time (s)."""
        n = self.config.excerpt_samples
        audio = clip.audio
        if len(audio) < n:
            audio = np.concatenate([audio, np.zeros(n - len(audio), np.float32)])
        best, best_rms, best_start = None, -1.0, 0
        for _ in range(8):
            start = int(rng.integers(0, len(audio) - n + 1))
            x = np.asarray(audio[start : start + n], np.float64)
            rms = float(np.sqrt(np.mean(x**2)))
            if rms > best_rms:
                best, best_rms, best_start = x, rms, start
            if rms >= self.config.min_excerpt_rms:
                break
        scale = self.config.source_rms / max(best_rms, self.config.min_excerpt_rms)
        return (best * scale).astype(np.float64), (best_start + n / 2) / SAMPLE_RATE

    def _patch(self, clip: SourceClip, mid_s: float, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        t = int(np.clip(round(mid_s * clip.fps), 0, len(clip.frames) - 1))
        heat = None
        if clip.heatmap is not None and len(clip.heatmap):
            heat = np.asarray(clip.heatmap[min(t, len(clip.heatmap) - 1)], np.float32)
        crop = crop_patch(np.asarray(clip.frames[t]), heat, float(rng.uniform(*cfg.crop_frac)))
        side = int(round(rng.uniform(*cfg.patch_frac) * cfg.canvas_hw[0]))
        return _resize(crop, (side, side))


def collate(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Stack scenes into tensors: mixture (B, N), binaural (B, 2, N), frame (B, H, W, 3) uint8."""
    return {
        "mixture": torch.from_numpy(np.stack([s.mixture for s in scenes])),
        "binaural": torch.from_numpy(np.stack([s.binaural for s in scenes])),
        "frame": torch.from_numpy(np.stack([s.frame for s in scenes])),
    }
