"""PseudoBinaural's training data: mono sources placed in a picture and rendered binaurally.

A scene has 1, 2 or 3 sources (probability 0.4 / 0.5 / 0.1). Each source is a 0.63 s mono
excerpt (10080 samples at 16 kHz) of a kept clip, RMS-normalised to 0.1, with an image patch cut
from that clip's frame nearest the excerpt's middle (around the localiser's heatmap peak when
there is one, else the centre). The patch goes to a random place on a 360 x 640 canvas -- by
default a full frame of another pool clip (conversion feeds full frames; PseudoBinaural's black
canvas, `background="black"`, taught a model that fails on textured frames) -- and its centre
gives the direction: az = (W/2 - cx)/W * pi * 2/3 (-60..+60 degrees, positive =
left), el = (H/2 - cy)/H * pi/2. The audio is rendered (`target`) by direct interpolated-HRIR
rendering (default: real interaural time differences), fourth-order SH with magLS (`sh4`), or
PseudoBinaural's first-order path over 8 virtual loudspeakers (`paper`: level cues only, its ITD
is 0-2 us at 15-30 degrees on KEMAR), through HRIRs RESAMPLED to 16 kHz -- PseudoBinaural's
released code applies 44.1 kHz HRIRs to 16 kHz audio unresampled, which stretches interaural time
differences 2.76x. Given several HRIR sets, each scene draws one (cues that hold for any head). Optionally a source moves along
a short path (time-varying HRIR rendering) and the camera pans (FOA rotation).

Own-frame scenes (`own_frame_prob`, clips with a localised trajectory): the clip's own full frame,
its heatmap, its excerpt rendered at the trajectory's direction at the excerpt's middle -- the
pictures the network meets at conversion, labelled by the localiser (what `direct` mode renders).
Every scene carries a heatmap (HEAT_HW): a blob where each patch was pasted, or the clip's own.

The target is advanced by the delay common to both ears (the lag that best aligns L + R with the
mono input; measured HRIRs start 1 ms late): the network's output is mix +- diff, so a target
that lags the input turns the interaural delay into comb filtering and no ITD survives.

Outputs per scene: `binaural` (2, N) normalised so RMS(L + R) = 0.1, `mixture` (the network's
input: by default the sum of the sources' mono excerpts at RMS 0.1, which is what convert feeds
the network; `input="downmix"` gives PseudoBinaural's L + R of the target), `mono` = the plain sum
of the sources' mono excerpts, the canvas, and each source's direction.

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
HEAT_HW = (45, 80)  # a scene's heatmap grid (the canvas / 8)
MAX_ALIGN_LAG = 64  # samples (4 ms): the common delay searched when aligning targets


@dataclass
class SourceClip:
    """A kept clip as raw material: mono audio (16 kHz float32), frames (T, H, W, 3) uint8."""

    clip_id: str
    audio: np.ndarray
    frames: np.ndarray
    fps: float = 8.0
    heatmap: np.ndarray | None = None  # (T, h, w) from the localiser, optional
    trajectory: np.ndarray | None = None  # (T, 3) az, el (degrees), distance from the localiser, optional


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
    target: str = "direct"  # direct | sh4 | paper (see TARGETS)
    sh_order: int = 1  # the `paper` target's order (its 8-speaker ring needs 1)
    decoder: str = "lsq"
    moving_prob: float = 0.0  # chance that a source moves along a path during the excerpt
    max_move_deg: float = 30.0  # total azimuth travel of a moving source
    camera_rotation_prob: float = 0.0  # chance of a camera pan (FOA rotation) per scene
    max_pan_deg: float = 20.0  # total yaw travel of a pan, centred on the frame shown
    min_excerpt_rms: float = 1e-4  # excerpts quieter than this are redrawn (up to 8 tries)
    input: str = "mono"  # the network's input: "mono" (what convert feeds it) or "downmix" (L + R, the paper's)
    background: str = "frame"  # canvas: "frame" (another pool clip's full frame, as at conversion) | "black" (paper)
    own_frame_prob: float = 0.0  # chance of an own-frame scene (clip's frame, heatmap, localised direction)
    align: bool = False  # advance the target by the ears' common delay (see the module doc)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"pseudo-pair target must be one of {tuple(TARGETS)}, got {self.target!r}")
        if self.background not in ("frame", "black"):
            raise ValueError(f"pseudo-pair background must be 'frame' or 'black', got {self.background!r}")
        if self.input not in ("mono", "downmix"):
            raise ValueError(f"pseudo-pair input must be 'mono' or 'downmix', got {self.input!r}")


# How a target is rendered. `direct` keeps the head's ITD (interpolated measured HRIRs); `sh4` is
# fourth-order SH with the magLS decoder (ITD right below ~1.5 kHz); `paper` is PseudoBinaural's
# first order over 8 virtual speakers: ITD 0-2 us at 15-30 degrees on KEMAR (direct: 129-255 us).
TARGETS = {"direct": {"mode": "direct"}, "sh4": {"mode": "sh", "order": 4, "decoder": "magls"},
           "paper": {"mode": "sh"}}


@dataclass
class Scene:
    mixture: np.ndarray  # (N,) network input: the mono sources' sum (input "mono") or L + R ("downmix")
    binaural: np.ndarray  # (2, N) target, RMS(L + R) = target_rms
    mono: np.ndarray  # (N,) sum of the sources' mono excerpts
    frame: np.ndarray  # (H, W, 3) uint8 canvas
    az_deg: np.ndarray  # (n,) direction of each source at the excerpt's middle
    el_deg: np.ndarray
    clip_ids: list[str] = field(default_factory=list)
    moving: bool = False
    camera_pan_deg: float = 0.0
    heatmap: np.ndarray | None = None  # (HEAT_HW) where the sound is in `frame`
    own_frame: bool = False


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
    """Sum of each source's binaural rendering, (2, N), through `cfg.target`'s renderer."""
    from binauralizer import sh_render

    n = len(sources[0])
    moves_deg = np.zeros(len(sources)) if moves_deg is None else moves_deg
    if pan_deg and cfg.target == "paper":
        return _render_with_camera_pan(sources, az_deg, el_deg, hrirs, cfg, moves_deg, pan_deg)
    out = np.zeros((2, n), np.float64)
    if pan_deg:  # the camera turns: every source moves by -yaw in head coordinates (yaw 0 at the frame shown)
        times = np.linspace(0.0, n / SAMPLE_RATE, 9)
        yaw = pan_deg * (np.linspace(0.0, 1.0, len(times)) - 0.5)
        for mono, az, el in zip(sources, az_deg, el_deg):
            out += _render_path(mono, times, az - yaw, el, hrirs, cfg)
        return out
    static = [(m, float(a), float(e)) for m, a, e, mv in zip(sources, az_deg, el_deg, moves_deg) if not mv]
    if static:
        out += sh_render.render_scene(static, hrirs, **_render_options(cfg))[:, :n]
    for mono, az, el, move in zip(sources, az_deg, el_deg, moves_deg):
        if move:
            out += _render_moving(mono, az, el, move, hrirs, cfg)
    return out


def _render_options(cfg: PairConfig) -> dict:
    opts = dict(TARGETS[cfg.target])
    if cfg.target == "paper":  # 8 virtual loudspeakers on the horizontal ring at first order
        opts.update(order=cfg.sh_order, decoder=cfg.decoder, layout="ring8" if cfg.sh_order == 1 else "auto")
    return opts


def _render_path(mono, times, az_path, el, hrirs, cfg: PairConfig) -> np.ndarray:
    from binauralizer import moving

    opts = _render_options(cfg)
    opts.pop("layout", None)
    return moving.render_trajectory(mono, times, az_path, np.full_like(az_path, el), None, hrirs, **opts)[:, : len(mono)]


def _path(az: float, move: float, n_points: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Linear azimuth path through `az` at the excerpt's middle, `move` degrees end to end."""
    times = np.linspace(0.0, EXCERPT_SAMPLES / SAMPLE_RATE, n_points)
    return times, az + move * (np.linspace(0.0, 1.0, n_points) - 0.5)


