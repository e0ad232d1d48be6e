"""SpatialV2A's five per-frame spatial features of a localisation heatmap (§4.3, eq. 4-5).

S_sound = S_h (+) S_area (+) S_var (+) S_LR (+) S_shape, one row per frame, in that column order:

  S_h     = cx / W                      heatmap-weighted horizontal centroid over the width
  S_area  = sum(mask) / (H W)           mask = heatmap above a threshold
  S_var   = var_x + var_y               var_x = sum_x M(x) (x - cx)^2 / sum_x M(x), likewise y
  S_LR    = (E_right - E_left) / E      energy of the right half minus the left half (eq. 4)
  S_shape = var_x / var_y               anisotropy of the spread

Choices where the paper is silent (documented so they can be changed knowingly):
  * M(x), M(y) are the heatmap's column and row sums (its marginals); cx, cy its centroid.
  * Coordinates are pixel centres divided by W (x) and H (y), so S_var is in units of the frame
    size squared and does not depend on the heatmap resolution (ACL's 224 px maps and our coarse
    grids give the same numbers); cx/W is then the same normalised centroid as S_h.
  * mask threshold: 0.5 x the frame's own maximum (ACL heatmaps are min-max normalised per
    frame before thresholding); `area_threshold` changes it.
  * Odd widths: the centre column counts half to each side in S_LR.
  * S_shape = (var_x + eps) / (var_y + eps) with eps = 1e-6 so a one-row blob stays finite.
  * A frame with no heat: S_h = 0.5, S_area = 0, S_var = 0, S_LR = 0, S_shape = 1.
"""

from __future__ import annotations

import numpy as np

FEATURE_NAMES = ("S_h", "S_area", "S_var", "S_LR", "S_shape")
SHAPE_EPS = 1e-6


def spatial_features(heatmaps: np.ndarray, area_threshold: float = 0.5) -> np.ndarray:
    """(T, H, W) non-negative heatmaps -> (T, 5) float32 [S_h, S_area, S_var, S_LR, S_shape]."""
    maps = np.maximum(np.asarray(heatmaps, dtype=np.float64), 0.0)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must be (T, H, W), got {maps.shape}")
    t, h, w = maps.shape
    col = maps.sum(axis=1)  # M(x): (T, W)
    row = maps.sum(axis=2)  # M(y): (T, H)
    total = col.sum(axis=1)
    empty = ~(total > 0)
    safe = np.where(empty, 1.0, total)

    xs = (np.arange(w) + 0.5) / w
    ys = (np.arange(h) + 0.5) / h
    cx = (col * xs).sum(axis=1) / safe
    cy = (row * ys).sum(axis=1) / safe
    var_x = (col * (xs[None] - cx[:, None]) ** 2).sum(axis=1) / safe
    var_y = (row * (ys[None] - cy[:, None]) ** 2).sum(axis=1) / safe

    peak = maps.reshape(t, -1).max(axis=1)
    mask = (maps > (area_threshold * peak)[:, None, None]) & (peak > 0)[:, None, None]
    area = mask.reshape(t, -1).sum(axis=1) / float(h * w)

    side = np.where(xs < 0.5, -1.0, np.where(xs > 0.5, 1.0, 0.0))  # centre column: neither
    lr = (col * side).sum(axis=1) / safe

    shape = (var_x + SHAPE_EPS) / (var_y + SHAPE_EPS)
    out = np.stack([cx, area, var_x + var_y, lr, shape], axis=1)
    out[empty] = (0.5, 0.0, 0.0, 0.0, 1.0)
    return out.astype(np.float32)
