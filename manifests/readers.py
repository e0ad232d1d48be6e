"""Input manifests: VGGSound's CSV, or a CSV / JSONL / Parquet manifest with `clip_id` and `video`.

Structural problems (missing column, a row that cannot be parsed) raise ManifestError naming the
line, before any work. Row problems that concern one clip (unsafe or repeated id) become rejected
rows with a reason: they are reported, never silently changed or merged.
"""

from __future__ import annotations

import csv
import json
import math
import os
import posixpath
import re
from dataclasses import dataclass

from manifests.schema import INPUT_COLUMNS, REQUIRED_INPUT_COLUMNS, unsafe_id_reason


class ManifestError(ValueError):
    """The input manifest itself is malformed; the run stops before any work."""


@dataclass
class InputManifest:
    rows: list[dict]  # accepted rows, in input order, columns of INPUT_COLUMNS
    rejected: list[dict]  # {"line", "clip_id", "video", "reason"}
    format: str


def read_input(path: str, media_root: str = "", allow_outside_root: bool = False) -> InputManifest:
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
    return _validate(raw, media_root, fmt, allow_outside_root)


def _read_csv(path: str) -> tuple[list[tuple[int, dict]], str]:
    """pandas' C parser: quoting done right, and its errors name the line (we add how to fix it)."""
    import pandas as pd

    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    first, header_line = _first_line(path)
    if header_line is None:
        return [], "csv"
    header = [c.strip() for c in next(csv.reader([header_line], delimiter=delimiter))]
    has_header = "clip_id" in header or "video" in header
    if has_header:
        missing = [c for c in REQUIRED_INPUT_COLUMNS if c not in header]
        if missing:
            raise ManifestError(f"line {first + 1}: header lacks required column(s) {missing}; got {header}")
    try:
        frame = pd.read_csv(
            path, sep=delimiter, header=0 if has_header else None, skiprows=first, dtype=str,
            keep_default_na=False, na_values=[], skip_blank_lines=False, engine="c", encoding="utf-8",
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(_csv_error(exc, first, has_header, header, path)) from None
    records = frame.to_dict("records") if has_header else frame.to_numpy().tolist()
    offset = first + (2 if has_header else 1)  # the physical line of record 0
    out = []
    for index, record in enumerate(records):
        line = index + offset
        values = record.values() if has_header else record
        if not any(str(v).strip() for v in values):
            continue
        spanning = [v for v in values if "\n" in str(v) or "\r" in str(v)]
        if spanning:
            raise ManifestError(
                f"line {line}: a quoted value runs over several lines ({str(spanning[0])[:60]!r}...): "
                "probably an unterminated quote; close it or remove the stray quote character"
            )
        out.append((line, _header_row(record, header) if has_header else _vggsound_row(list(record), line)))
    return out, "csv" if has_header else "vggsound"


def _first_line(path: str) -> tuple[int, str | None]:
    """Index and text of the first non-blank line (the header, or VGGSound's first row)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for index, line in enumerate(fh):
            if line.strip():
                return index, line
    return 0, None


def _csv_error(exc: Exception, first: int, has_header: bool, header: list[str], path: str) -> str:
    """pandas' message with the physical line and what to do about it."""
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the manifest as UTF-8"
    match = re.search(r"EOF inside string starting at row (\d+)", text)
    if match:
        line = int(match.group(1)) + first + 1
        return (f"line {line}: a quote opened on this line is never closed (the file ends inside it); "
                "close the quote or remove the stray quote character")
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, saw = (int(g) for g in match.groups())
        line += first
        if has_header:
            return f"line {line}: expected {expected} fields ({','.join(header)}), got {saw}; quote values that contain commas"
        return (f"line {line}: VGGSound rows have 4 fields (youtube_id,start_seconds,label,split), got {saw}. "
                "A manifest of your own needs a header with clip_id,video")
    return f"{path}: cannot parse the CSV: {text.strip().splitlines()[-1]}"


def _header_row(record: dict, header: list[str]) -> dict:
    return {str(k).strip(): v for k, v in record.items()}


def _vggsound_row(fields: list, line: int) -> dict:
    """VGGSound: `youtube_id,start_seconds,label,split`, no header; files named {id}_{start:06d}.mp4."""
    fields = [str(f).strip() for f in fields]
    if len(fields) != 4 or not fields[0] or not fields[1] or not fields[3]:
        raise ManifestError(
            f"line {line}: VGGSound rows have 4 fields (youtube_id,start_seconds,label,split), "
            f"got {[f for f in fields if f]!r}. A manifest of your own needs a header with clip_id,video"
        )
    ytid, start, label, split = fields
    try:
        start_s = int(start)
    except ValueError:
        raise ManifestError(f"line {line}: start_seconds {start!r} is not an integer") from None
    clip_id = f"{ytid}_{start_s:06d}"
    return {"clip_id": clip_id, "video": f"{clip_id}.mp4", "label": label, "split": split}


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
        return os.path.normpath(video)
    if "://" in (media_root or ""):  # an object-store MEDIA_ROOT: join as a key, normalised like a path
        scheme, _, rest = media_root.partition("://")
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, video))}"
    return os.path.abspath(os.path.join(media_root or ".", video))


def normalise_root(media_root: str) -> str:
    """A local folder as an absolute path (file:// stripped); object-store URLs as given, no trailing slash."""
    if not media_root:
        return ""
    if media_root.startswith("file://"):
        media_root = media_root[len("file://"):]
    if "://" in media_root:
        return media_root.rstrip("/")
    return os.path.abspath(media_root)


def outside_root_reason(video: str, media_root: str) -> str | None:
    """Why a resolved video path lies outside MEDIA_ROOT (a manifest must not reach elsewhere), or None."""
    if not media_root:
        return None
    root = media_root if "://" in media_root else os.path.abspath(media_root)
    target = video if "://" in video else os.path.normpath(video)
    if "://" in root and root.startswith("file://"):
        root = os.path.normpath(root[len("file://"):])
    if target == root or target.startswith(root.rstrip("/") + "/"):
        return None
    return (f"video outside MEDIA_ROOT: {video} is not under {root} "
            "(set run.allow_media_outside_root: true to allow it)")


def _validate(raw: list[tuple[int, dict]], media_root: str, fmt: str, allow_outside_root: bool = False) -> InputManifest:
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
        if reason is None and not allow_outside_root:
            reason = outside_root_reason(resolve_video(video, media_root), media_root)
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
