"""The objectness prior finds a real object on a plain background and costs the fusions nothing extra."""

import numpy as np
import pytest

from binauralizer.localize import build_localiser
from binauralizer.localize.fusion import fuse_frames
from binauralizer.localize.trajectory import trajectory_from_heatmaps
from samplegen import spatial_scenes
from realimages import cat_canvas


@pytest.fixture(scope="module")
def semantic():
    return build_localiser("semantic", threads=1)


@pytest.mark.parametrize("side", ["left", "right"])
def test_prior_sits_on_the_real_photo_not_on_the_grey_half(side):
    prior = build_localiser("objectness", threads=1)
    frames = np.repeat(cat_canvas(side)[None], 4, axis=0)
    heat = prior.heatmaps(frames, np.zeros(8000, np.float32))  # deaf to the audio: silence is fine
    half = heat.shape[2] // 2
    mass = heat[:, :, :half].sum() if side == "left" else heat[:, :, half:].sum()
    assert heat.shape == (4, 7, 21) and heat.max() == 1.0
    assert mass / heat.sum() > 0.7  # measured 0.79 (left) and above 0.8 (right); grey alone would give 0.5
    peak_col = np.unravel_index(heat[0].argmax(), heat[0].shape)[1]
    assert (peak_col < half) == (side == "left")


def test_one_backbone_pass_gives_the_semantic_map_and_the_prior(semantic):
    sc = spatial_scenes.scene(12)  # a real drawing, static on the left, over live-band footage
    maps, prior = semantic.heatmaps_and_objectness(sc.frames, sc.mono)
    assert maps.tobytes() == semantic.heatmaps(sc.frames, sc.mono).tobytes()
    assert prior.tobytes() == build_localiser("objectness", threads=1).heatmaps(sc.frames, sc.mono).tobytes()
    # the scene whose drawing ImageNet does not recognise: the semantic map alone puts the static source
    # on the left in a minority of its frames; with motion and the prior, in most of them
    motion = build_localiser("motion").heatmaps(sc.frames, sc.mono)
    fused = build_localiser("fusion-object", threads=1).heatmaps(sc.frames, sc.mono)
    assert fused.tobytes() == fuse_frames(maps, motion, prior).tobytes()

    def left_share(heat):
        az = trajectory_from_heatmaps(heat, smoothing=3.0)[:, 0]
        return float((az > 0).mean())

    assert sc.az_deg.mean() > 15
    assert left_share(fused) > 0.9 > left_share(maps)
