"""ingest on real files made by ffmpeg: downmix, resampling, frame sampling, and bad input."""

import subprocess

import numpy as np
import pytest

from stages.base import RunContext
from stages.clipdata import load_audio, load_frames
from stages.ingest import IngestStage


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_stage(tmp_path, **params):
    stage = IngestStage(IngestStage.params_from(params), RunContext(out=str(tmp_path / "run")))
    stage.setup()
    return stage


def ingest(stage, clip_id, path):
    row = {"clip_id": clip_id, "video": str(path), "start": None, "end": None}
    return {**row, **stage.measure([row])[0]}


VIDEO = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=3"]


def test_stereo_downmix_averages_channels(tmp_path):
    path = tmp_path / "st.mp4"
    # left = sine, right = the same sine inverted: a true average cancels to silence
    ffmpeg(*VIDEO, "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:duration=3",
           "-filter_complex", "[1:a]asplit[a][b];[b]volume=-1[bi];[a][bi]join=inputs=2:channel_layout=stereo[s]",
           "-map", "0:v", "-map", "[s]", "-c:a", "pcm_s16le", "-shortest", str(tmp_path / "st.mkv"))
    stage = make_stage(tmp_path)
    row = ingest(stage, "st", tmp_path / "st.mkv")
    assert row["audio_channels_in"] == 2 and row["audio_sr_in"] == 48000
    audio = load_audio(stage.ctx, row)
    assert audio.dtype == np.float32 and abs(audio.size - 48000) <= 16  # 3 s at 16 kHz
    assert np.sqrt(np.mean(audio**2)) < 1e-3


def test_surround_51_keeps_the_centre_channel(tmp_path):
    path = tmp_path / "s51.mp4"
    ffmpeg(*VIDEO, "-f", "lavfi", "-i", "sine=f=1000:sample_rate=48000:duration=3",
           "-filter_complex", "[1:a]pan=5.1|FC=c0[s]", "-map", "0:v", "-map", "[s]", "-c:v", "libx264",
           "-c:a", "aac", "-shortest", str(path))
    stage = make_stage(tmp_path)
    row = ingest(stage, "s51", path)
    assert row["audio_channels_in"] == 6
    audio = load_audio(stage.ctx, row)
    spectrum = np.abs(np.fft.rfft(audio[4000:36000]))
    peak_hz = np.argmax(spectrum) * 16000 / 32000
    assert abs(peak_hz - 1000) < 2 and np.sqrt(np.mean(audio**2)) > 0.05


def test_8khz_audio_resampled_and_frames_at_8fps_short_side_224(tmp_path):
    path = tmp_path / "p.mp4"  # portrait 120x160 video, 8 kHz mono audio
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=120x160:rate=30:duration=4", "-f", "lavfi", "-i",
           "sine=f=300:sample_rate=8000:duration=4", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(path))
    stage = make_stage(tmp_path)
    row = ingest(stage, "p", path)
    assert row["audio_sr_in"] == 8000 and abs(row["n_samples"] - 64000) <= 2048  # AAC padding at 8 kHz
    frames = load_frames(stage.ctx, row)
    assert frames.shape[1:] == (298, 224, 3) and frames.dtype == np.uint8
    assert row["n_frames"] == 32 and (row["frame_w"], row["frame_h"]) == (224, 298)


def test_start_end_cut_the_decode(tmp_path):
    path = tmp_path / "long.mp4"
    ffmpeg(*VIDEO[:3], "testsrc=size=160x120:rate=25:duration=8", "-f", "lavfi", "-i",
           "sine=f=300:sample_rate=16000:duration=8", "-c:v", "libx264", "-c:a", "pcm_s16le", str(tmp_path / "long.mkv"))
    stage = make_stage(tmp_path)
    row = {"clip_id": "w", "video": str(tmp_path / "long.mkv"), "start": 2.0, "end": 5.0}
    m = stage.measure([row])[0]
    assert m["n_samples"] == 48000 and m["n_frames"] == 24


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "file not found"),
        (b"", "empty file (0 bytes)"),
        (b"\x00garbage" * 100, "cannot read container"),
    ],
)
def test_unreadable_inputs_become_reasons(tmp_path, content, expected):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    stage = make_stage(tmp_path)
    m = stage.measure([{"clip_id": "bad", "video": str(path), "start": None, "end": None}])[0]
    assert m["_error"].startswith(expected)


def test_no_audio_and_audio_only(tmp_path):
    ffmpeg(*VIDEO, "-c:v", "libx264", str(tmp_path / "v.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:duration=3", str(tmp_path / "a.wav"))
    stage = make_stage(tmp_path)
    assert stage.measure([{"clip_id": "v", "video": str(tmp_path / "v.mp4")}])[0]["_error"] == "no audio stream"
    assert stage.measure([{"clip_id": "a", "video": str(tmp_path / "a.wav")}])[0]["_error"] == "no video stream"
    audio_only = make_stage(tmp_path, require_video=False)
    m = audio_only.measure([{"clip_id": "a", "video": str(tmp_path / "a.wav")}])[0]
    assert m["n_samples"] == 48000 and m["n_frames"] == 0


def test_jpeg_and_raw_frames_agree(tmp_path):
    path = tmp_path / "c.mp4"
    ffmpeg(*VIDEO, "-f", "lavfi", "-i", "sine=f=300:duration=3", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(path))
    jpeg = make_stage(tmp_path / "j")
    raw = make_stage(tmp_path / "r", frame_format="raw")
    a = load_frames(jpeg.ctx, ingest(jpeg, "c", path))
    b = load_frames(raw.ctx, ingest(raw, "c", path))
    assert a.shape == b.shape == (24, 224, 298, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0
    folder = tmp_path / "j" / "run" / "work" / "ingest" / "c"
    stored = (folder / "frames_jpeg.npy").stat().st_size
    assert stored < b.nbytes / 5
