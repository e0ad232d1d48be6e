"""Every per-clip file of a run, named once.

Paths are relative to the run folder (what rows carry); `resolve` makes them absolute. A stage that
writes an artefact puts its relative path into its row (`traj_path`, `binaural_path`, ...); a
consumer reads the path from the row (`row_file`), so no stage rebuilds another stage's file name.
The decoded media are keyed by `source_id` (one decode per source video, windows are slices);
everything downstream is keyed by `clip_id` (the window).
"""

from __future__ import annotations

import os

WORK = "work"

# ingest: one decode per source video
AUDIO = "audio.npy"  # float32 mono at SAMPLE_RATE
FRAMES_RAW = "frames.npy"  # uint8 (T, H, W, 3)
FRAMES_JPEG = "frames_jpeg.npy"  # concatenated JPEG bytes ...
FRAMES_INDEX = "frames_index.npy"  # ... and their offsets (written last)

# localize
HEATMAP, SPATIAL, TRAJECTORY = "heatmap.npy", "spatial.npy", "traj.npy"
# convert
BINAURAL = "binaural.npy"  # float32 (2, N), row 0 = left
# package: the staged members of the clip's WebDataset sample and their index
PACKAGE_INDEX = "staged.json"

# the row columns that carry artefact paths, by the stage that writes them
PATH_COLUMNS = {
    "localize": ("heatmap_path", "spatial_path", "traj_path"),
    "convert": ("binaural_path",),
    "package": ("package_path",),
}


def ingest_dir(source_id: str) -> str:
    return f"{WORK}/ingest/{source_id}"


def ingest_file(source_id: str, name: str) -> str:
    return f"{ingest_dir(source_id)}/{name}"


def clip_dir(stage: str, clip_id: str) -> str:
    return f"{WORK}/{stage}/{clip_id}"


def heatmap(clip_id: str) -> str:
    return f"{clip_dir('localize', clip_id)}/{HEATMAP}"


def spatial(clip_id: str) -> str:
    return f"{clip_dir('localize', clip_id)}/{SPATIAL}"


def trajectory(clip_id: str) -> str:
    return f"{clip_dir('localize', clip_id)}/{TRAJECTORY}"


def binaural(clip_id: str) -> str:
    return f"{clip_dir('convert', clip_id)}/{BINAURAL}"


def package(clip_id: str) -> str:
    """The folder of a clip's staged shard members; its PACKAGE_INDEX lists them."""
    return clip_dir("package", clip_id)


def model() -> str:
    """The trained U-Net that convert (mode unet) loads."""
    return f"{WORK}/train_unet/model.pt"


def localizer_dir() -> str:
    """train_localizer's folder: checkpoint.pt, history.json, loss_curve.png, train_summary.json."""
    return f"{WORK}/train_localizer"


def localizer_model() -> str:
    """The learned localiser that localize (method learned / fusion-learned, no checkpoint) loads."""
    return f"{localizer_dir()}/localizer.pt"


def resolve(out: str, rel: str) -> str:
    return os.path.join(out, rel)


def row_file(out: str, row: dict, column: str) -> str | None:
    """Absolute path of the artefact a row points at in `column`; None when the row has none."""
    rel = row.get(column)
    if isinstance(rel, str) and rel.strip():
        return resolve(out, rel)
    return None
