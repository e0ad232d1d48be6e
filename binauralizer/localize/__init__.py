"""Visual sound-source localisation: heatmaps, SpatialV2A spatial features, source trajectories.

    from binauralizer.localize import build_localiser, spatial_features, trajectory_from_heatmaps
    loc = build_localiser("motion")                  # or "semantic", "semantic+motion", "learned:<path>"
    heat = loc.heatmaps(frames, audio)               # (T,H,W,3) uint8, (N,) float32 16 kHz -> (T,h,w)
    spatial = spatial_features(heat)                 # (T, 5) S_h, S_area, S_var, S_LR, S_shape
    traj = trajectory_from_heatmaps(heat, fov_deg=120.0)  # (T, 3) azimuth, elevation, distance

Heavy dependencies (torch, onnxruntime) load only when the semantic or learned localiser is built.
"""

from binauralizer.localize.base import Localiser, available, build_localiser, register
from binauralizer.localize.features import FEATURE_NAMES, spatial_features
from binauralizer.localize.trajectory import trajectory_from_heatmaps

__all__ = [
    "Localiser", "available", "build_localiser", "register",
    "FEATURE_NAMES", "spatial_features", "trajectory_from_heatmaps",
]
