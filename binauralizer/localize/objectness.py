"""An objectness prior: where the picture holds things, whatever sounds (EZ-VSL's object guidance).

EZ-VSL (Mo and Morgado 2022) refines its audio-visual map with an ImageNet network's activation map,
a prior that sounding things are objects rather than floor, sky or wall; ../shared/REFERENCE.md notes
it is what helps on static objects. Here the prior is the mean over channels of MobileNetV2's last
feature map (1280 channels after ReLU6, stride 32), the network the semantic localiser already runs,
so a fusion gets it from the same forward pass at no extra cost.

It ignores the audio: it says where the objects are, not which one sounds. A silent distractor is an
object too, so on its own it is a prior, never a localiser; the fusions (`fusion-object`,
`fusion-learned`) add it to the cues that do listen.
"""

from __future__ import annotations

import numpy as np

from binauralizer.constants import SAMPLE_RATE
from binauralizer.localize.base import check_inputs, normalise_clip, register


def objectness_of(features) -> np.ndarray:
    """(n, C, h, w) backbone features (torch) -> (n, h, w) float32 mean absolute activation."""
    return features.abs().mean(dim=1).float().cpu().numpy()


@register("objectness")
class ObjectnessLocaliser:
    """The prior alone (for comparison rows): MobileNetV2 at `cam_fps`, interpolated to every frame."""

    def __init__(self, cam_fps: float = 2.0, threads: int = 1, device: str = "cpu", sample_rate: int = SAMPLE_RATE):
        from binauralizer.pseudobinaural.backbones import mobilenet_v2

        self.cam_fps, self.threads, self.device, self.sample_rate = float(cam_fps), int(threads), device, int(sample_rate)
        self.net = mobilenet_v2(pretrained=True).to(device).eval()

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        from binauralizer.localize.semantic import feature_batches, fill_frames, sparse_picks

        frames, audio = check_inputs(frames, audio)
        t = frames.shape[0]
        picks = sparse_picks(t, t * self.sample_rate / audio.size, self.cam_fps)
        batches = feature_batches(self.net, frames[picks], self.threads, self.device)
        prior = np.concatenate([objectness_of(feats) for _, feats in batches], axis=0)
        return normalise_clip(fill_frames(prior, picks, t))
