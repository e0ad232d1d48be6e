"""Deterministic, atomic, resumable WebDataset tar shards.

Layout of `shard_dir` (OUT/shards)::

    {split}-{000000}.tar          one sample per clip: members `<key>.<suffix>`
    {split}-{000000}.parquet      key, offset, size, fields of every sample in that tar
    {split}-{000000}.stats.json   written last: its presence marks the shard complete
    index.parquet, sizes.json     the whole dataset

Same samples, same settings -> byte-identical tars: GNU tar format, members sorted by suffix,
samples sorted by (split, key), mtime 0, uid/gid 0, empty user/group names, mode 0o644.

Resume at shard granularity: the assignment of samples to shards is planned *before* writing,
from the sorted samples and their exact in-tar sizes, so a rerun makes the same plan. A shard is
written to a `.tmp-*` name (manifests.io) and renamed, then its parquet, then its stats.json; a rerun skips shards
whose stats.json lists the planned keys with the same fingerprints, rewrites the others, deletes
leftover `.tmp-*` files and shards the plan no longer has (no duplicates, no numbering gaps).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, Union

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.io import atomic_path, atomic_write_bytes, is_temp

GiB = 1 << 30
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
TAR_FORMAT = tarfile.GNU_FORMAT
SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
SHARD_FILE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+-\d{6})\.(tar|parquet|stats\.json)$")

Source = Union[bytes, str]  # member content in memory, or the path of a file holding it
Members = Sequence[tuple[str, Source]]  # (suffix, source), e.g. ("flac", "/work/.../binaural.flac")


@dataclass
class Entry:
    """One sample to write.

    `build()` returns the members; it is called lazily (only for samples whose size is unknown
    or whose shard must be written) and may be called more than once, so it must be
    deterministic and cheap after its first call (cache staged files). `fingerprint` must change
    whenever the members' bytes would. `release()` runs once the sample's shard is complete.
    """

    key: str
    split: str
    fingerprint: str
    build: Callable[[], Members]
    release: Callable[[], None] | None = None

    @classmethod
    def from_members(cls, key: str, split: str, members: Members) -> "Entry":
        """An entry whose members are already at hand; fingerprint = hash of their bytes."""
        digest = hashlib.sha256()
        for suffix, source in sorted(members, key=lambda m: m[0]):
            digest.update(suffix.encode() + b"\0")
            digest.update(source if isinstance(source, bytes) else _read(source))
        frozen = tuple(members)
        return cls(key, split, digest.hexdigest()[:20], lambda: frozen)


@dataclass(frozen=True)
class ShardPlan:
    name: str  # "{split}-{index:06d}"
    split: str
    index: int
    keys: tuple[str, ...]
    sizes: tuple[int, ...]  # bytes each sample takes in the tar (headers + padded data)

    @property
    def tar_bytes(self) -> int:
        return tar_size(self.sizes)


@dataclass
class WriteResult:
    plans: list[ShardPlan]
    location: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (tar name, position)
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


# -- tar layout --------------------------------------------------------------------------------


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _source_size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else os.path.getsize(source)


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A member header with nothing that depends on the machine, the user or the clock."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def sorted_members(members: Members) -> list[tuple[str, Source]]:
    suffixes = [m[0] for m in members]
    if len(set(suffixes)) != len(suffixes):
        raise ValueError(f"duplicate member suffixes {sorted(suffixes)}")
    return sorted(members, key=lambda m: m[0])


def sample_size(key: str, members: Members) -> int:
    """Exact bytes the sample occupies in a tar: headers (incl. GNU long names) + padded data."""
    total = 0
    for suffix, source in sorted_members(members):
        size = _source_size(source)
        header = tar_info(f"{key}.{suffix}", size).tobuf(TAR_FORMAT, "utf-8", "surrogateescape")
        total += len(header) + _padded(size)
    return total


def tar_size(sample_sizes: Iterable[int]) -> int:
    """Bytes of a tar holding samples of these sizes: two zero blocks, padded to a record."""
    raw = sum(sample_sizes) + 2 * BLOCK
    return -(-raw // RECORD) * RECORD


def check_split(value: str) -> None:
    """Splits name shard files: a conservative alphabet."""
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise ValueError(f"split {value!r} must match [A-Za-z0-9_-]+ (it names the shard files)")


def check_key(value: str) -> None:
    """Keys name tar members; WebDataset readers split a member name at the key's end by the first dot."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"sample key {value!r} is empty or has surrounding whitespace")
    if any(c in value for c in "./\\") or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"sample key {value!r} contains '.', a path separator or a control character")


# -- planning ----------------------------------------------------------------------------------


