"""fusion-learned's arithmetic: per-frame normalised maps on the finest grid, averaged, per-clip normalised."""

import numpy as np

from binauralizer.localize.fusion import fuse_frames, normalise_frames


def test_each_frame_of_each_cue_counts_the_same_whatever_its_scale():
    weak = np.zeros((2, 4, 6), np.float32)
    weak[:, 1, 1] = 0.01  # a faint but sure opinion: top left
    strong = np.zeros((2, 4, 6), np.float32)
    strong[:, 2, 4] = 50.0  # a loud one: bottom right
    agree = np.zeros((2, 4, 6), np.float32)
    agree[:, 1, 1] = 3.0  # the third cue sides with the faint one
    fused = fuse_frames(weak, strong, agree)
    assert fused.shape == (2, 4, 6) and fused.max() == 1.0
    assert np.all(fused[:, 1, 1] == 1.0) and np.allclose(fused[:, 2, 4], 0.5)  # two cues beat one loud cue


def test_grids_are_resampled_to_the_finest_and_empty_frames_stay_empty():
    coarse = np.ones((3, 2, 3), np.float32)
    fine = np.zeros((3, 8, 12), np.float32)
    fine[1, 4, 6] = 2.0
    fused = fuse_frames(coarse, fine)
    assert fused.shape == (3, 8, 12)
    assert np.allclose(fused[0], 0.5) and fused[1].argmax() == 4 * 12 + 6
    frames = normalise_frames(np.stack([np.zeros((2, 2)), np.full((2, 2), -1.0), np.array([[1.0, 4.0], [0, 2]])]))
    assert frames[0].max() == 0 and frames[1].max() == 0 and frames[2].max() == 1.0 and frames[2, 0, 0] == 0.25
