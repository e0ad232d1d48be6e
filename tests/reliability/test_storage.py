"""OUT and MEDIA_ROOT as fsspec URLs: file:// and a local S3 endpoint (moto's server on loopback).

The same tiny run (4 clips, 2 chunks, 2 shards) is built from plain paths, from file:// URLs and from
S3 (media read from one bucket, the run folder written to another); the dataset bytes must not change.
The S3 build is SIGKILLed once, its local stage directory wiped, and rerun: it pulls OUT back, redoes
only the chunk that was never committed, and leaves no temporary key behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import yaml

from runhelpers import ROOT, SAMPLE_CONFIG
from test_faults import CHEAP, shard_bytes, tiny_media

HERE = os.path.dirname(os.path.abspath(__file__))
# test_faults' cheap settings without the filters (every object-store commit costs round trips):
# 4 clips, 2 chunks per stage, 2 shards
SETTINGS = [item for item in CHEAP if not item.startswith(("run.stages", "run.chunk_size", "stages.shard.max_samples"))] + [
    "run.stages=[ingest, convert, package, shard]", "run.chunk_size=2", "stages.shard.max_samples_per_shard=2"]
DATASET_FILES = ("index.parquet", "sizes.json")


def build_in_process(manifest: str, media_root: str, out: str, **kwargs) -> dict:
    from pipeline.config import load_config
    from pipeline.runner import BuildRequest, build

    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in SETTINGS)}
    config = load_config(SAMPLE_CONFIG, overrides)
    return build(BuildRequest(config=config, input=manifest, out=out, media_root=media_root, executor="local",
                              progress=False, **kwargs))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """(media folder, manifest) of 4 one-second clips."""
    folder = str(tmp_path_factory.mktemp("media"))
    return folder, tiny_media(folder, [f"c{k}" for k in range(4)])


@pytest.fixture(scope="module")
def plain_run(media, tmp_path_factory):
    """(media folder, manifest, dataset bytes) of the run from plain local paths."""
    root = tmp_path_factory.mktemp("plain")
    media, manifest = media
    build_in_process(manifest, media, str(root / "run"))
    expected = shard_bytes(str(root / "run"))
    assert sorted(expected) == ["index.parquet", "sizes.json", "train-000000.tar", "train-000001.tar"]
    return media, manifest, expected


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server in its own process; the AWS_* variables point boto/s3fs at it for the module."""
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "motoserver.py")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    endpoint = server.stdout.readline().strip()
    assert endpoint.startswith("http://127.0.0.1:"), endpoint
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    import fsspec
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield fsspec.filesystem("s3")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3fs.S3FileSystem.clear_instance_cache()
        server.stdin.close()
        server.wait(timeout=60)


def test_file_urls_give_the_plain_run_bytes(plain_run, tmp_path):
    media, manifest, expected = plain_run
    out = tmp_path / "run"
    build_in_process(manifest, f"file://{media}", f"file://{out}")
    assert shard_bytes(str(out)) == expected


@pytest.mark.slow
def test_s3_media_and_out_killed_wiped_and_resumed_give_the_plain_run_bytes(plain_run, s3, tmp_path):
    media, manifest, expected = plain_run
    s3.mkdir("media")
    s3.mkdir("runs")
    s3.put([os.path.join(media, f"c{k}.mp4") for k in range(4)], [f"media/clips/c{k}.mp4" for k in range(4)])
    out, stage = "s3://runs/vgg", tmp_path / "stage"

    # 1: the driver dies right after convert's 2nd (last) chunk marker: on disk, not yet committed to OUT
    cmd = [sys.executable, os.path.join(HERE, "killpoint.py"), "marker:convert:2", "build", "--config", SAMPLE_CONFIG,
           "--input", manifest, "--media-root", "s3://media/clips", "--out", out,
           "--stage-dir", str(stage), "--executor", "local", "--no-progress"]
    for item in SETTINGS:
        cmd += ["--set", item]
    killed = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert sorted(s3.ls("runs/vgg/completions/convert")) == ["runs/vgg/completions/convert/chunk-00000.json"]
    assert len(s3.ls("runs/vgg/completions/ingest")) == 2
    assert os.path.exists(stage / "completions" / "convert" / "chunk-00001.json")  # local only
    s3.pipe("runs/vgg/shards/.tmp-0123abcd-train-000000.tar", b"half an upload")  # what a killed upload leaves
    from pipeline.status import run_status

    status = run_status(out)  # read from OUT itself: what is committed
    assert status["out"] == out and not status["complete"]
    assert [(status["stages"][n]["done"], status["stages"][n]["pending"]) for n in ("ingest", "convert", "shard")] == [
        (2, 0), (1, 1), (0, 2)]

    # 2: the stage directory is lost (another machine, a wiped /tmp): the rerun pulls OUT back and
    #    redoes only convert's uncommitted chunk and the stages after it
    shutil.rmtree(stage)
    stats = build_in_process(manifest, "s3://media/clips", out, stage_dir=str(tmp_path / "stage2"))
    states = {name: s["state"] for name, s in stats["stages"].items()}
    assert states["ingest"] == "done earlier", states
    assert states["convert"].startswith("ran 1/2 chunks"), states
    assert states["package"].startswith("ran 2/2 chunks") and states["shard"].startswith("ran"), states

    # 3: the dataset on S3 is byte-identical to the plain run; no temporary key and no staging is left
    s3.invalidate_cache()
    keys = s3.find("runs/vgg")
    got = {os.path.basename(k): s3.cat_file(k) for k in keys
           if k.startswith("runs/vgg/shards/") and (k.endswith(".tar") or k.endswith(DATASET_FILES))}
    assert got == expected
    assert not [k for k in keys if ".tmp-" in k], keys
    assert not [k for k in keys if k.startswith("runs/vgg/work/package/")]  # released once sharded
    for rel in ("config.yaml", "input.json", "stats.json", "logs/build.log", "manifests/shard/chunk-00001.parquet",
                "completions/shard/chunk-00001.json", "shards/train-000001.stats.json"):
        assert f"runs/vgg/{rel}" in keys, rel

    assert run_status(out)["complete"]

    # 4: the shard stage rerun from yet another empty stage: complete shards stay on OUT, unread and unchanged
    again = build_in_process(manifest, "s3://media/clips", out, stage_dir=str(tmp_path / "stage3"), from_stage="shard",
                             force=True)
    assert again["stages"]["shard"]["state"].startswith("ran 2/2 chunks")
    assert not [f for _, _, files in os.walk(tmp_path / "stage3") for f in files if f.endswith(".tar")]
    s3.invalidate_cache()
    assert {os.path.basename(k): s3.cat_file(k) for k in s3.find("runs/vgg/shards")
            if k.endswith(".tar") or k.endswith(DATASET_FILES)} == expected
    assert not [k for k in s3.find("runs/vgg") if ".tmp-" in k]

    # 5: readers list the shards from sizes.json on S3 and stream them
    from trainer.stream import open_stream, shard_list

    shards = shard_list(f"{out}/shards", split="all")
    assert shards.names == ("train-000000.tar", "train-000001.tar") and shards.samples == 4
    with open_stream(shards.urls[1]) as fh:
        assert fh.read() == expected["train-000001.tar"]


