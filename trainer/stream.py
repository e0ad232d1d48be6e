"""Streaming WebDataset shards to training ranks and their loader workers.

Shard lists come from the dataset's `sizes.json` (or `index.parquet`), never from a glob: a
folder being written holds half-written shards. URLs may be local paths, fsspec URLs
(`s3://bucket/ds/shards`, `gs://...`; any scheme fsspec knows) or `pipe:COMMAND` roots.

Two ways to split the shards (the global RANK/WORLD_SIZE first, then the DataLoader worker):

- resampled (default): every (rank, worker) draws shards with replacement from the whole list,
  with a seed made of (seed, epoch, rank, worker), and yields exactly the same number of batches.
  No rank runs dry and hangs DDP, one shard feeds any number of workers, and the epoch is part
  of the seed (a resampler's own counter restarts in non-persistent workers).
- exact (`--exact-epoch`): shards split `[rank::world][worker::workers]` after a shuffle shared by
  all ranks; every key once per epoch. Refused when there are fewer shards than ranks x workers.

Resume: `skip_batches` global batches are dropped before decoding; with resampling every worker
yields the same count, so the DataLoader's round robin tells each worker how many of its own to
drop and the resumed stream is the one an uninterrupted job would have seen.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

WDS_SCHEMES = ("pipe:", "http://", "https://", "gs://", "ais://", "hf://", "sftp://", "scp://", "ftps://")


class StreamError(ValueError):
    pass


# -- shard lists -------------------------------------------------------------------------------


def join_url(root: str, name: str) -> str:
    if root.startswith("pipe:"):
        return root.replace("{shard}", name) if "{shard}" in root else f"{root.rstrip('/')}/{name}"
    if "://" in root:
        return f"{root.rstrip('/')}/{name}"
    return os.path.join(root, name)


def read_bytes(url: str) -> bytes:
    if "://" in url and not url.startswith("file://"):
        import fsspec

        with fsspec.open(url, "rb") as fh:
            return fh.read()
    with open(url.removeprefix("file://"), "rb") as fh:
        return fh.read()


def open_stream(url: str):
    """A binary stream for a shard: local file, `pipe:` / http via webdataset, else fsspec."""
    if url.startswith(WDS_SCHEMES):
        import webdataset as wds

        return wds.gopen(url, "rb")
    if "://" in url and not url.startswith("file://"):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url.removeprefix("file://"), "rb")


@dataclass(frozen=True)
class ShardList:
    root: str
    split: str
    names: tuple[str, ...]
    counts: tuple[int, ...]
    digest: str  # of sizes.json: part of checkpoint identities

    @property
    def urls(self) -> list[str]:
        return [join_url(self.root, n) for n in self.names]

    @property
    def samples(self) -> int:
        return int(sum(self.counts))


def shard_list(root: str, split: str = "train") -> ShardList:
    """Shards of one split (`all` = every split) from ROOT/sizes.json, else ROOT/index.parquet."""
    from trainer.deps import torchtrain

    meta_root = root
    if root.startswith("pipe:"):
        raise StreamError("pipe: roots need a local or fsspec copy of sizes.json: pass --index DIR")
    try:
        raw = read_bytes(join_url(meta_root, "sizes.json"))
        sizes = json.loads(raw)
        shards = {name: int(info["samples"]) for name, info in sorted(sizes.get("shards", {}).items())}
    except (OSError, ValueError, KeyError):
        try:
            import pyarrow.parquet as pq

            raw = read_bytes(join_url(meta_root, "index.parquet"))
            table = pq.read_table(io.BytesIO(raw)).to_pydict()
        except (OSError, ValueError) as exc:
            raise StreamError(f"{root}: neither sizes.json nor index.parquet is readable ({exc}); "
                              "is this an OUT/shards (or OUT/features) folder of a finished run?") from None
        shards = {}
        for name in table["shard"]:
            shards[name] = shards.get(name, 0) + 1
        shards = dict(sorted(shards.items()))
    chosen = {n: c for n, c in shards.items() if split == "all" or n.startswith(f"{split}-")}
    if not chosen:
        splits = sorted({n.rsplit("-", 1)[0] for n in shards})
        raise StreamError(f"{root}: no shards of split {split!r}; splits present: {splits}")
    return ShardList(root, split, tuple(chosen), tuple(chosen.values()), torchtrain.data_digest([raw]))


# -- samples from tars -------------------------------------------------------------------------


def tar_samples(urls: Iterator[str]) -> Iterator[dict]:
    """Samples ({'__key__', '__url__', suffix: bytes}) of the shards in order."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    def opened():
        for url in urls:
            yield {"url": url, "stream": open_stream(url)}

    yield from group_by_keys(tar_file_expander(opened()))