def plan_shards(
    samples: Sequence[tuple[str, str, int]], max_shard_bytes: int, max_samples: int
) -> list[ShardPlan]:
    """Greedy fill per split, in (split, key) order: a new shard starts when the next sample
    would push the tar past `max_shard_bytes` or the count cap. A sample larger than the limit
    gets a shard of its own."""
    plans: list[ShardPlan] = []
    ordered = sorted(samples, key=lambda s: (s[0], s[1]))
    current: list[tuple[str, int]] = []
    split = None

    def close() -> None:
        if current:
            index = sum(1 for p in plans if p.split == split)
            plans.append(
                ShardPlan(f"{split}-{index:06d}", split, index,
                          tuple(k for k, _ in current), tuple(s for _, s in current))
            )
            current.clear()

    for s, key, size in ordered:
        if s != split:
            close()
            split = s
        too_big = tar_size([x for _, x in current] + [size]) > max_shard_bytes
        if current and (too_big or len(current) >= max_samples):
            close()
        current.append((key, size))
    close()
    return plans


# -- writing -----------------------------------------------------------------------------------


def _atomic_write_bytes(path: str, data: bytes) -> None:
    atomic_write_bytes(path, data)


def _atomic_parquet(path: str, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1) + "\n").encode()


class ShardWriter:
    """Writes entries into `shard_dir` (see the module docstring); `write` is the one call."""

    def __init__(
        self,
        shard_dir: str,
        max_shard_bytes: int = GiB,
        max_samples_per_shard: int = 10000,
        progress: Callable[[str, int, int], None] | None = None,
        committed: Callable[[list[str]], None] | None = None,
        stored_size: Callable[[str], int | None] | None = None,
    ):
        if max_shard_bytes < RECORD or max_samples_per_shard < 1:
            raise ValueError("max_shard_bytes must be >= 10240 and max_samples_per_shard >= 1")
        self.shard_dir = shard_dir
        self.max_shard_bytes = int(max_shard_bytes)
        self.max_samples = int(max_samples_per_shard)
        self.progress = progress  # called (shard name, samples written, samples planned)
        # called with the paths of each completed shard (tar, parquet, stats.json: the marker last) and
        # then with the dataset files: how an object-store OUT gets each unit once it is whole
        self.committed = committed
        # size of a complete tar kept elsewhere (an object-store OUT) when it is not on local disk
        self.stored_size = stored_size

    # -- what earlier runs completed -------------------------------------------------------------
    def _path(self, name: str, ext: str) -> str:
        return os.path.join(self.shard_dir, f"{name}.{ext}")

    def _load_stats(self, name: str) -> dict | None:
        path = self._path(name, "stats.json")
        try:
            with open(path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def completed_samples(self) -> dict[str, tuple[str, int]]:
        """key -> (fingerprint, size) for every sample in a shard an earlier run completed."""
        known: dict[str, tuple[str, int]] = {}
        if not os.path.isdir(self.shard_dir):
            return known
        for fname in sorted(os.listdir(self.shard_dir)):
            if fname.endswith(".stats.json") and SHARD_FILE.match(fname):
                stats = self._load_stats(fname[: -len(".stats.json")])
                for sample in (stats or {}).get("samples", []):
                    known[sample["key"]] = (sample["fingerprint"], int(sample["size"]))
        return known

    def _is_complete(self, plan: ShardPlan, fingerprints: dict[str, str]) -> bool:
        stats = self._load_stats(plan.name)
        if not stats:
            return False
        samples = stats.get("samples", [])
        expected = [(k, fingerprints[k], s) for k, s in zip(plan.keys, plan.sizes)]
        found = [(s.get("key"), s.get("fingerprint"), s.get("size")) for s in samples]
        tar = self._path(plan.name, "tar")
        if os.path.exists(tar):
            size = os.path.getsize(tar)
        else:
            size = self.stored_size(tar) if self.stored_size is not None else None
        return (
            found == expected
            and size == stats.get("bytes") == plan.tar_bytes
            and os.path.exists(self._path(plan.name, "parquet"))
        )

    # -- the one call ------------------------------------------------------------------------------
    def write(self, entries: Sequence[Entry]) -> WriteResult:
        entries = sorted(entries, key=lambda e: (e.split, e.key))
        by_key: dict[str, Entry] = {}
        for e in entries:
            check_key(e.key)
            check_split(e.split)
            if e.key in by_key:
                raise ValueError(f"duplicate sample key {e.key!r}")
            by_key[e.key] = e
        os.makedirs(self.shard_dir, exist_ok=True)
        known = self.completed_samples()
        sizes = {}
        for e in entries:
            hit = known.get(e.key)
            sizes[e.key] = hit[1] if hit and hit[0] == e.fingerprint else sample_size(e.key, e.build())
        plans = plan_shards([(e.split, e.key, sizes[e.key]) for e in entries],
                            self.max_shard_bytes, self.max_samples)
        result = WriteResult(plans)
        result.removed = self._remove_stale({p.name for p in plans})
        fingerprints = {e.key: e.fingerprint for e in entries}
        for plan in plans:
            if self._is_complete(plan, fingerprints):
                result.skipped.append(plan.name)
            else:
                self._write_shard(plan, by_key)
                result.written.append(plan.name)
                if self.committed is not None:
                    self.committed([self._path(plan.name, ext) for ext in ("tar", "parquet", "stats.json")])
            for position, key in enumerate(plan.keys):
                result.location[key] = (f"{plan.name}.tar", position)
                if by_key[key].release is not None:
                    by_key[key].release()
        self._write_dataset_files(plans)
        if self.committed is not None:
            self.committed([os.path.join(self.shard_dir, "index.parquet"), os.path.join(self.shard_dir, "sizes.json")])
        return result

    def _remove_stale(self, planned: set[str]) -> list[str]:
        """Delete interrupted temp files and shards the current plan does not contain."""
        removed = []
        for fname in sorted(os.listdir(self.shard_dir)):
            match = SHARD_FILE.match(fname)
            if is_temp(fname) or (match and match.group("name") not in planned):
                os.unlink(os.path.join(self.shard_dir, fname))
                removed.append(fname)
        return removed

    def _write_shard(self, plan: ShardPlan, by_key: dict[str, Entry]) -> None:
        # The marker goes first so that a kill from here on leaves the shard "incomplete".
        for ext in ("stats.json", "parquet"):
            if os.path.exists(self._path(plan.name, ext)):
                os.unlink(self._path(plan.name, ext))
        final = self._path(plan.name, "tar")
        rows = []
        with atomic_path(final) as tmp, open(tmp, "wb") as fh:
            with tarfile.open(fileobj=fh, mode="w", format=TAR_FORMAT, encoding="utf-8") as tar:
                for done, (key, planned_size) in enumerate(zip(plan.keys, plan.sizes), start=1):
                    members = sorted_members(by_key[key].build())
                    offset = tar.offset
                    for suffix, source in members:
                        info = tar_info(f"{key}.{suffix}", _source_size(source))
                        if isinstance(source, bytes):
                            tar.addfile(info, io.BytesIO(source))
                        else:
                            with open(source, "rb") as src:
                                tar.addfile(info, src)
                    size = tar.offset - offset
                    if size != planned_size:
                        raise RuntimeError(
                            f"sample {key!r} changed size since planning ({planned_size} -> {size} bytes): "
                            "its build() is not deterministic or its fingerprint missed a change"
                        )
                    rows.append({"key": key, "fingerprint": by_key[key].fingerprint, "offset": offset,
                                 "size": size, "fields": [m[0] for m in members]})
                    if self.progress is not None:
                        self.progress(plan.name, done, len(plan.keys))
            fh.flush()
            os.fsync(fh.fileno())
        nbytes = os.path.getsize(final)
        table = pa.table({
            "key": pa.array([r["key"] for r in rows], pa.string()),
            "offset": pa.array([r["offset"] for r in rows], pa.int64()),
            "size": pa.array([r["size"] for r in rows], pa.int64()),
            "fields": pa.array([r["fields"] for r in rows], pa.list_(pa.string())),
            "fingerprint": pa.array([r["fingerprint"] for r in rows], pa.string()),
        })
        _atomic_parquet(self._path(plan.name, "parquet"), table)
        stats = {"name": plan.name, "tar": f"{plan.name}.tar", "split": plan.split, "index": plan.index,
                 "count": len(rows), "bytes": nbytes, "samples": rows}
        _atomic_write_bytes(self._path(plan.name, "stats.json"), _json_bytes(stats))

    def _write_dataset_files(self, plans: list[ShardPlan]) -> None:
        rows = []
        for plan in plans:
            stats = self._load_stats(plan.name) or {}
            for position, sample in enumerate(stats.get("samples", [])):
                rows.append({"key": sample["key"], "split": plan.split, "shard": f"{plan.name}.tar",
                             "shard_index": position, "offset": sample["offset"], "size": sample["size"],
                             "fields": sample["fields"]})
        table = pa.table({
            "key": pa.array([r["key"] for r in rows], pa.string()),
            "split": pa.array([r["split"] for r in rows], pa.string()),
            "shard": pa.array([r["shard"] for r in rows], pa.string()),
            "shard_index": pa.array([r["shard_index"] for r in rows], pa.int64()),
            "offset": pa.array([r["offset"] for r in rows], pa.int64()),
            "size": pa.array([r["size"] for r in rows], pa.int64()),
            "fields": pa.array([r["fields"] for r in rows], pa.list_(pa.string())),
        })
        _atomic_parquet(os.path.join(self.shard_dir, "index.parquet"), table)
        splits: dict[str, dict] = {}
        for plan in plans:
            s = splits.setdefault(plan.split, {"shards": 0, "samples": 0, "bytes": 0})
            s["shards"] += 1
            s["samples"] += len(plan.keys)
            s["bytes"] += plan.tar_bytes
        sizes = {
            "total": {k: sum(s[k] for s in splits.values()) for k in ("shards", "samples", "bytes")},
            "splits": splits,
            "shards": {f"{p.name}.tar": {"samples": len(p.keys), "bytes": p.tar_bytes} for p in plans},
            "max_shard_bytes": self.max_shard_bytes,
            "max_samples_per_shard": self.max_samples,
        }
        _atomic_write_bytes(os.path.join(self.shard_dir, "sizes.json"), _json_bytes(sizes))

