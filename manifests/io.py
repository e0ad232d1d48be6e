"""Atomic reads and writes of (stage, chunk) manifests and their completion markers.

A manifest is written to a temp file and renamed; the completion marker (a small JSON holding the
stage fingerprint and counts) is written last, the same way. A chunk counts as done only when its
marker exists *and* its fingerprint matches the current configuration.
"""

from __future__ import annotations

import json
import os
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import rows_to_table


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def umask_mode(fd: int) -> None:
    """mkstemp creates 0600 files; give them the mode any other new file gets (0666 minus the umask)
    so other users on shared storage can read a run."""
    os.fchmod(fd, 0o666 & ~UMASK)


def atomic_write_bytes(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    try:
        umask_mode(fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n").encode())


def write_table(path: str, table: pa.Table) -> None:
    """Parquet with settings fixed so the same rows give the same bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_statistics=False, store_schema=True)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def write_rows(path: str, rows: list[dict]) -> None:
    write_table(path, rows_to_table(rows))


def read_rows(path: str) -> list[dict]:
    return pq.read_table(path).to_pylist()


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}"


def read_marker(path: str) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None
