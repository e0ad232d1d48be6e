"""Fusions of the motion and semantic maps that can find a static sounding object.

`semantic+motion` (base.combine) multiplies the motion map by the semantic one: an object that
sounds but does not move has no motion evidence, so it stays dark whatever the semantic map says.
These two fusions let either cue place the source:

  fusion-add     w * semantic + (1 - w) * motion     (both resampled to the finer grid)
  fusion-max     max(semantic, motion)                cell-wise: the stronger opinion wins
  fusion-object  mean of semantic, motion and the objectness prior (binauralizer.localize.objectness),
                 each normalised per frame (`fuse_frames`)

In `fusion-add` / `fusion-max` each input map is normalised per clip first, so a weak, flat opinion
cannot outshout a peaked one. `fusion-object` normalises per frame: the prior is on in every frame, and
a place two of the three cues agree on wins over one cue's peak. The prior and the semantic map come
from one forward pass of the same MobileNetV2, so `fusion-object` costs what `fusion-add` costs.
"""

from __future__ import annotations

import numpy as np

from binauralizer.localize.base import check_inputs, normalise_clip, register


def same_grid(*stacks: np.ndarray) -> tuple[np.ndarray, ...]:
    """The map stacks on the finest of their grids (bilinear), float32."""
    import torch
    from torch.nn import functional as F

    shape = max((s.shape[1:] for s in stacks), key=lambda s: s[0] * s[1])

    def resize(m):
        if m.shape[1:] == shape:
            return m.astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[:, None]
        return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)[:, 0].numpy()

    return tuple(resize(s) for s in stacks)


def normalise_frames(maps: np.ndarray) -> np.ndarray:
    """Non-negative float32 maps scaled so each frame's maximum is 1 (an all-zero frame stays zero)."""
    maps = np.maximum(np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None] if maps.size else maps
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)


def fuse_frames(*stacks: np.ndarray) -> np.ndarray:
    """(T, h, w) mean of per-frame normalised map stacks on the finest grid, normalised per clip."""
    total = sum(same_grid(*(normalise_frames(s) for s in stacks)))
    return normalise_clip(total / len(stacks))


def fuse(motion: np.ndarray, semantic: np.ndarray, how: str = "add", semantic_weight: float = 0.5) -> np.ndarray:
    """(T, h, w) fused map of two per-clip normalised map stacks ('add' or 'max')."""
    m, s = same_grid(normalise_clip(motion), normalise_clip(semantic))
    if how == "add":
        return normalise_clip(semantic_weight * s + (1 - semantic_weight) * m)
    if how == "max":
        return normalise_clip(np.maximum(s, m))
    raise ValueError(f"fusion must be 'add' or 'max', got {how!r}")


class _Fusion:
    how = "add"

    def __init__(self, grid: int = 56, semantic_weight: float = 0.5, **semantic_options):
        from binauralizer.localize.motion import MotionLocaliser
        from binauralizer.localize.semantic import SemanticLocaliser

        self.motion = MotionLocaliser(grid=grid)
        self.semantic = SemanticLocaliser(**semantic_options)
        self.semantic_weight = float(semantic_weight)

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        frames, audio = check_inputs(frames, audio)
        return fuse(self.motion.heatmaps(frames, audio), self.semantic.heatmaps(frames, audio), self.how,
                    self.semantic_weight)


@register("fusion-add")
class AddFusion(_Fusion):
    how = "add"


@register("fusion-max")
class MaxFusion(_Fusion):
    how = "max"


@register("fusion-object")
class ObjectFusion:
    """semantic + motion + the objectness prior, per-frame normalised and averaged (module doc)."""

    def __init__(self, grid: int = 56, **semantic_options):
        from binauralizer.localize.motion import MotionLocaliser
        from binauralizer.localize.semantic import SemanticLocaliser

        self.motion = MotionLocaliser(grid=grid)
        self.semantic = SemanticLocaliser(**semantic_options)

    def cue_maps(self, frames: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, ...]:
        """(semantic, motion, objectness) maps; the first and last from one backbone pass."""
        semantic, prior = self.semantic.heatmaps_and_objectness(frames, audio)
        return semantic, self.motion.heatmaps(frames, audio), prior

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        frames, audio = check_inputs(frames, audio)
        return fuse_frames(*self.cue_maps(frames, audio))
