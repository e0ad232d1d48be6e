"""Captions: the class label as a sentence, and where the sound is from the visual trajectory.

Stored apart (json keys `caption` and `spatial_caption`) so a user can train with or without the
spatial phrase. Thresholds (azimuth positive to the LEFT, degrees):

- position: |az| < 15 is "in the centre", az >= 15 "on the left", az <= -15 "on the right";
- start / end: the median of the first / last quarter of the finite trajectory frames;
- moving: |end - start| > 20 degrees; then "<start position>, moving to the <left|right>";
  otherwise the position of the median azimuth over the whole clip.
"""

from __future__ import annotations

import numpy as np

CENTRE_DEG = 15.0
MOVING_DEG = 20.0

# Label heads that read without an article: plurals, mass nouns, and activities ("playing ...").
_NO_ARTICLE_HEADS = {
    "people", "children", "men", "women", "sheep", "fish", "geese", "cattle", "mice", "police",
    "rain", "wind", "thunder", "water", "fire", "traffic", "music", "applause", "laughter",
    "static", "noise", "hail", "snow", "ice", "machinery", "lightning", "wood", "air", "typing",
    "singing", "speech", "footsteps", "fireworks", "sea",
}


def _article(first_word: str) -> str:
    word = first_word.lower()
    if (
        word in _NO_ARTICLE_HEADS
        or word.endswith("ing")
        or (word.endswith("s") and not word.endswith(("ss", "us", "is")))
    ):
        return ""
    return "an " if word[:1] in "aeiou" else "a "


def label_sentence(label: str | None) -> str:
    """'dog barking' -> 'The sound of a dog barking.'; empty for a missing label."""
    label = " ".join(str(label or "").split())
    if not label:
        return ""
    text = label.rstrip(".")
    first = text.split()[0].strip(",")
    return f"The sound of {_article(first)}{text}."


def _position(az: float, centre_deg: float) -> str:
    if az >= centre_deg:
        return "on the left"
    if az <= -centre_deg:
        return "on the right"
    return "in the centre"


def spatial_phrase(
    azimuth_deg: np.ndarray | None,
    centre_deg: float = CENTRE_DEG,
    moving_deg: float = MOVING_DEG,
) -> str:
    """'on the left', 'in the centre', 'on the left, moving to the right'; '' when unknown."""
    if azimuth_deg is None:
        return ""
    az = np.asarray(azimuth_deg, dtype=np.float64).reshape(-1)
    az = az[np.isfinite(az)]
    if az.size == 0:
        return ""
    quarter = max(1, az.size // 4)
    start, end = float(np.median(az[:quarter])), float(np.median(az[-quarter:]))
    change = end - start
    if abs(change) > moving_deg:
        direction = "to the left" if change > 0 else "to the right"
        return f"{_position(start, centre_deg)}, moving {direction}"
    return _position(float(np.median(az)), centre_deg)


def trajectory_summary(traj: np.ndarray | None, fps: float | None) -> dict:
    """Small per-clip numbers for the json member (degrees, metres); empty values when absent."""
    keys = ("az_start_deg", "az_end_deg", "az_mean_deg", "az_min_deg", "az_max_deg",
            "el_mean_deg", "distance_mean_m")
    summary: dict = {k: None for k in keys}
    summary.update(frames=0, fps=float(fps) if fps else None)
    if traj is None:
        return summary
    traj = np.asarray(traj, dtype=np.float64)
    if traj.ndim != 2 or traj.shape[0] == 0 or traj.shape[1] < 3:
        return summary
    summary["frames"] = int(traj.shape[0])

    def finite(values: np.ndarray) -> np.ndarray:
        return values[np.isfinite(values)]

    az, el, dist = finite(traj[:, 0]), finite(traj[:, 1]), finite(traj[:, 2])
    if az.size:
        quarter = max(1, az.size // 4)
        summary.update(
            az_start_deg=float(np.median(az[:quarter])),
            az_end_deg=float(np.median(az[-quarter:])),
            az_mean_deg=float(az.mean()),
            az_min_deg=float(az.min()),
            az_max_deg=float(az.max()),
        )
    if el.size:
        summary["el_mean_deg"] = float(el.mean())
    if dist.size:
        summary["distance_mean_m"] = float(dist.mean())
    return summary
