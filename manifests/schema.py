"""The manifest schema, in one place.

Every (stage, chunk) manifest is a Parquet table with one row per clip the stage saw. The first
columns are fixed; each stage appends its measurement columns (declared in `STAGE_COLUMNS`,
checked by tests against each stage's `writes`). Rows carry forward everything upstream wrote, so
the last stage's manifest is the whole story of a clip.
"""

from __future__ import annotations

import re

import pyarrow as pa

STATUS_COLUMNS = ("clip_id", "status", "reason")

INPUT_COLUMNS = ("clip_id", "video", "label", "caption", "split", "start", "end")
REQUIRED_INPUT_COLUMNS = ("clip_id", "video")

# quality scores of the binaural downmix that validate writes as downmix_<name> (same names as quality's)
DOWNMIX_SCORES = ("aes_ce", "aes_cu", "aes_pc", "aes_pq", "dsp_clipping", "dsp_bandwidth_hz", "dsp_snr_db", "dsp_score")

STAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "ingest": (
        "source_id", "duration_s", "has_audio", "has_video", "audio_codec", "video_codec",
        "audio_sr_in", "audio_channels_in", "fps_in", "vfr", "width", "height", "size_bytes",
        "n_samples", "n_frames", "frame_fps", "frame_w", "frame_h",
    ),
    "duration": ("window_index", "window_start", "window_samples", "padded_samples"),
    "silence": ("silent_fraction", "vad_speech_fraction", "energy_active_fraction"),
    "quality": (
        "aes_ce", "aes_cu", "aes_pc", "aes_pq", "quality_backend",
        "dsp_clipping", "dsp_bandwidth_hz", "dsp_snr_db", "dsp_score",
    ),
    "localize": (
        "loc_method", "az_mean_deg", "az_start_deg", "az_end_deg", "el_mean_deg", "loc_confidence", "loc_centre_pull",
        "loc_model", "heatmap_path", "spatial_path", "traj_path",
    ),
    "convert": ("conversion_mode", "binaural_path"),
    "validate": (
        "iacc", "ild_db", "itd_ms", "isd_db", "ipd_rad", "lateral_agree",
        "ild_broadband_db", "itd_broadband_ms", "lateral_segments", "itd_within_head",
        *(f"downmix_{k}" for k in DOWNMIX_SCORES),
    ),
    "package": ("package_path", "package_fingerprint", "sample_split"),
    "shard": ("shard", "shard_index"),
}

# Clip ids become sample keys and file names, so only a conservative alphabet is accepted.
MAX_ID_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unsafe_id_reason(clip_id: object) -> str | None:
    """Why an id cannot be a key and a file name, or None when it is safe. Never rewrites ids."""
    if not isinstance(clip_id, str) or clip_id == "":
        return "empty clip_id"
    if len(clip_id) > MAX_ID_LENGTH:
        return f"clip_id longer than {MAX_ID_LENGTH} characters ({len(clip_id)})"
    if _CONTROL.search(clip_id):
        return "clip_id contains control characters"
    if "/" in clip_id or "\\" in clip_id:
        return "clip_id contains a path separator"
    if ".." in clip_id:
        return "clip_id contains '..'"
    if clip_id.startswith("."):
        return "clip_id starts with a dot"
    if clip_id != clip_id.strip():
        return "clip_id has leading or trailing whitespace"
    if "." in clip_id:
        return "clip_id contains '.' (WebDataset splits sample keys at the first dot)"
    return None


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts) to an Arrow table with a stable column order: status columns first."""
    columns: list[str] = list(STATUS_COLUMNS)
    for row in rows:
        for key in row:
            if key not in columns and not key.startswith("_"):
                columns.append(key)
    data = {c: [row.get(c) for row in rows] for c in columns}
    arrays = {}
    for c, values in data.items():
        try:
            arrays[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
    if not rows:
        return pa.table({c: pa.array([], pa.string()) for c in STATUS_COLUMNS})
    return pa.table(arrays)