def _render_moving(mono: np.ndarray, az: float, el: float, move: float, hrirs, cfg: PairConfig) -> np.ndarray:
    times, path = _path(az, move)
    return _render_path(mono, times, path, el, hrirs, cfg)


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
        """`hrirs`: one HRIRSet, or a list of them (each scene draws its head: head-independent cues)."""
        if not pool:
            raise ValueError("pseudo pairs need at least one source clip (no kept clip had audio and frames)")
        self.pool = pool
        self.heads = list(hrirs) if isinstance(hrirs, (list, tuple)) else [hrirs]
        if not self.heads:
            raise ValueError("pseudo pairs need at least one HRIR set")
        self.hrirs = self.heads[0]
        self.seed = int(seed)
        self.config = config or PairConfig()

    def __len__(self) -> int:  # conceptually infinite; a large bound keeps len()-based tools happy
        return 2**31 - 1 - self.seed

    def __getitem__(self, index: int) -> Scene:
        return self.scene(index)

    def scene(self, index: int) -> Scene:
        cfg = self.config
        if cfg.own_frame_prob > 0:  # its own stream: pasted scenes stay what they were
            own = np.random.default_rng((self.seed + int(index), 2))
            if own.random() < cfg.own_frame_prob:
                scene = self._own_frame_scene(own)
                if scene is not None:
                    return scene
        rng = np.random.default_rng(self.seed + int(index))
        n_src = int(rng.choice(len(cfg.source_count_probs), p=np.asarray(cfg.source_count_probs))) + 1
        canvas = self._background(index)
        heat = np.zeros(HEAT_HW, np.float32)
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
            heat = np.maximum(heat, _blob(cx, cy, pw, cfg.canvas_hw))
            az, el = canvas_to_direction(cx, cy, cfg.canvas_hw, cfg.fov)
            monos.append(mono)
            azs.append(az)
            els.append(el)
            ids.append(clip.clip_id)
        moves = np.where(rng.random(n_src) < cfg.moving_prob, rng.uniform(-1, 1, n_src) * cfg.max_move_deg, 0.0)
        pan = float(rng.uniform(-1, 1) * cfg.max_pan_deg) if rng.random() < cfg.camera_rotation_prob else 0.0
        az_arr, el_arr = np.asarray(azs), np.asarray(els)
        head = self.heads[int(rng.integers(len(self.heads)))] if len(self.heads) > 1 else self.heads[0]
        binaural = render_sources(monos, az_arr, el_arr, head, cfg, moves, pan)
        return self._finish(binaural, np.sum(monos, axis=0), canvas, az_arr, el_arr, ids, heat,
                            moving=bool(np.any(moves)), camera_pan_deg=pan)

    def _finish(self, binaural, mono_sum, canvas, az_arr, el_arr, ids, heat, **extra) -> Scene:
        """Align, normalise and pack a rendered scene."""
        cfg = self.config
        if cfg.align:
            binaural = align_to(binaural, mono_sum)
        downmix = binaural[0] + binaural[1]
        gain = cfg.target_rms / max(float(np.sqrt(np.mean(downmix**2))), 1e-8)
        if cfg.input == "mono":  # what convert feeds the network: the clip itself, at the same level
            mixture = mono_sum * cfg.target_rms / max(float(np.sqrt(np.mean(mono_sum**2))), 1e-8)
        else:
            mixture = downmix * gain
        return Scene(mixture=mixture.astype(np.float32), binaural=(binaural * gain).astype(np.float32),
                     mono=np.asarray(mono_sum, np.float32), frame=canvas, az_deg=az_arr, el_deg=el_arr,
                     clip_ids=ids, heatmap=heat.astype(np.float32), **extra)

    def _own_frame_scene(self, rng: np.random.Generator) -> Scene | None:
        """A clip's own frame and heatmap, its excerpt at its localised direction (None: the drawn
        clip has no trajectory, so the caller pastes instead)."""
        cfg = self.config
        clip = self.pool[int(rng.integers(len(self.pool)))]
        clip = clip.load() if isinstance(clip, ClipRef) else clip
        if clip.trajectory is None or len(clip.trajectory) == 0 or len(clip.frames) == 0:
            return None
        mono, mid_s = self._excerpt(clip, rng)
        t = int(np.clip(round(mid_s * clip.fps), 0, len(clip.frames) - 1))
        traj = np.asarray(clip.trajectory, np.float64)
        az, el = (float(v) for v in traj[min(t, len(traj) - 1), :2])
        heat = np.zeros(HEAT_HW, np.float32)
        if clip.heatmap is not None and len(clip.heatmap):
            heat = _resize_map(np.asarray(clip.heatmap[min(t, len(clip.heatmap) - 1)], np.float32), HEAT_HW)
        canvas = np.ascontiguousarray(_resize(np.asarray(clip.frames[t]), cfg.canvas_hw))
        head = self.heads[int(rng.integers(len(self.heads)))] if len(self.heads) > 1 else self.heads[0]
        az_arr, el_arr = np.array([az]), np.array([el])
        binaural = render_sources([mono], az_arr, el_arr, head, cfg)
        return self._finish(binaural, mono, canvas, az_arr, el_arr, [clip.clip_id], heat, own_frame=True)

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

    def _background(self, index: int) -> np.ndarray:
        """The canvas the patches go on: black (the paper), or a full frame of a pool clip, as convert
        sees full frames (its own random stream, so the scene's other draws do not change)."""
        cfg = self.config
        if cfg.background == "black":
            return np.zeros((*cfg.canvas_hw, 3), np.uint8)
        rng = np.random.default_rng((self.seed + int(index), 1))
        clip = self.pool[int(rng.integers(len(self.pool)))]
        clip = clip.load() if isinstance(clip, ClipRef) else clip
        frame = np.asarray(clip.frames[int(rng.integers(len(clip.frames)))])
        return np.ascontiguousarray(_resize(frame, cfg.canvas_hw))

    def _patch(self, clip: SourceClip, mid_s: float, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        t = int(np.clip(round(mid_s * clip.fps), 0, len(clip.frames) - 1))
        heat = None
        if clip.heatmap is not None and len(clip.heatmap):
            heat = np.asarray(clip.heatmap[min(t, len(clip.heatmap) - 1)], np.float32)
        crop = crop_patch(np.asarray(clip.frames[t]), heat, float(rng.uniform(*cfg.crop_frac)))
        side = int(round(rng.uniform(*cfg.patch_frac) * cfg.canvas_hw[0]))
        return _resize(crop, (side, side))


def _blob(cx: float, cy: float, side: float, canvas_hw) -> np.ndarray:
    """A pasted patch as a localiser would see it: a Gaussian (sigma = side / 3) on the HEAT_HW grid."""
    h, w = canvas_hw
    yy = (np.arange(HEAT_HW[0]) + 0.5) * h / HEAT_HW[0]
    xx = (np.arange(HEAT_HW[1]) + 0.5) * w / HEAT_HW[1]
    s2 = 2 * (side / 3.0) ** 2
    return np.exp(-((yy[:, None] - cy) ** 2 + (xx[None, :] - cx) ** 2) / s2).astype(np.float32)


def _resize_map(heat: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A localiser heatmap (its own grid) on another grid, bilinear."""
    t = torch.from_numpy(np.nan_to_num(np.asarray(heat, np.float32)))[None, None]
    return torch.nn.functional.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0, 0].numpy()


def align_to(binaural: np.ndarray, mono: np.ndarray, max_lag: int = MAX_ALIGN_LAG) -> np.ndarray:
    """Advance both ears by the lag (0..max_lag samples) at which L + R best matches the mono input."""
    mid = binaural[0] + binaural[1]
    x = np.asarray(mono, np.float64)
    n = len(x)
    scores = [float(np.dot(mid[lag:n], x[: n - lag])) for lag in range(max_lag + 1)]
    lag = int(np.argmax(scores))
    if lag == 0:
        return binaural
    return np.concatenate([binaural[:, lag:], np.zeros((2, lag), binaural.dtype)], axis=1)


def collate(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Stack scenes into tensors: mixture (B, N), binaural (B, 2, N), frame (B, H, W, 3) uint8,
    heat (B, *HEAT_HW) float."""
    return {
        "mixture": torch.from_numpy(np.stack([s.mixture for s in scenes])),
        "binaural": torch.from_numpy(np.stack([s.binaural for s in scenes])),
        "frame": torch.from_numpy(np.stack([s.frame for s in scenes])),
        "heat": torch.from_numpy(np.stack([s.heatmap if s.heatmap is not None else np.zeros(HEAT_HW, np.float32)
                                           for s in scenes])),
    }
