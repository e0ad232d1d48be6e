"""WebDataset shards: deterministic bytes, atomic and resumable writing, and four real readers."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from manifests.io import is_temp
from output.shards import Entry, ShardWriter, plan_shards, sample_size, tar_size
import outputruns
from outputruns import build_run, copy_run
from stages.validate import ValidateStage

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_stages(ctx, rows, **shard_settings):
    """validate's metrics (no report) then the shard stage; returns (rows with columns, shard output)."""
    validate = ValidateStage(ValidateStage.params_from({}), ctx)
    rows = [{**r, **{k: v for k, v in validate.clip_metrics(r).items() if k in ValidateStage.writes}}
            for r in rows]
    return rows, outputruns.pack(ctx, rows, max_shard_bytes=1 << 20, **shard_settings)


def digests(shard_dir: str, pattern: str = "*.tar") -> dict[str, str]:
    return {os.path.basename(p): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob(os.path.join(shard_dir, pattern)))}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    ctx, rows = build_run(str(tmp_path_factory.mktemp("run")))
    rows, out = run_stages(ctx, rows)
    return ctx, rows, out


# -- layout, determinism, resume ---------------------------------------------------------------------


def test_layout_and_index(sharded):
    ctx, rows, out = sharded
    shard_dir = os.path.join(ctx.out, "shards")
    # ~0.9 MB per sample, 1 MiB shards: one sample per shard, numbered per split without gaps
    assert sorted(digests(shard_dir)) == ["test-000000.tar", "test-000001.tar", "train-000000.tar", "train-000001.tar"]
    assert out == [{"shard": "train-000000.tar", "shard_index": 0}, {"shard": "train-000001.tar", "shard_index": 0},
                   {"shard": "test-000000.tar", "shard_index": 0}, {"shard": "test-000001.tar", "shard_index": 0}]
    index = pq.read_table(os.path.join(shard_dir, "index.parquet")).to_pylist()
    assert [r["key"] for r in index] == ["clipB_w0", "clipB_w1", "clipA_w0", "clipA_w1"]
    sizes = json.load(open(os.path.join(shard_dir, "sizes.json")))
    assert sizes["total"]["samples"] == 4 and sizes["total"]["shards"] == 4
    assert sizes["total"]["bytes"] == sum(os.path.getsize(p) for p in glob.glob(f"{shard_dir}/*.tar"))
    for name in ("train-000000", "test-000001"):
        stats = json.load(open(os.path.join(shard_dir, f"{name}.stats.json")))
        table = pq.read_table(os.path.join(shard_dir, f"{name}.parquet")).to_pylist()
        assert stats["bytes"] == os.path.getsize(os.path.join(shard_dir, f"{name}.tar"))
        assert [t["key"] for t in table] == [s["key"] for s in stats["samples"]]
        with open(os.path.join(shard_dir, f"{name}.tar"), "rb") as fh:
            for entry in table:  # the offset points at the sample's first member header
                fh.seek(entry["offset"])
                header = tarfile.TarInfo.frombuf(fh.read(512), "utf-8", "surrogateescape")
                assert header.name == f"{entry['key']}.{sorted(entry['fields'])[0]}"
                assert entry["fields"] == ["flac", "json", "mono.flac", "mp4", "spatial.npy", "traj.npy"]


def test_tar_headers_carry_nothing_from_the_machine(sharded):
    ctx, _, _ = sharded
    with tarfile.open(os.path.join(ctx.out, "shards", "train-000000.tar")) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [f"clipA_w0.{s}" for s in
                                         ("flac", "json", "mono.flac", "mp4", "spatial.npy", "traj.npy")]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.type) == (0, 0, 0, "", "", 0o644, tarfile.REGTYPE)


