"""The localiser plug-in interface and the registry that builds one from a name.

A localiser turns a clip's frames and mono audio into one heatmap per frame: where in the picture
the sound comes from. Everything downstream (spatial features, trajectory, rendering) only sees
heatmaps, so a new localiser is a class with one method, registered under a name:

    @register("mine")
    class Mine:
        def heatmaps(self, frames, audio): ...   # (T,H,W,3) uint8, (N,) float32 16 kHz -> (T,h,w)

Names understood by `build_localiser`:
  "motion"             weight-free: motion energy x audio-envelope correlation (motion.py)
  "semantic"           YAMNet tags x ImageNet MobileNetV2 class activation maps (semantic.py)
  "semantic+motion"    the motion map re-weighted by the semantic map (base.combine)
  "fusion-learned"     learned + semantic + motion, per-frame normalised and added (checkpoint=...)
  "learned:<path>"     a local checkpoint (TorchScript, or a state dict with its architecture)

Heatmap values are in [0, 1] and normalised per clip (the clip's maximum is 1), so a frame's level
carries how much evidence it has; resolution (h, w) is the localiser's own.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from binauralizer.constants import SAMPLE_RATE  # noqa: E402


@runtime_checkable
class Localiser(Protocol):
    """Anything with `heatmaps(frames, audio) -> (T, h, w) float32 in [0, 1]`."""

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray: ...


_REGISTRY: dict[str, Callable[..., Localiser]] = {}


def register(name: str) -> Callable:
    """Class decorator: make a localiser constructible by `build_localiser(name)`."""

    def wrap(factory: Callable[..., Localiser]) -> Callable[..., Localiser]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY) + ["learned:<path>"]


def build_localiser(spec: str, **options) -> Localiser:
    """A localiser from its name; `learned:<path>` loads a local checkpoint (see LearnedLocaliser)."""
    _load_builtin()
    if spec.startswith("learned:"):
        return LearnedLocaliser(spec[len("learned:"):], **options)
    if spec not in _REGISTRY:
        raise ValueError(f"unknown localiser {spec!r}; known: {available()}")
    return _REGISTRY[spec](**options)


def _load_builtin() -> None:
    """Import the built-in localisers so their @register lines run (lazily: torch/onnx are heavy)."""
    for module in ("motion", "semantic", "objectness", "fusion", "fusion_learned"):
        importlib.import_module(f"binauralizer.localize.{module}")


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def normalise_clip(maps: np.ndarray) -> np.ndarray:
    """Non-negative float32 maps scaled so the clip's maximum is 1 (all-zero stays zero)."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    maps = np.maximum(maps, 0.0)
    peak = float(maps.max()) if maps.size else 0.0
    return (maps / peak).astype(np.float32) if peak > 0 else maps


def atomic_write_npy(path: str, array: np.ndarray) -> None:
    """np.save through the project's one atomic writer (manifests.io)."""
    from manifests.io import atomic_save_npy

    atomic_save_npy(path, array)


def check_inputs(frames: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the two inputs every localiser takes; raise ValueError with a readable reason."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T,H,W,3) with T >= 1, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        raise ValueError("audio is empty")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio has NaN or infinite samples")
    return frames, audio


def combine(maps: np.ndarray, gate: np.ndarray, floor: float = 0.5) -> np.ndarray:
    """`maps` re-weighted by a second opinion: maps x (floor + (1 - floor) x gate).

    The gate (resampled bilinearly to the grid of `maps`) can at most halve a region's weight
    with the default floor, never erase it: a wrong second opinion cannot veto the first. Not
    renormalised: where the two disagree the result is dimmer (lower confidence).
    """
    import torch
    from torch.nn import functional as F

    shape = maps.shape[1:]
    if gate.shape[1:] != shape:
        g = torch.from_numpy(np.ascontiguousarray(gate, dtype=np.float32))[:, None]
        gate = F.interpolate(g, size=shape, mode="bilinear", align_corners=False)[:, 0].numpy()
    weight = floor + (1.0 - floor) * np.clip(gate, 0.0, 1.0)
    return np.clip(np.maximum(maps, 0.0) * weight, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Learned localiser from a local checkpoint
# ---------------------------------------------------------------------------------------------


class LearnedLocaliser:
    """A trained localiser loaded from a local file; nothing is downloaded.

    Accepted checkpoints:
      * a dict saved with `torch.save` holding "arch" ("package.module:ClassName"), optional
        "kwargs" (constructor arguments) and "state_dict" (loaded strictly);
      * a `torch.export` program saved with `torch.export.save` (file name ending in .pt2);
      * TorchScript (`torch.jit.save`), still read although torch deprecates it.
    The module is called as `module(frames, audio)` with frames float32 (T, 3, H, W) in [0, 1]
    and audio float32 (N,) at 16 kHz, and returns (T, h, w) or (T, 1, h, w) scores; negative
    values are clipped and the stack is normalised per clip to [0, 1].
    """

    def __init__(self, path: str, device: str = "cpu"):
        if not path or not os.path.isfile(path):
            raise FileNotFoundError(f"learned localiser checkpoint not found: {path!r}")
        self.path, self.device = path, device
        self.module = _load_module(path, device)

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        import torch

        frames, audio = check_inputs(frames, audio)
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            out = self.module(x, torch.from_numpy(np.array(audio, dtype=np.float32)).to(self.device))  # a copy: read-only inputs are fine
        out = out.detach().float().cpu().numpy()
        if out.ndim == 4 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 3 or out.shape[0] != frames.shape[0]:
            raise ValueError(
                f"learned localiser {self.path} returned shape {out.shape}; expected ({frames.shape[0]}, h, w)"
            )
        return normalise_clip(out)


def _load_module(path: str, device: str):
    import warnings

    import torch

    if path.endswith(".pt2"):
        return torch.export.load(path).module().to(device)  # exported graphs: already inference-only
    if _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(path, map_location=device).eval()
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  not a torch file at all
        raise ValueError(f"{path}: cannot be read as a torch checkpoint ({exc})") from exc
    if not (isinstance(ckpt, dict) and "arch" in ckpt and "state_dict" in ckpt):
        raise ValueError(
            f"{path}: not a dict with 'arch' and 'state_dict', not a torch.export .pt2 program and not "
            "TorchScript (see binauralizer.localize.base.LearnedLocaliser)"
        )
    return _module_from_state_dict(ckpt).to(device).eval()


def _is_torchscript(path: str) -> bool:
    """TorchScript archives are zips holding a code/ folder (torch.save files hold data.pkl only)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.split("/", 1)[-1].startswith("code/") for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _module_from_state_dict(ckpt: dict):
    module_name, _, class_name = str(ckpt["arch"]).partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    module = cls(**dict(ckpt.get("kwargs") or {}))
    module.load_state_dict(ckpt["state_dict"], strict=True)
    return module
