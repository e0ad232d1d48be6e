"""Shard streaming: exact epochs, resampling that starves no worker, resume skips, shard lists."""

from __future__ import annotations

import os

import pytest
import torch

from trainer import stream as st


def keys_of(shards: st.ShardList, cfg: st.StreamConfig, rank: int, world: int, workers: int, epoch: int = 0,
            skip: int = 0) -> list[list[str]]:
    """Batches of keys one rank gets through a real DataLoader with `workers` processes."""
    ds = st.ShardStream(shards, cfg, lambda sample, rng: sample["__key__"], list, rank, world, epoch, skip, workers)
    return [list(b) for b in st.loader(ds, workers)]


def test_shard_list_reads_sizes_json_not_a_glob(syn_shards):
    with open(os.path.join(syn_shards, "train-000099.tar"), "wb") as fh:  # a stray half-written shard
        fh.write(b"junk")
    try:
        shards = st.shard_list(syn_shards, "train")
    finally:
        os.unlink(os.path.join(syn_shards, "train-000099.tar"))
    assert shards.names == ("train-000000.tar", "train-000001.tar", "train-000002.tar", "train-000003.tar")
    assert shards.samples == 16
    with pytest.raises(st.StreamError, match="splits present"):
        st.shard_list(syn_shards, "valid")


def test_exact_epoch_two_ranks_two_workers_every_key_once(syn_shards):
    shards = st.shard_list(syn_shards, "train")
    cfg = st.StreamConfig(batch_size=3, shuffle_buffer=5, exact_epoch=True, drop_last=False, seed=1)
    seen = [k for rank in range(2) for batch in keys_of(shards, cfg, rank, 2, 2) for k in batch]
    assert sorted(seen) == [f"syn{i:04d}" for i in range(16)]
    epoch1 = [k for rank in range(2) for batch in keys_of(shards, cfg, rank, 2, 2, epoch=1) for k in batch]
    assert sorted(epoch1) == sorted(seen) and epoch1 != seen  # reshuffled, still every key once


def test_exact_epoch_refused_with_too_few_shards(syn_shards):
    shards = st.shard_list(syn_shards, "test")  # one shard
    with pytest.raises(st.StreamError, match="ranks x workers"):
        st.ShardStream(shards, st.StreamConfig(exact_epoch=True), None, None, 0, 2, num_workers=1)


def test_resampled_single_shard_starves_no_worker(syn_shards):
    shards = st.shard_list(syn_shards, "test")  # 4 samples in 1 shard
    cfg = st.StreamConfig(batch_size=2, shuffle_buffer=3, samples_per_epoch=16, seed=0)
    per_rank = [keys_of(shards, cfg, rank, 2, 2) for rank in range(2)]
    expected = st.steps_per_epoch(shards, cfg, 2, 2)
    assert expected == 4
    for batches in per_rank:  # same count on every rank (DDP never waits), all full, all from the shard
        assert len(batches) == expected and all(len(b) == 2 for b in batches)
        assert {k for b in batches for k in b} <= {f"syn{i:04d}" for i in range(16, 20)}
    assert per_rank[0] != per_rank[1]  # ranks draw differently


def test_resume_skip_continues_the_same_stream(syn_shards):
    shards = st.shard_list(syn_shards, "train")
    cfg = st.StreamConfig(batch_size=2, shuffle_buffer=4, seed=3)
    full = keys_of(shards, cfg, 0, 1, 2, epoch=2)
    assert keys_of(shards, cfg, 0, 1, 2, epoch=2) == full  # deterministic
    for skip in (1, 3):
        assert keys_of(shards, cfg, 0, 1, 2, epoch=2, skip=skip) == full[skip:]
    assert keys_of(shards, cfg, 0, 1, 2, epoch=3) != full  # the epoch is in the seed


def test_pipe_urls(syn_shards):
    shards = st.ShardList(f"pipe:cat {syn_shards}/{{shard}}", "test", ("test-000000.tar",), (4,), "x")
    samples = list(st.tar_samples(iter(shards.urls)))
    assert [s["__key__"] for s in samples] == [f"syn{i:04d}" for i in range(16, 20)]
    assert torch.utils.data.get_worker_info() is None
