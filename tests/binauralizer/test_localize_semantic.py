"""Semantic localiser: the name bridge (MiniLM), class activation maps on a real photo, end to end."""

import json

import numpy as np
import pytest

from binauralizer.localize import build_localiser
from binauralizer.localize.minilm import SentenceEncoder
from binauralizer.localize.semantic import (
    SIMILARITY_META,
    SemanticLocaliser,
    _names_digest,
    build_similarity,
    class_bridge,
    imagenet_synonyms,
    similarity_matrix,
)
from binauralizer.localize.yamnet import class_names
from realimages import cat_canvas


@pytest.fixture(scope="module")
def localiser():
    return SemanticLocaliser(threads=1)


def one_hot(name: str) -> np.ndarray:
    tags = np.zeros(521, np.float32)
    tags[class_names().index(name)] = 1.0
    return tags


def test_cached_similarity_matches_minilm_and_the_current_class_lists():
    cached = similarity_matrix()
    assert cached.shape == (521, 1000)
    with open(SIMILARITY_META, encoding="utf-8") as fh:
        assert json.load(fh)["names_sha256"] == _names_digest(class_names(), imagenet_synonyms())
    rows = [class_names().index(n) for n in ("Cat", "Violin, fiddle", "Typing")]
    cols = [281, 282, 889, 508, 878, 0]  # tabby, tiger cat, violin, computer keyboard, typewriter keyboard, tench
    fresh = build_similarity(SentenceEncoder(), [class_names()[i] for i in rows], [imagenet_synonyms()[j] for j in cols])
    np.testing.assert_allclose(cached[np.ix_(rows, cols)], fresh, atol=2e-3)  # float16 cache


def test_minilm_embeddings_are_unit_norm_and_semantic():
    e = SentenceEncoder().encode(["Cat", "tabby, tabby cat", "garbage truck, dustcart"])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_bridge_keeps_only_each_sound_classes_confident_visual_matches():
    bridge = class_bridge(similarity_matrix())
    names = class_names()
    kept = (bridge > 0).sum(axis=1)
    assert np.all(kept <= 11)  # at most about 1 % of 1000 ImageNet classes
    cat_row = bridge[names.index("Cat")]
    assert set(np.argsort(-cat_row)[:3]) <= {281, 282, 283, 284, 285}  # the ImageNet cats
    assert kept[names.index("Guitar")] >= 1 and kept[names.index("Dog")] >= 1
    # no confident visual name: nothing, rather than the ten nearest poor names ("bolete", "barn")
    assert kept[names.index("Cattle, bovinae")] == 0 and kept[names.index("Livestock, farm animals, working animals")] == 0


@pytest.mark.parametrize("side", ["left", "right"])
def test_cat_sound_lights_up_the_cat_in_a_real_photo(localiser, side):
    canvas = cat_canvas(side)
    cam = np.maximum(localiser.cams(canvas[None], localiser.visual_direction(one_hot("Cat")))[0], 0)
    half = cam.shape[1] // 2
    cat_mass = cam[:, :half].sum() if side == "left" else cam[:, half:].sum()
    assert cat_mass / cam.sum() > 0.9
    unrelated = np.maximum(localiser.cams(canvas[None], localiser.visual_direction(one_hot("Speech")))[0], 0)
    assert cam.max() > 5 * unrelated.max()  # a cat is seen when a cat is heard, not when speech is


def test_heatmaps_end_to_end_shape_range_and_determinism(localiser):
    frames = np.repeat(cat_canvas("right")[None], 16, axis=0)  # 2 s at 8 fps
    t = np.arange(32000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    tags = localiser.audio_tags(audio)
    assert (tags > 0).sum() == 5 and tags.argmax() in (class_names().index("Beep, bleep"), class_names().index("Sine wave"))
    heat = localiser.heatmaps(frames, audio)
    assert heat.shape == (16, 7, 21) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == 1.0
    assert localiser.heatmaps(frames, audio).tobytes() == heat.tobytes()


def test_registry_builds_the_fused_localiser():
    fused = build_localiser("semantic+motion", threads=1)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 64, 96, 3), dtype=np.uint8)
    heat = fused.heatmaps(frames, (0.1 * rng.standard_normal(16000)).astype(np.float32))
    assert heat.shape == (8, 64, 96) and 0 <= heat.min() and heat.max() <= 1  # the motion grid
