"""The evaluation scenes: real footage, real recordings, the truth where the picture shows the object."""

import numpy as np

from samplegen import spatial_scenes


def test_plan_has_the_required_mix():
    plan = spatial_scenes.PLAN
    assert len(plan) >= 24
    static_distractor = [p for p in plan if p[0] == "static" and p[2]]
    assert {p[1] for p in static_distractor} == {"left", "right", "centre"} and len(static_distractor) >= 9
    assert sum(p[0] == "moving" for p in plan) >= 8


def test_scene_is_deterministic_and_its_truth_matches_the_picture():
    a, b = spatial_scenes.scene(12), spatial_scenes.scene(12)  # static left, the footage's own motion only
    assert a.kind == "static" and a.position == "left" and not a.distractor
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.mono, b.mono)
    assert a.frames.shape == (80, 224, 398, 3) and a.mono.shape == (160000,)
    assert np.allclose(a.az_deg, a.az_deg[0]) and 15 < a.az_deg[0] <= 60  # left = positive azimuth
    assert abs(np.sqrt(np.mean(a.mono.astype(np.float64) ** 2)) - spatial_scenes.SOURCE_RMS) < 1e-3
    # the object is pasted where the truth says, and nowhere else
    window = spatial_scenes.footage()[a.footage_start: a.footage_start + 80]
    window = window[:, :, ::-1] if a.mirrored else window
    changed = np.abs(a.frames.astype(int) - window.astype(int)).max(axis=(0, 1, 3)) > 0  # per column
    cols = np.flatnonzero(changed)
    centre = (cols.min() + cols.max() + 1) / 2 / a.frames.shape[2]
    assert abs((0.5 - centre) * spatial_scenes.FOV_DEG - a.az_deg[0]) < 2.0
