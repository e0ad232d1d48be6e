"""shard stage: the members of a sample (exact video window, audio, json) and per-clip failures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import numpy as np
import pytest
import soundfile as sf

import outputruns
from stages.base import ConfigError
from stages.package import PackageStage, video_window
from stages.shard import ShardStage


def read_samples(out: str) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for name in sorted(os.listdir(os.path.join(out, "shards"))):
        if name.endswith(".tar"):
            with tarfile.open(os.path.join(out, "shards", name)) as tar:
                for m in tar.getmembers():
                    key, _, suffix = m.name.partition(".")
                    samples.setdefault(key, {})[suffix] = tar.extractfile(m).read()
    return samples


def gray_frames(mp4: bytes | str, count: int) -> np.ndarray:
    """The first `count` frames as 160x120 grayscale, decoded by ffmpeg."""
    args = ["ffmpeg", "-v", "error", "-i", "pipe:0" if isinstance(mp4, bytes) else mp4, "-frames:v", str(count),
            "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
    raw = subprocess.run(args, input=mp4 if isinstance(mp4, bytes) else None, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(count, 120, 160).astype(float)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    ctx, rows = outputruns.build_run(str(tmp_path_factory.mktemp("run")))
    out = outputruns.pack(ctx, rows)
    return ctx, rows, out, read_samples(ctx.out)


def test_video_window_is_exact_copied_or_encoded(sharded):
    ctx, rows, out, samples = sharded
    assert [o["shard"] for o in out] == ["train-000000.tar", "train-000000.tar", "test-000000.tar", "test-000000.tar"]
    a0, a1 = json.loads(samples["clipA_w0"]["json"]), json.loads(samples["clipA_w1"]["json"])
    assert a0["media"]["video"] == "copy" and a1["media"]["video"] == "encode"  # 0.5 s is not a keyframe
    assert (a1["window"]["start_s"], a1["window"]["end_s"]) == (0.5, 10.5)
    for key in ("clipA_w0", "clipA_w1"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                                "stream=nb_read_frames,duration", "-of", "json", "pipe:0"],
                               input=samples[key]["mp4"], capture_output=True, check=True)
        stream = json.loads(probe.stdout)["streams"][0]
        assert int(stream["nb_read_frames"]) == 240 and float(stream["duration"]) == pytest.approx(10.0, abs=0.05)
    source = gray_frames(rows[0]["video"], 14)
    assert np.array_equal(gray_frames(samples["clipA_w0"]["mp4"], 1)[0], source[0])  # copy: same bits
    first = gray_frames(samples["clipA_w1"]["mp4"], 1)[0]
    errors = [np.abs(first - source[i]).mean() for i in range(14)]
    assert int(np.argmin(errors)) == 12  # 0.5 s at 24 fps


def test_audio_members_and_json(sharded):
    ctx, rows, _, samples = sharded
    audio = np.load(os.path.join(ctx.out, "work", "ingest", "srcA", "audio.npy"))
    mono, sr = sf.read(io.BytesIO(samples["clipA_w1"]["mono.flac"]), dtype="float32")
    assert sr == 16000 and np.abs(mono - audio[8000:168000]).max() <= 1 / 32767
    binaural, _ = sf.read(io.BytesIO(samples["clipA_w1"]["flac"]), dtype="float32")
    assert binaural.shape == (160000, 2)
    meta = json.loads(samples["clipB_w0"]["json"])
    assert meta["caption"] == "The sound of playing violin, fiddle."
    assert meta["spatial_caption"] == "on the left, moving to the right"
    assert meta["quality"]["backend"] == "dsp" and meta["quality"]["dsp_score"] == 7.5
    assert meta["trajectory"]["az_start_deg"] > 40 and meta["trajectory"]["az_end_deg"] < -40
    assert meta["source_id"] == "srcB" and meta["conversion_mode"] == "sh" and meta["duration_s"] == 10.0
    assert np.load(io.BytesIO(samples["clipB_w0"]["spatial.npy"])).dtype == np.float32
    assert json.loads(samples["clipB_w1"]["json"])["spatial_caption"] == ""


def test_failures_become_rows_and_options(sharded, tmp_path):
    ctx, rows = outputruns.copy_run(sharded[0], sharded[1], str(tmp_path / "copy"))
    os.unlink(os.path.join(ctx.out, "work", "convert", "clipA_w1", "binaural.npy"))
    np.save(os.path.join(ctx.out, "work", "convert", "clipB_w1", "binaural.npy"), np.zeros((2, 100), np.float32))
    rows = rows + [{**rows[0], "clip_id": "bad.id"}]
    out = outputruns.pack(ctx, rows, video="none", keep_staging=True)
    assert out[1] == {"_error": f"missing {ctx.out}/work/convert/clipA_w1/binaural.npy: rerun convert"}
    assert out[3] == {"_error": "binaural has 100 samples, the window 160000"}
    assert out[4]["_error"].startswith("sample key 'bad.id' contains '.'")
    assert out[0] == {"shard": "train-000000.tar", "shard_index": 0}
    samples = read_samples(ctx.out)
    assert sorted(samples) == ["clipA_w0", "clipB_w0"]
    assert "mp4" not in samples["clipA_w0"] and json.loads(samples["clipA_w0"]["json"])["media"]["video"] is None
    staged = os.path.join(ctx.out, "work", "package", "clipA_w0")
    assert sorted(os.listdir(staged)) == ["binaural.flac", "meta.json", "mono.flac", "spatial.npy", "staged.json",
                                          "traj.npy"]
    assert not os.path.exists(os.path.join(ctx.out, "work", "package", "clipA_w1"))  # failed: nothing left


def test_window_time_includes_the_input_trim():
    row = {"start": 2.0, "window_start": 16000 * 10, "window_samples": 160000}
    assert video_window(row, 16000) == (12.0, 10.0)
    assert video_window({"window_start": 8000, "window_samples": 160000}, 16000) == (0.5, 10.0)


@pytest.mark.parametrize("stage, settings, key", [
    (PackageStage, {"video": "gif"}, "stages.package.video"),
    (ShardStage, {"max_shard_bytes": 1000}, "stages.shard.max_shard_bytes"),
    (PackageStage, {"flac_subtype": "FLOAT"}, "stages.package.flac_subtype"),
    (PackageStage, {"default_split": "a/b"}, "stages.package.default_split"),
    (ShardStage, {"max_samples_per_shard": 0}, "stages.shard.max_samples_per_shard"),
])
def test_bad_settings_are_config_errors(stage, settings, key):
    with pytest.raises(ConfigError, match=key):
        stage.params_from(settings)
