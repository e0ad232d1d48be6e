"""Every file the project writes goes through here: one temp-name scheme, then an atomic rename.

A writer writes a hidden sibling `.tmp-<random>-<name>` in the target's folder and renames it over the
target; on any error the temp file is removed. A kill can therefore leave only `.tmp-*` files (which
nothing reads, and which `is_temp` lets cleaners recognise), never a half-written target. Manifests
((stage, chunk) Parquet) are written with fixed settings so the same rows give the same bytes; a
chunk's completion marker is written after its manifest.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import rows_to_table

TEMP_PREFIX = ".tmp-"
# A full disk (or quota, or file-size limit) is a property of the volume, never of the clip being written.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# what a reason quotes when a write found no space (Python's and ffmpeg's wording); not EFBIG's "File too
# large", which a reader of a bad input file may print too (that clip must fail alone, not stop the run)
DISK_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def is_disk_full(error: BaseException | str) -> bool:
    """True for an OSError of a full disk, or a failure reason that quotes one (a stage's own wording,
    ffmpeg's stderr): such a clip must be retried once there is space, never recorded as failed."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return True
    return any(text in str(error) for text in DISK_FULL_TEXTS)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def is_temp(name: str) -> bool:
    """True for a file name left by an interrupted atomic write."""
    return os.path.basename(name).startswith(TEMP_PREFIX)


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temp path beside `path` (same extension) for tools that write files themselves
    (ffmpeg, pyarrow, matplotlib); renamed onto `path` when the block succeeds, removed otherwise."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix="-" + os.path.basename(path))
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a run on shared storage must be readable by others
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = path  # a failed write() names no file: name the one being written
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n").encode())


def atomic_save_npy(path: str, array) -> None:
    """A numpy array as .npy (no pickles)."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(obj, path: str) -> None:
    """torch.save through memory: the zip's record names come from the target's base name, not the
    temp name, so the same object gives the same bytes wherever it is written."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


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
