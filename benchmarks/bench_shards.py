"""Shard writing throughput against plain tarfile on the same bytes, and webdataset read-back.

`run()` writes N synthetic samples (FLAC-sized random payloads + a json) twice in the same process:
with ShardWriter (planning, deterministic headers, fsync, atomic rename, parquet + stats) and with
a plain `tarfile` loop; the ratio is the price of determinism and crash safety. It then reads the
shards back with webdataset (json decoded) and times the reference-free metrics on a 10 s clip.
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import tarfile
import tempfile
import time

import numpy as np


def _payloads(n: int, size: int, seed: int = 0) -> list[tuple[str, list[tuple[str, bytes]]]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        members = [("flac", rng.integers(0, 256, size, dtype=np.uint8).tobytes()),
                   ("json", json.dumps({"i": i, "label": "dog barking"}).encode())]
        out.append((f"clip{i:06d}", members))
    return out


def run(samples: int = 96, sample_bytes: int = 700_000, shard_bytes: int = 16 << 20) -> dict:
    from output.shards import Entry, ShardWriter

    payloads = _payloads(samples, sample_bytes)
    total_mb = sum(len(b) for _, members in payloads for _, b in members) / 1e6
    root = tempfile.mkdtemp(prefix="bench_shards_")
    try:
        entries = [Entry.from_members(key, "train", members) for key, members in payloads]
        warm = [Entry.from_members("warm", "train", [("json", b"{}")])]  # imports (pyarrow, pandas) off the clock
        ShardWriter(os.path.join(root, "warm"), max_shard_bytes=shard_bytes).write(warm)
        start = time.perf_counter()
        ShardWriter(os.path.join(root, "shards"), max_shard_bytes=shard_bytes).write(entries)
        ours = time.perf_counter() - start

        start = time.perf_counter()
        with tarfile.open(os.path.join(root, "plain.tar"), "w") as tar:
            for key, members in payloads:
                for suffix, data in members:
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        plain = time.perf_counter() - start

        import webdataset as wds

        urls = sorted(glob.glob(os.path.join(root, "shards", "*.tar")))
        start = time.perf_counter()
        count = sum(1 for s in wds.WebDataset(urls, shardshuffle=False).decode() if s["json"]["i"] >= 0)
        read = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)

    from binauralizer.metrics import clip_metrics

    x = np.random.default_rng(1).standard_normal((2, 160000))
    clip_metrics(x)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        clip_metrics(x, traj=np.zeros((80, 3)), traj_fps=8)
        times.append(time.perf_counter() - t)
    return {
        "samples": samples,
        "payload_mb": round(total_mb, 1),
        "shard_writer_mb_s": round(total_mb / ours, 1),
        "plain_tarfile_mb_s": round(total_mb / plain, 1),
        "writer_vs_plain_ratio": round(plain / ours, 3),
        "webdataset_read_samples_s": round(count / read, 1),
        "metrics_ms_per_10s_clip": round(1e3 * min(times), 1),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
