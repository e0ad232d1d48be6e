"""`fusion-learned`: the learned correspondence map, the semantic map and the motion map, added.

Each cue fails in its own way: motion follows any moving thing (a silent distractor), the semantic
map is bounded by what ImageNet recognises, the learned map by what the run's clips taught it. Each
map is normalised per frame (its frame maximum is 1, so no cue outshouts the others by scale), the
three are resampled to the finest grid and averaged, and the result is normalised per clip. A place
two cues agree on wins over one cue's peak.
"""

from __future__ import annotations

import numpy as np

from binauralizer.localize.base import LearnedLocaliser, check_inputs, normalise_clip, register
from binauralizer.localize.fusion import same_grid


def normalise_frames(maps: np.ndarray) -> np.ndarray:
    """Non-negative float32 maps scaled so each frame's maximum is 1 (an all-zero frame stays zero)."""
    maps = np.maximum(np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None] if maps.size else maps
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)


def fuse_frames(*stacks: np.ndarray) -> np.ndarray:
    """(T, h, w) mean of per-frame normalised map stacks on the finest grid, normalised per clip."""
    total = sum(same_grid(*(normalise_frames(s) for s in stacks)))
    return normalise_clip(total / len(stacks))


@register("fusion-learned")
class LearnedFusion:
    """learned + semantic + motion, added (see the module docstring); `checkpoint` is the learned model."""

    def __init__(self, checkpoint: str, grid: int = 56, device: str = "cpu", **semantic_options):
        from binauralizer.localize.motion import MotionLocaliser
        from binauralizer.localize.semantic import SemanticLocaliser

        self.learned = LearnedLocaliser(checkpoint, device=device)
        self.motion = MotionLocaliser(grid=grid)
        self.semantic = SemanticLocaliser(device=device, **semantic_options)

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        frames, audio = check_inputs(frames, audio)
        return fuse_frames(self.learned.heatmaps(frames, audio), self.semantic.heatmaps(frames, audio),
                           self.motion.heatmaps(frames, audio))