def shuffled(samples: Iterator, bufsize: int, rng: random.Random) -> Iterator:
    """A shuffle buffer (random element out, new one in); deterministic for a seeded rng."""
    if bufsize <= 1:
        yield from samples
        return
    buf = []
    for sample in samples:
        buf.append(sample)
        if len(buf) >= bufsize:
            i = rng.randrange(len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    while buf:
        i = rng.randrange(len(buf))
        buf[i], buf[-1] = buf[-1], buf[i]
        yield buf.pop()


def seed_of(*parts) -> int:
    return zlib.crc32(json.dumps([str(p) for p in parts]).encode())


@dataclass
class StreamConfig:
    batch_size: int = 8
    shuffle_buffer: int = 64
    exact_epoch: bool = False
    samples_per_epoch: int | None = None  # resampled mode; default: the split's sample count
    seed: int = 0
    drop_last: bool = True  # resampled mode always yields full batches


def check_exact(n_shards: int, world: int, workers: int) -> None:
    if n_shards < world * max(1, workers):
        raise StreamError(f"--exact-epoch needs at least ranks x workers = {world} x {max(1, workers)} shards, "
                          f"the split has {n_shards}: use fewer loader workers, reshard smaller "
                          "(stages.shard.max_shard_bytes), or drop --exact-epoch (resampled shards)")


def batches_per_worker(shards: ShardList, cfg: StreamConfig, world: int, workers: int) -> int:
    total = cfg.samples_per_epoch or shards.samples
    per_rank = math.ceil(total / world)
    return max(1, math.ceil(per_rank / (max(1, workers) * cfg.batch_size)))


def steps_per_epoch(shards: ShardList, cfg: StreamConfig, world: int, workers: int, epoch: int = 0) -> int:
    """Batches each rank sees per epoch (the same on every rank, so DDP never waits forever).

    Exact epochs give ranks different sample counts: every rank stops at the smallest, and the
    few samples past it wait for the next epoch's reshuffle."""
    workers = max(1, workers)
    if not cfg.exact_epoch:
        return batches_per_worker(shards, cfg, world, workers) * workers
    order = exact_order(shards, cfg.seed, epoch)
    per_rank = []
    for rank in range(world):
        mine = order[rank::world]
        n = 0
        for w in range(workers):
            count = sum(shards.counts[i] for i in mine[w::workers])
            n += count // cfg.batch_size if cfg.drop_last else math.ceil(count / cfg.batch_size)
        per_rank.append(n)
    return min(per_rank)


def exact_order(shards: ShardList, seed: int, epoch: int) -> list[int]:
    order = list(range(len(shards.names)))
    random.Random(seed_of("order", seed, epoch)).shuffle(order)
    return order


class ShardStream(torch.utils.data.IterableDataset):
    """Batches for one rank: `decode(sample, rng) -> dict` then `collate(list) -> batch`."""

    def __init__(self, shards: ShardList, cfg: StreamConfig, decode: Callable, collate: Callable,
                 rank: int = 0, world: int = 1, epoch: int = 0, skip_batches: int = 0, num_workers: int = 0):
        self.shards, self.cfg, self.decode, self.collate = shards, cfg, decode, collate
        self.rank, self.world, self.epoch, self.skip = rank, world, epoch, int(skip_batches)
        self.num_workers = max(1, num_workers)
        if cfg.exact_epoch:
            check_exact(len(shards.names), world, self.num_workers)

    def _worker(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def sample_urls(self, worker: int, workers: int) -> Iterator[str]:
        urls = self.shards.urls
        if self.cfg.exact_epoch:
            order = exact_order(self.shards, self.cfg.seed, self.epoch)
            yield from (urls[i] for i in order[self.rank :: self.world][worker::workers])
            return
        rng = random.Random(seed_of("shards", self.cfg.seed, self.epoch, self.rank, worker))
        while True:
            yield urls[rng.randrange(len(urls))]

    def raw_samples(self, worker: int, workers: int) -> Iterator[dict]:
        rng = random.Random(seed_of("buffer", self.cfg.seed, self.epoch, self.rank, worker))
        return shuffled(tar_samples(self.sample_urls(worker, workers)), self.cfg.shuffle_buffer, rng)

    def __iter__(self):
        worker, workers = self._worker()
        if self.cfg.exact_epoch:
            n_batches, drop = None, 0  # resume in exact mode: the trainer discards batches itself
        else:
            # The DataLoader always starts its round robin at worker 0: after `skip` global batches the
            # next one belongs to stream (skip % workers), so worker w plays stream (w + skip) % workers.
            worker = (worker + self.skip) % workers
            n_batches = batches_per_worker(self.shards, self.cfg, self.world, workers)
            drop = -(-(self.skip - worker) // workers) if self.skip > worker else 0
        samples = self.raw_samples(worker, workers)
        produced = 0
        batch: list = []
        for sample in samples:
            if produced < drop:  # skipped before decoding
                batch.append(None)
                if len(batch) == self.cfg.batch_size:
                    produced, batch = produced + 1, []
                continue
            rng = np.random.default_rng(seed_of("sample", self.cfg.seed, self.epoch, sample["__key__"]))
            batch.append(self.decode(sample, rng))
            if len(batch) == self.cfg.batch_size:
                yield self.collate(batch)
                produced, batch = produced + 1, []
                if n_batches is not None and produced >= n_batches:
                    return
        if batch and not self.cfg.drop_last and batch[0] is not None:
            yield self.collate(batch)


def loader(stream: ShardStream, num_workers: int) -> torch.utils.data.DataLoader:
    """One DataLoader per epoch (workers are not persistent: the epoch is in every seed)."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers,
                                       persistent_workers=False, prefetch_factor=2 if num_workers else None)