def test_byte_identical_rebuild_and_rerun_skips(sharded, tmp_path):
    ctx, rows, _ = sharded
    before = digests(os.path.join(ctx.out, "shards"), "*")
    assert len(before) == 4 * 3 + 2  # per shard .tar, .parquet, .stats.json; index.parquet, sizes.json
    # a fresh copy of the run folder without shards or staging, at another path, every file written later
    fresh_ctx, fresh_rows = copy_run(ctx, rows, str(tmp_path / "copy"))
    for sub in ("shards", "work/package"):
        subprocess.run(["rm", "-rf", os.path.join(fresh_ctx.out, sub)], check=True)
    for folder, _, files in os.walk(tmp_path / "copy"):
        for name in files:
            os.utime(os.path.join(folder, name), ns=(1_900_000_000_000_000_000,) * 2)
    _, packaged = outputruns.pack(fresh_ctx, fresh_rows, return_rows=True, max_shard_bytes=1 << 20)
    assert digests(os.path.join(fresh_ctx.out, "shards"), "*") == before  # every file under shards/, byte for byte
    # a rerun of shard writes nothing: staging was released, every shard is complete
    mtimes = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(fresh_ctx.out, "shards", "*.tar"))}
    assert not os.path.exists(os.path.join(fresh_ctx.out, "work", "package", "clipA_w0"))
    outputruns.shard_only(fresh_ctx, packaged, max_shard_bytes=1 << 20)
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes
    assert not os.path.exists(os.path.join(fresh_ctx.out, "work", "package", "clipA_w0"))  # nothing restaged
    # a new shard plan after the staging was released: shard stages the members again, same bytes
    reshard = outputruns.shard_only(fresh_ctx, packaged, max_shard_bytes=4 << 20)
    assert [o["shard_index"] for o in reshard] == [0, 1, 0, 1]
    direct = outputruns.pack(fresh_ctx, fresh_rows, max_shard_bytes=4 << 20)
    assert direct == reshard


def test_changed_clip_rewrites_only_its_shard_and_bigger_shards_remove_stale(sharded, tmp_path):
    ctx, rows, _ = sharded
    ctx2, rows2 = copy_run(ctx, rows, str(tmp_path / "copy"))
    shard_dir = os.path.join(ctx2.out, "shards")
    before = digests(shard_dir)
    rows2 = [{**r, "label": "cat meowing"} if r["clip_id"] == "clipB_w1" else r for r in rows2]
    out = outputruns.pack(ctx2, rows2, max_shard_bytes=1 << 20)
    after = digests(shard_dir)
    assert [k for k in before if before[k] != after[k]] == ["test-000001.tar"]
    with tarfile.open(os.path.join(shard_dir, "test-000001.tar")) as tar:
        assert json.load(tar.extractfile("clipB_w1.json"))["caption"] == "The sound of a cat meowing."
    assert out[3] == {"shard": "test-000001.tar", "shard_index": 0}
    # 4 MiB shards: one per split; the old -000001 files disappear, nothing is duplicated
    out = outputruns.pack(ctx2, rows2, max_shard_bytes=4 << 20)
    assert sorted(os.listdir(shard_dir)) == sorted(
        [f"{s}-000000.{e}" for s in ("test", "train") for e in ("tar", "parquet", "stats.json")]
        + ["index.parquet", "sizes.json"])
    assert [o["shard_index"] for o in out] == [0, 1, 0, 1]
    with tarfile.open(os.path.join(shard_dir, "train-000000.tar")) as tar:
        assert len(tar.getnames()) == 12


def test_flac_and_npy_bytes_are_deterministic():
    from stages.package import flac_bytes, npy_bytes

    x = np.random.default_rng(0).uniform(-1.2, 1.2, (2, 16000)).astype(np.float32)
    a, clipped = flac_bytes(x, 16000, "PCM_16")
    b, _ = flac_bytes(x.copy(), 16000, "PCM_16")
    assert a == b and clipped == int((np.abs(x) > 1).sum()) > 0
    decoded, sr = sf.read(io.BytesIO(a), dtype="float32")
    assert sr == 16000 and decoded.shape == (16000, 2)
    assert np.abs(decoded.T - np.clip(x, -1, 1)).max() <= 1 / 32767
    assert npy_bytes(x) == npy_bytes(x.copy())


# -- the generic writer: planning and killing --------------------------------------------------------


def synthetic_entries(n: int = 24, seed: int = 0) -> list[Entry]:
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        payload = rng.integers(0, 256, int(rng.integers(20_000, 40_000)), dtype=np.uint8).tobytes()
        entries.append(Entry.from_members(f"s{i:03d}", "train" if i % 3 else "valid",
                                          [("bin", payload), ("json", json.dumps({"i": i}).encode())]))
    return entries