def test_storage_errors_stop_before_any_work(media, s3, tmp_path, monkeypatch):
    """A missing backend, a missing bucket, a missing media prefix, no credentials, an unreachable endpoint:
    each stops the build before anything is written, saying what is wrong and how to fix it."""
    import s3fs

    from stages.base import ConfigError

    media, manifest = media
    stage = tmp_path / "stage"
    cases = [
        ("gs://bucket/run", media, "the gs:// backend is not installed", "pip install gcsfs"),
        ("s3://no-such-bucket/run", media, "the bucket does not exist", "aws s3 mb"),
        (str(tmp_path / "out"), "s3://no-such-bucket/clips", "--media-root s3://no-such-bucket/clips does not exist", ""),
        (str(tmp_path / "out"), media, "--stage-dir applies to a URL --out (s3://…) only", "drop --stage-dir"),
    ]
    for out, media_root, what, fix in cases:
        with pytest.raises(ConfigError) as err:
            build_in_process(manifest, media_root, out, stage_dir=str(stage) if "://" in out or "stage-dir" in what else "")
        assert what in str(err.value) and fix in str(err.value), str(err.value)
    assert not stage.exists() and not (tmp_path / "out").exists()
    stage.mkdir()
    (stage / ".stage-url").write_text("s3://runs/other\n")
    with pytest.raises(ConfigError, match="stages s3://runs/other, not s3://runs/x; give another --stage-dir"):
        build_in_process(manifest, media, "s3://runs/x", stage_dir=str(stage))
    shutil.rmtree(stage)

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(ConfigError, match="no credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        build_in_process(manifest, media, "s3://runs/x", stage_dir=str(stage))
    monkeypatch.undo()

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the message is under test, not botocore's retry policy
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(ConfigError, match=f"cannot reach the storage endpoint \\(endpoint http://127.0.0.1:{port}"):
            build_in_process(manifest, media, "s3://runs/x", stage_dir=str(stage))
        assert not stage.exists()
        # the endpoint going away in the middle of a build: a StorageError naming the cause (the CLI adds how to resume)
        from pipeline.storage import RemoteRun, StorageError

        remote = RemoteRun("s3://runs/x", str(tmp_path / "later"))
        os.makedirs(os.path.join(remote.stage, "completions"))
        open(os.path.join(remote.stage, "completions", "m.json"), "w").write("{}")
        with pytest.raises(StorageError, match="uploading to --out s3://runs/x: cannot reach the storage endpoint"):
            remote.commit([remote.stage])
    finally:
        monkeypatch.undo()
        s3fs.S3FileSystem.clear_instance_cache()


def test_pull_makes_the_stage_agree_with_out(s3, tmp_path):
    """OUT is the truth: a marker only the stage has was never committed (its chunk reruns); files OUT
    has are fetched; a temporary key a killed upload left is removed."""
    from pipeline.storage import RemoteRun

    s3.mkdir("pulls")
    s3.pipe({"pulls/run/manifests/silence/chunk-00000.parquet": b"m" * 10, "pulls/run/completions/silence/chunk-00000.json": b"{}",
             "pulls/run/manifests/.tmp-99-chunk-00001.parquet": b"half"})
    remote = RemoteRun("s3://pulls/run", str(tmp_path / "stage"))
    uncommitted = tmp_path / "stage" / "completions" / "silence" / "chunk-00001.json"
    uncommitted.parent.mkdir(parents=True)
    uncommitted.write_text("{}")
    assert remote.pull() == 2
    assert not uncommitted.exists()
    assert (tmp_path / "stage" / "manifests" / "silence" / "chunk-00000.parquet").read_bytes() == b"m" * 10
    assert (tmp_path / "stage" / "completions" / "silence" / "chunk-00000.json").exists()
    s3.invalidate_cache()
    assert sorted(s3.find("pulls/run")) == ["pulls/run/completions/silence/chunk-00000.json",
                                           "pulls/run/manifests/silence/chunk-00000.parquet"]
