import numpy as np
from scipy.stats import norm

from binauralizer.localize.features import FEATURE_NAMES, spatial_features


def test_feature_order_matches_spatialv2a_eq5():
    assert FEATURE_NAMES == ("S_h", "S_area", "S_var", "S_LR", "S_shape")


def test_single_cell_on_the_right():
    m = np.zeros((1, 4, 8), np.float32)
    m[0, 1, 6] = 1.0  # x centre 6.5/8, y centre 1.5/4
    s_h, area, var, lr, shape = spatial_features(m)[0]
    assert s_h == np.float32(6.5 / 8)
    assert area == np.float32(1 / 32)
    assert var == 0.0
    assert lr == 1.0  # all energy in the right half
    assert shape == 1.0  # (0 + eps) / (0 + eps)


def test_uniform_map_matches_closed_form_variances():
    h, w = 10, 20
    s = spatial_features(np.ones((1, h, w)))[0]
    var_x = np.var((np.arange(w) + 0.5) / w)  # uniform over cell centres
    var_y = np.var((np.arange(h) + 0.5) / h)
    # every cell is above half the maximum of a flat map: the mask covers the frame
    np.testing.assert_allclose(s, [0.5, 1.0, var_x + var_y, 0.0, (var_x + 1e-6) / (var_y + 1e-6)], rtol=1e-5)


def test_left_right_bias_and_shape_of_a_wide_blob():
    h, w = 60, 60
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    blob = np.exp(-((xs - 20) ** 2) / (2 * 6.0**2) - ((ys - 30) ** 2) / (2 * 3.0**2))
    s_h, area, var, lr, shape = spatial_features(blob[None])[0]
    assert abs(s_h - 1 / 3) < 1e-3
    right = norm.sf((30 - 20) / 6.0)  # share of a Gaussian beyond the middle column boundary
    assert abs(lr - (right - (1 - right))) < 0.01  # (right - left) / total: negative, mostly left
    # var_x / var_y in normalised units: (6/60)^2 / (3/60)^2 = 4
    assert abs(shape - 4.0) < 0.05
    assert abs(var - ((6 / 60) ** 2 + (3 / 60) ** 2)) < 1e-4
    # mask of cells above half max: ellipse area pi * a * b with a, b = sigma * sqrt(2 ln 2)
    expected = np.pi * 6 * 3 * 2 * np.log(2) / (h * w)
    assert abs(area - expected) / expected < 0.1


def test_odd_width_centre_column_counts_to_neither_side_and_empty_frames():
    m = np.zeros((2, 3, 5), np.float32)
    m[0, :, 2] = 1.0  # centre column only
    m[0, 0, 0] = 1.0  # plus one cell on the left
    out = spatial_features(m)
    np.testing.assert_allclose(out[0, 3], -1 / 4)
    np.testing.assert_allclose(out[1], [0.5, 0.0, 0.0, 0.0, 1.0])
    assert out.dtype == np.float32 and out.shape == (2, 5)


def test_features_do_not_depend_on_heatmap_resolution():
    def blob(h, w):
        ys, xs = (np.mgrid[0:h, 0:w] + 0.5) / np.array([h, w])[:, None, None]
        return np.exp(-((xs - 0.7) ** 2) / 0.005 - ((ys - 0.4) ** 2) / 0.01)[None]

    coarse, fine = spatial_features(blob(14, 20))[0], spatial_features(blob(224, 320))[0]
    np.testing.assert_allclose(coarse[[0, 2, 3, 4]], fine[[0, 2, 3, 4]], rtol=0.03, atol=2e-3)
