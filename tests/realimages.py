"""Real photographs on plain canvases, for the localisers' tests."""

import numpy as np
import skimage.data
import torch
from torch.nn import functional as F


def cat_canvas(side: str) -> np.ndarray:
    """The scikit-image cat photo (real, Chelsea) on one half of a grey 224 x 672 canvas."""
    cat = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float()
    small = F.interpolate(cat, size=(224, 336), mode="bilinear", antialias=True)[0].permute(1, 2, 0)
    canvas = np.full((224, 672, 3), 128, np.uint8)
    x0 = 0 if side == "left" else 336
    canvas[:, x0 : x0 + 336] = small.round().clamp(0, 255).byte().numpy()
    return canvas
