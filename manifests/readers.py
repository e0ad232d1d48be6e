"""Input manifests: VGGSound's CSV, or a CSV / JSONL / Parquet manifest with `clip_id` and `video`.

Structural problems (missing column, a row that cannot be parsed) raise ManifestError naming the
line, before any work. Row problems that concern one clip (unsafe or repeated id) become rejected
rows with a reason: they are reported, never silently changed or merged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass

from manifests.schema import INPUT_COLUMNS, REQUIRED_INPUT_COLUMNS, unsafe_id_reason


class ManifestError(ValueError):
    """The input manifest itself is malformed; the run stops before any work."""


@dataclass
class InputManifest:
    rows: list[dict]  # accepted rows, in input order, columns of INPUT_COLUMNS
    rejected: list[dict]  # {"line", "clip_id", "video", "reason"}
    format: str


def read_input(path: str, media_root: str = "") -> InputManifest:
    """Detect the format from the extension (and, for CSV, the header) and read it."""
    if not os.path.exists(path):
        raise ManifestError(f"input manifest {path!r} does not exist")
    lower = path.lower()
    if lower.endswith(".parquet"):
        raw, fmt = _read_parquet(path), "parquet"
    elif lower.endswith((".jsonl", ".json", ".ndjson")):
        raw, fmt = _read_jsonl(path), "jsonl"
    elif lower.endswith((".csv", ".tsv", ".txt")):
        raw, fmt = _read_csv(path)
    else:
        raise ManifestError(
            f"{path}: unknown manifest format; use .csv (VGGSound or with a clip_id header), "
            ".jsonl or .parquet"
        )
    return _validate(raw, media_root, fmt)


def _read_csv(path: str) -> tuple[list[tuple[int, dict]], str]:
    with open(path, newline="", encoding="utf-8") as fh:
        text = fh.read()
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    lines = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    first = next((i for i, r in enumerate(lines) if r and any(c.strip() for c in r)), None)
    if first is None:
        return [], "csv"
    header = [c.strip() for c in lines[first]]
    if "clip_id" in header or "video" in header:
        return _csv_with_header(header, lines, first), "csv"
    return _vggsound_rows(lines), "vggsound"


def _csv_with_header(header: list[str], lines: list[list[str]], first: int) -> list[tuple[int, dict]]:
    missing = [c for c in REQUIRED_INPUT_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"line {first + 1}: header lacks required column(s) {missing}; got {header}")
    out = []
    for i, fields in enumerate(lines[first + 1 :], start=first + 2):
        if not fields or not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise ManifestError(
                f"line {i}: expected {len(header)} fields ({','.join(header)}), got {len(fields)}: {fields!r}"
            )
        out.append((i, dict(zip(header, fields))))
    return out


def _vggsound_rows(lines: list[list[str]]) -> list[tuple[int, dict]]:
    """VGGSound: `youtube_id,start_seconds,label,split`, no header; files named {id}_{start:06d}.mp4."""
    out = []
    for i, fields in enumerate(lines, start=1):
        if not fields or not any(f.strip() for f in fields):
            continue
        if len(fields) != 4:
            raise ManifestError(
                f"line {i}: VGGSound rows have 4 fields (youtube_id,start_seconds,label,split), "
                f"got {len(fields)}: {fields!r}. A manifest of your own needs a header with clip_id,video"
            )
        ytid, start, label, split = (f.strip() for f in fields)
        try:
            start_s = int(start)
        except ValueError:
            raise ManifestError(f"line {i}: start_seconds {start!r} is not an integer") from None
        clip_id = f"{ytid}_{start_s:06d}"
        out.append((i, {"clip_id": clip_id, "video": f"{clip_id}.mp4", "label": label, "split": split}))
    return out


def _read_jsonl(path: str) -> list[tuple[int, dict]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"line {i}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ManifestError(f"line {i}: expected a JSON object, got {type(obj).__name__}")
            out.append((i, obj))
    if out:
        missing = [c for c in REQUIRED_INPUT_COLUMNS if all(c not in o for _, o in out)]
        if missing:
            raise ManifestError(f"{path}: no row has required field(s) {missing}")
    return out


def _read_parquet(path: str) -> list[tuple[int, dict]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in REQUIRED_INPUT_COLUMNS if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: missing required column(s) {missing}; got {table.column_names}")
    return [(i + 1, row) for i, row in enumerate(table.to_pylist())]


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = str(value)
    return value if value.strip() != "" else None


def _seconds(value, line: int, name: str) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ManifestError(f"line {line}: {name} {text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ManifestError(f"line {line}: {name} {text!r} must be a finite, non-negative number")
    return seconds


def resolve_video(video: str, media_root: str) -> str:
    """Relative paths join MEDIA_ROOT; absolute paths and URLs (scheme://) stay as given."""
    if "://" in video:
        return video[len("file://"):] if video.startswith("file://") else video
    if os.path.isabs(video):
        return video
    return os.path.abspath(os.path.join(media_root or ".", video))


def _validate(raw: list[tuple[int, dict]], media_root: str, fmt: str) -> InputManifest:
    rows, rejected, seen = [], [], {}
    for line, obj in raw:
        clip_id = obj.get("clip_id")
        clip_id = None if clip_id is None else str(clip_id)
        video = _text(obj.get("video"))
        start = _seconds(obj.get("start"), line, "start")
        end = _seconds(obj.get("end"), line, "end")
        if start is not None and end is not None and end <= start:
            raise ManifestError(f"line {line}: end ({end}) must be greater than start ({start})")
        reason = unsafe_id_reason(clip_id)
        if reason is None and video is None:
            reason = "empty video path"
        if reason is None and clip_id in seen:
            reason = f"duplicate clip_id (first seen on line {seen[clip_id]})"
        if reason is not None:
            rejected.append({"line": line, "clip_id": clip_id, "video": video, "reason": reason})
            continue
        seen[clip_id] = line
        row = {c: None for c in INPUT_COLUMNS}
        row.update(
            clip_id=clip_id,
            video=resolve_video(video, media_root),
            label=_text(obj.get("label")),
            caption=_text(obj.get("caption")),
            split=_text(obj.get("split")) or "train",
            start=start,
            end=end,
        )
        rows.append(row)
    return InputManifest(rows=rows, rejected=rejected, format=fmt)