def test_plan_rotates_by_bytes_and_count():
    samples = [("a", f"k{i}", 30_000) for i in range(10)] + [("b", "big", 500_000), ("b", "small", 1_000)]
    plans = plan_shards(samples, max_shard_bytes=100_000, max_samples=2)
    assert [p.name for p in plans] == ["a-000000", "a-000001", "a-000002", "a-000003", "a-000004",
                                       "b-000000", "b-000001"]
    assert all(len(p.keys) <= 2 for p in plans)
    plans = plan_shards(samples, max_shard_bytes=100_000, max_samples=100)
    assert [len(p.keys) for p in plans if p.split == "a"] == [3, 3, 3, 1]
    assert all(p.tar_bytes <= 100_000 for p in plans if p.split == "a")
    assert [p.keys for p in plans if p.split == "b"] == [("big",), ("small",)]  # too big: alone


def test_sample_size_is_exact(tmp_path):
    entries = synthetic_entries(5)
    writer = ShardWriter(str(tmp_path), max_shard_bytes=10 << 20)
    writer.write(entries)
    for split in ("train", "valid"):
        sizes = [sample_size(e.key, e.build()) for e in entries if e.split == split]
        assert os.path.getsize(str(tmp_path / f"{split}-000000.tar")) == tar_size(sizes)
    long_key = Entry.from_members("k" * 150, "train", [("json", b"{}")])  # GNU long-name header
    writer.write([long_key])
    with tarfile.open(str(tmp_path / "train-000000.tar")) as tar:
        assert tar.getnames() == ["k" * 150 + ".json"]


KILL_SCRIPT = """
import json, os, sys, time
sys.path[:0] = [{tests!r}, {tests_root!r}]
from test_shards import synthetic_entries
from output.shards import ShardWriter

def progress(name, done, total):
    with open(sys.argv[2], "a") as fh:
        fh.write(f"{{name}} {{done}} {{total}}\\n")
    time.sleep(0.05)

ShardWriter(sys.argv[1], max_shard_bytes=100_000, progress=progress).write(synthetic_entries())
"""


