"""`fusion-learned`: the learned correspondence map, the semantic map, the motion map and the objectness
prior, added.

Each cue fails in its own way: motion follows any moving thing (a silent distractor), the semantic
map is bounded by what ImageNet recognises, the learned map by what the run's clips taught it, and the
objectness prior (EZ-VSL's object guidance, binauralizer.localize.objectness) does not listen at all.
Each map is normalised per frame (its frame maximum is 1, so no cue outshouts the others by scale), the
four are resampled to the finest grid and averaged, and the result is normalised per clip. A place
cues agree on wins over one cue's peak.
"""

from __future__ import annotations

import numpy as np

from binauralizer.localize.base import LearnedLocaliser, check_inputs, register
from binauralizer.localize.fusion import ObjectFusion, fuse_frames


@register("fusion-learned")
class LearnedFusion(ObjectFusion):
    """learned + fusion-object's cues, added (module docstring); `checkpoint` is the learned model."""

    def __init__(self, checkpoint: str, grid: int = 56, device: str = "cpu", **semantic_options):
        super().__init__(grid=grid, device=device, **semantic_options)
        self.learned = LearnedLocaliser(checkpoint, device=device)

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        frames, audio = check_inputs(frames, audio)
        return fuse_frames(self.learned.heatmaps(frames, audio), *self.cue_maps(frames, audio))
