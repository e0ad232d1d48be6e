import numpy as np
import pytest

from binauralizer.localize.trajectory import (
    confidence,
    interpolate_gaps,
    outlier_frames,
    to_direction,
    track_positions,
    trajectory_from_heatmaps,
)


def blob_maps(us, vs, h=40, w=60, sigma=2.0):
    """One Gaussian blob per frame centred at fractions (u, v) of the width and height."""
    ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    maps = [np.exp(-(((xs[None] - u) * w) ** 2 + ((ys[:, None] - v) * h) ** 2) / (2 * sigma**2)) for u, v in zip(us, vs)]
    return np.asarray(maps, np.float32)


def test_direction_convention_left_is_positive_azimuth_up_is_positive_elevation():
    d = to_direction(np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [0.25, 0.75]]), fov_deg=120.0, vfov_deg=90.0)
    np.testing.assert_allclose(d, [[60, 45], [0, 0], [-60, -45], [30, -22.5]])
    np.testing.assert_allclose(to_direction(np.array([[0.0, 0.5]]), fov_deg=90.0), [[45, 0]])


def test_track_follows_a_blob_to_within_a_hundredth_of_the_frame():
    us, vs = np.linspace(0.2, 0.8, 30), np.linspace(0.3, 0.6, 30)
    track = track_positions(blob_maps(us, vs))
    np.testing.assert_allclose(track[:, 0], us, atol=0.01)
    np.testing.assert_allclose(track[:, 1], vs, atol=0.01)
    # clutter below half the peak does not move the peak-region centroid
    maps = blob_maps(us, vs)
    maps[:, :, :5] += 0.4
    np.testing.assert_allclose(track_positions(maps)[:, 0], us, atol=0.01)


def test_outliers_above_the_95th_percentile_step_are_dropped_with_neighbours_and_interpolated():
    u = np.linspace(0.2, 0.8, 60)
    track = np.stack([u, np.full(60, 0.5)], axis=1)
    track[30] = [0.95, 0.1]  # a one-frame jump: two big steps (29->30 and 30->31)
    bad = outlier_frames(track)
    assert set(np.flatnonzero(bad)) == {29, 30, 31, 32}
    fixed = interpolate_gaps(track, bad)
    np.testing.assert_allclose(fixed[:, 0], u, atol=1e-9)  # linear motion is restored exactly
    np.testing.assert_allclose(fixed[:, 1], 0.5)
    # equal steps (constant speed) flag nothing
    assert not outlier_frames(np.stack([u, u], axis=1)).any()


def test_trajectory_columns_and_constant_distance():
    us = np.linspace(0.1, 0.9, 40)
    traj = trajectory_from_heatmaps(blob_maps(us, np.full(40, 0.25)), smoothing=0.0, distance_m=2.5)
    assert traj.shape == (40, 3) and traj.dtype == np.float32
    np.testing.assert_allclose(traj[:, 0], (0.5 - us) * 120.0, atol=1.2)
    np.testing.assert_allclose(traj[:, 1], 22.5, atol=1.0)
    assert np.all(traj[:, 2] == 2.5)


def test_a_spurious_frame_does_not_survive_into_the_trajectory():
    us = np.linspace(0.3, 0.7, 50)
    maps = blob_maps(us, np.full(50, 0.5))
    maps[25] = blob_maps([0.02], [0.5])[0]  # one frame where the peak jumps to the left edge
    traj = trajectory_from_heatmaps(maps, smoothing=1.0)
    assert np.max(np.abs(traj[:, 0] - (0.5 - us) * 120)) < 2.0


def test_empty_heatmaps_fall_back_to_the_centre_and_zero_confidence():
    maps = np.zeros((10, 8, 8), np.float32)
    traj = trajectory_from_heatmaps(maps)
    np.testing.assert_allclose(traj[:, :2], 0.0)
    assert confidence(maps) == 0.0
    assert confidence(blob_maps([30.5 / 60] * 3, [20.5 / 40] * 3, sigma=1.0)) > 0.99  # peak on a cell


@pytest.mark.parametrize("n", [1, 2])
def test_very_short_clips(n):
    traj = trajectory_from_heatmaps(blob_maps([0.25] * n, [0.5] * n))
    assert traj.shape == (n, 3)
    np.testing.assert_allclose(traj[:, 0], 30.0, atol=1.0)


def test_the_path_holds_a_static_source_while_a_distractor_passes():
    n = 40
    maps = blob_maps([0.25] * n, [0.5] * n)
    passing = np.linspace(0.95, 0.6, 11)  # frames 15..25: a silent object as bright lights the maps too
    maps[15:26] += blob_maps(passing, [0.5] * 11)
    path = trajectory_from_heatmaps(maps, smoothing=0.0, tracker="path")
    np.testing.assert_allclose(path[:, 0], 30.0, atol=1.5)  # u = 0.25 all along
    region = trajectory_from_heatmaps(maps, smoothing=0.0, tracker="region")
    assert np.abs(region[15:26, 0] - 30.0).max() > 30  # frame by frame, the region spans both


def test_the_path_follows_a_sweep_past_a_weaker_static_clutter():
    n = 48
    us = np.linspace(0.1, 0.9, n)
    maps = blob_maps(us, [0.5] * n) + 0.6 * blob_maps([0.5] * n, [0.5] * n)
    traj = trajectory_from_heatmaps(maps, smoothing=0.0, tracker="path", jump_cost=3.0)
    # within 2.2 degrees where the sweep passes the clutter (its refine window sees both), 1.5 elsewhere
    np.testing.assert_allclose(traj[:, 0], (0.5 - us) * 120.0, atol=2.5)
    assert np.median(np.abs(traj[:, 0] - (0.5 - us) * 120.0)) < 0.5
    with pytest.raises(ValueError, match="tracker must be one of"):
        trajectory_from_heatmaps(maps, tracker="peak")


@pytest.mark.parametrize("tracker", ["path", "region"])
def test_nan_cells_are_no_evidence_not_a_nan_trajectory(tracker):
    n = 30
    maps = blob_maps([0.25] * n, [0.5] * n)
    maps[10:13] = np.nan  # three frames from a broken decode
    maps[20, 0, 0] = np.inf
    traj = trajectory_from_heatmaps(maps, smoothing=0.0, tracker=tracker)
    assert np.isfinite(traj).all()
    np.testing.assert_allclose(traj[[0, 5, 15, 25], 0], 30.0, atol=1.5)  # the clean frames keep their place