def test_kill_during_writing_then_rerun(tmp_path):
    reference = tmp_path / "reference"
    ShardWriter(str(reference), max_shard_bytes=100_000).write(synthetic_entries())
    expected = digests(str(reference))
    assert len(expected) >= 6

    killed, log = tmp_path / "killed", tmp_path / "progress.log"
    here = os.path.dirname(os.path.abspath(__file__))
    script = KILL_SCRIPT.format(tests=here, tests_root=os.path.dirname(here))
    proc = subprocess.Popen([sys.executable, "-c", script, str(killed), str(log)], cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until the third shard of "train" is half written
        lines = log.read_text().splitlines() if log.exists() else []
        if any(ln.startswith("train-000002 1 ") for ln in lines):
            break
        time.sleep(0.01)
    else:
        proc.kill()
        pytest.fail("the writer never reached train-000002")
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    left = sorted(os.listdir(killed))
    temps = [f for f in left if is_temp(f)]  # the half-written shard is only under its temp name
    assert len(temps) == 1 and temps[0].startswith(".tmp-") and temps[0].endswith("-train-000002.tar")
    assert "train-000002.tar" not in left and "train-000002.stats.json" not in left
    for path in glob.glob(str(killed / "*.tar")):  # every visible tar is complete and whole
        name = os.path.basename(path)
        assert os.path.exists(str(killed / name.replace(".tar", ".stats.json")))
        assert digests(str(killed))[name] == expected[name]

    result = ShardWriter(str(killed), max_shard_bytes=100_000).write(synthetic_entries())
    assert digests(str(killed)) == expected
    assert not [f for f in os.listdir(killed) if is_temp(f)]
    assert temps[0] in result.removed
    assert result.skipped == ["train-000000", "train-000001"]  # completed before the kill: kept
    assert result.written[0] == "train-000002" and "valid-000000" in result.written
    names = sorted(digests(str(killed)))
    for split in ("train", "valid"):
        numbers = [int(n[len(split) + 1 : -4]) for n in names if n.startswith(split + "-")]
        assert numbers == list(range(len(numbers)))  # no gaps, no duplicates


# -- four real readers ----------------------------------------------------------------------------------


def binaural_of(ctx, key):
    return np.load(os.path.join(ctx.out, "work", "convert", key, "binaural.npy"))


def test_webdataset_reads_the_shards(sharded):
    import webdataset as wds

    ctx, rows, _ = sharded
    urls = sorted(glob.glob(os.path.join(ctx.out, "shards", "*.tar")))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert [s["__key__"] for s in samples] == ["clipB_w0", "clipB_w1", "clipA_w0", "clipA_w1"]
    for s in samples:
        audio, sr = sf.read(io.BytesIO(s["flac"]), dtype="float32")
        assert sr == 16000 and audio.shape == (160000, 2)
        assert np.abs(audio.T - binaural_of(ctx, s["__key__"])).max() < 1 / 32767 + 1e-6
        mono, _ = sf.read(io.BytesIO(s["mono.flac"]), dtype="float32")
        assert mono.shape == (160000,)
        assert s["json"]["clip_id"] == s["__key__"] and s["json"]["duration_s"] == 10.0
        assert s["mp4"][4:8] == b"ftyp"
    by_key = {s["__key__"]: s for s in samples}
    assert by_key["clipB_w0"]["traj.npy"].shape == (80, 3) and by_key["clipB_w0"]["spatial.npy"].shape == (80, 5)
    assert by_key["clipB_w1"]["traj.npy"].shape == (0, 3)  # no localisation: empty, same member set
    assert by_key["clipB_w0"]["json"]["spatial_caption"] == "on the left, moving to the right"
    assert by_key["clipA_w1"]["json"]["spatial_caption"] == "on the right"
    assert by_key["clipA_w0"]["json"]["caption"] == "The sound of a dog barking."
    assert by_key["clipA_w0"]["json"]["spatial_metrics"]["lateral_agree"] == 1.0
    assert by_key["clipB_w1"]["json"]["spatial_metrics"]["lateral_agree"] is None


def test_tar_lists_and_extracts(sharded, tmp_path):
    ctx, _, _ = sharded
    tar = os.path.join(ctx.out, "shards", "test-000000.tar")
    listing = subprocess.run(["tar", "-tvf", tar], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(listing) == 6
    assert all(line.startswith("-rw-r--r-- 0/0") and "1970-01-01 00:00" in line for line in listing)
    subprocess.run(["tar", "-xf", tar, "-C", str(tmp_path)], check=True)
    meta = json.loads((tmp_path / "clipB_w0.json").read_text())
    assert meta["label"] == "playing violin, fiddle" and meta["split"] == "test"
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=nb_read_frames,codec_type", "-of", "json", str(tmp_path / "clipB_w0.mp4")],
                           capture_output=True, text=True, check=True)
    streams = json.loads(probe.stdout)["streams"]
    assert [s["codec_type"] for s in streams] == ["video"] and int(streams[0]["nb_read_frames"]) == 240


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_reads_the_shards(sharded, ray_session):
    ctx, _, _ = sharded
    ds = ray_session.data.read_webdataset(os.path.join(ctx.out, "shards"), file_extensions=["tar"])
    rows = sorted(ds.take_all(), key=lambda r: r["__key__"])
    assert [r["__key__"] for r in rows] == ["clipA_w0", "clipA_w1", "clipB_w0", "clipB_w1"]
    audio, sr = sf.read(io.BytesIO(rows[0]["flac"]), dtype="float32")
    assert sr == 16000 and np.abs(audio.T - binaural_of(ctx, "clipA_w0")).max() < 1 / 32767 + 1e-6
    assert rows[2]["json"]["spatial_caption"] == "on the left, moving to the right"
    assert np.asarray(rows[2]["traj.npy"]).shape == (80, 3)


def test_hugging_face_datasets_reads_the_shards(sharded, tmp_path):
    from datasets import load_dataset

    from output.sample_schema import hf_features

    ctx, _, _ = sharded
    files = {s: sorted(glob.glob(os.path.join(ctx.out, "shards", f"{s}-*.tar"))) for s in ("train", "test")}
    ds = load_dataset("webdataset", data_files=files, features=hf_features(), cache_dir=str(tmp_path))
    assert ds["train"].num_rows == 2 and ds["test"].num_rows == 2
    first = ds["test"][0]
    assert first["__key__"] == "clipB_w0"
    assert first["json"]["spatial_caption"] == "on the left, moving to the right"
    assert first["json"]["quality"]["backend"] == "dsp" and first["json"]["quality"]["aes_pq"] is None
    assert np.asarray(first["traj.npy"]).shape == (80, 3)
    audio, _ = sf.read(io.BytesIO(first["flac"]), dtype="float32")
    assert np.abs(audio.T - binaural_of(ctx, "clipB_w0")).max() < 1 / 32767 + 1e-6
    assert ds["test"][1]["traj.npy"] == []
