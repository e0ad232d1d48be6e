"""The bundled sample: real ffmpeg output checked with ffprobe and decoded frames against its truth."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections import Counter

import numpy as np
import pytest

from samplegen.clips import PLAN, generate_sample, pixel_to_direction, plan_clips

N_CLIPS = 15  # the first 15 of the plan: every outcome, every format variant, both distractor kinds
OUTCOMES = {"kept", "dropped:duration", "dropped:silence", "failed"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sample"))
    summary = generate_sample(out, clips=N_CLIPS, seed=0)
    truths = {}
    for name in sorted(os.listdir(os.path.join(out, "truth"))):
        with open(os.path.join(out, "truth", name)) as fh:
            truth = json.load(fh)
        truths[truth["template"]] = truth
    return out, summary, truths


def ffprobe(path: str) -> dict | None:
    cmd = ["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json", path]
    res = subprocess.run(cmd, capture_output=True, text=True)
    return json.loads(res.stdout) if res.returncode == 0 else None


def decode_frame(path: str, index: int) -> np.ndarray:
    cmd = ["ffmpeg", "-v", "error", "-i", path, "-vf", f"select=eq(n\\,{index})", "-fps_mode", "passthrough",
           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(240, 320, 3).astype(int)


def decode_audio(path: str, sr: int = 16000, channels: int = 1) -> np.ndarray:
    cmd = ["ffmpeg", "-v", "error", "-i", path, "-vn", "-ac", str(channels), "-ar", str(sr), "-f", "f32le", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).reshape(-1, channels)


def centroid(frame: np.ndarray, rgb: str) -> tuple[float, float]:
    r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
    mask = (r - g > 100) & (r - b > 100) if rgb == "red" else (b - r > 100) & (b - g > 60)
    ys, xs = np.nonzero(mask)
    assert xs.size > 300, f"{rgb} object not found ({xs.size} px)"
    return xs.mean() + 0.5, ys.mean() + 0.5


def test_plan_has_every_outcome_from_12_clips_and_scales():
    for n in range(12, 40):
        assert {spec.expected for _, spec in plan_clips(n)} == OUTCOMES, n
    ids = [clip_id for clip_id, _ in plan_clips(48)]
    assert len(set(ids)) == 48 and all(re.fullmatch(r"s\d{3}_[a-z0-9_]+", i) for i in ids)
    per_24 = Counter(spec.expected for spec in PLAN)
    assert Counter(spec.expected for _, spec in plan_clips(48)) == {k: 2 * v for k, v in per_24.items()}
    assert per_24 == {"kept": 17, "dropped:duration": 2, "dropped:silence": 2, "failed": 3}


def test_summary_and_manifest(sample):
    out, summary, truths = sample
    assert summary["clips"] == N_CLIPS and summary["out"] == out
    assert set(summary["by_expected"]) == OUTCOMES
    assert sum(summary["by_kind"].values()) == N_CLIPS
    with open(os.path.join(out, "manifest.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["clip_id", "video", "label", "caption", "split"]
    assert len(rows) == N_CLIPS and {r["split"] for r in rows} == {"train", "test"}
    for row in rows:
        assert not os.path.isabs(row["video"]) and os.path.exists(os.path.join(out, row["video"]))
        assert row["caption"] == f"a {row['label']}"


def test_media_matches_what_truth_claims(sample):
    out, _, truths = sample
    checked = 0
    for truth in truths.values():
        if truth["expected"] == "failed":
            continue
        probe = ffprobe(os.path.join(out, truth["video"]))
        video = [s for s in probe["streams"] if s["codec_type"] == "video"]
        audio = [s for s in probe["streams"] if s["codec_type"] == "audio"]
        assert len(video) == 1 and len(audio) == 1, truth["clip_id"]
        assert abs(float(probe["format"]["duration"]) - truth["duration_s"]) < 0.05, truth["clip_id"]
        assert video[0]["codec_name"] == truth["video_codec"] and audio[0]["codec_name"] == truth["audio_codec"]
        assert int(audio[0]["sample_rate"]) == truth["audio_sample_rate"], truth["clip_id"]
        assert int(audio[0]["channels"]) == truth["audio_channels"], truth["clip_id"]
        assert int(video[0]["nb_read_packets"]) == len(truth["times_s"]), truth["clip_id"]
        assert (video[0]["width"], video[0]["height"]) == (truth["width"], truth["height"])
        checked += 1
    assert checked == N_CLIPS - 3
    claimed = {t["template"]: (t["audio_sample_rate"], t["audio_channels"], t["container"]) for t in truths.values()}
    assert claimed["surround51"] == (48000, 6, "mp4")
    assert claimed["mono8k"] == (8000, 1, "mp4")
    assert claimed["stereo"] == (48000, 2, "mp4")
    assert claimed["webm_vp9"] == (48000, 1, "webm")
    assert truths["long"]["duration_s"] > 20 and truths["short"]["duration_s"] < 10


def test_vfr_clip_has_irregular_timestamps_equal_to_truth(sample):
    out, _, truths = sample
    truth = truths["vfr"]
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0",
           os.path.join(out, truth["video"])]
    pts = np.sort([float(v) for v in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()])
    assert np.allclose(pts, truth["times_s"], atol=1e-3)
    steps = np.round(np.diff(pts) * 24).astype(int)
    assert set(steps) == {1, 2} and len(pts) < 11 * 24


def test_truth_trajectories(sample):
    _, _, truths = sample
    for truth in truths.values():
        n = len(truth["times_s"])
        assert n == 0 or abs(truth["times_s"][-1] - truth["duration_s"]) < 0.1
        for key in ("x_px", "y_px", "azimuth_deg", "elevation_deg", "radius_px"):
            assert len(truth[key]) == n, (truth["clip_id"], key)
        az, el = np.array(truth["azimuth_deg"]), np.array(truth["elevation_deg"])
        assert np.all(np.abs(az) <= 60) and np.all(np.abs(el) <= 45)
        exp_az, exp_el = pixel_to_direction(truth["x_px"], truth["y_px"])
        assert np.allclose(az, exp_az, atol=1e-3) and np.allclose(el, exp_el, atol=1e-3)
        if n > 1:  # smooth: no jump above 3 px per frame at 24 fps (VFR steps are two frames)
            assert np.max(np.abs(np.diff(truth["x_px"]))) < 6
    assert truths["zero_bytes"]["times_s"] == []
    lr = np.array(truths["moving_lr"]["azimuth_deg"])
    assert lr[0] > 35 and lr[-1] < -35 and np.all(np.diff(lr) <= 1e-9)  # left to right: azimuth falls
    assert np.ptp(truths["static_left"]["azimuth_deg"]) == 0 and truths["static_left"]["azimuth_deg"][0] > 30
    sweep = truths["distractor_sweep"]
    assert np.ptp(sweep["x_px"]) == 0 and np.ptp(sweep["distractor"]["x_px"]) > 200
    opposite = truths["distractor_opposite"]
    assert np.sign(np.diff(opposite["x_px"])).sum() > 0 > np.sign(np.diff(opposite["distractor"]["x_px"])).sum()
    assert len(opposite["distractor"]["azimuth_deg"]) == len(opposite["times_s"])


def test_broken_files_are_broken(sample):
    out, _, truths = sample
    assert os.path.getsize(os.path.join(out, truths["zero_bytes"]["video"])) == 0
    assert ffprobe(os.path.join(out, truths["zero_bytes"]["video"])) is None
    assert ffprobe(os.path.join(out, truths["truncated"]["video"])) is None
    probe = ffprobe(os.path.join(out, truths["noaudio"]["video"]))
    assert [s["codec_type"] for s in probe["streams"]] == ["video"]
    assert {t["expected"] for t in truths.values() if t["kind"] == "broken"} == {"failed"}


@pytest.mark.parametrize("template,index", [("moving_lr", 40), ("moving_lr", 200), ("distractor_sweep", 100),
                                            ("distractor_opposite", 130), ("webm_vp9", 70), ("vfr", 150)])
def test_decoded_object_is_where_truth_says(sample, template, index):
    out, _, truths = sample
    truth = truths[template]
    frame = decode_frame(os.path.join(out, truth["video"]), index)
    cx, cy = centroid(frame, "red")
    assert abs(cx - truth["x_px"][index]) < 1.0 and abs(cy - truth["y_px"][index]) < 1.0  # measured <= 0.22
    if "distractor" in truth:
        dx, dy = centroid(frame, "blue")
        assert abs(dx - truth["distractor"]["x_px"][index]) < 1.0 and abs(dy - truth["distractor"]["y_px"][index]) < 1.0


def test_source_pulses_with_its_sound_and_the_distractor_does_not(sample):
    out, _, truths = sample
    truth = truths["distractor_opposite"]
    audio = decode_audio(os.path.join(out, truth["video"]), sr=24000)[:, 0]  # 1000 samples per frame
    per_frame = audio[: len(audio) // 1000 * 1000].reshape(-1, 1000)
    rms = np.sqrt(np.mean(per_frame**2, axis=1))[: len(truth["radius_px"])]
    n = len(rms)
    source_r = np.corrcoef(rms, truth["radius_px"][:n])[0, 1]
    distractor_r = np.corrcoef(rms, truth["distractor"]["half_side_px"][:n])[0, 1]
    assert source_r > 0.8 and abs(distractor_r) < 0.3, (source_r, distractor_r)


def test_audio_levels_stereo_pan_and_silence(sample):
    out, _, truths = sample
    stereo = decode_audio(os.path.join(out, truths["stereo"]["video"]), channels=2)
    first, last = stereo[:16000], stereo[-16000:]  # source on the left at the start, right at the end
    assert np.sum(first[:, 0] ** 2) > 4 * np.sum(first[:, 1] ** 2)
    assert np.sum(last[:, 1] ** 2) > 4 * np.sum(last[:, 0] ** 2)

    def silent_fraction(template: str) -> float:
        audio = decode_audio(os.path.join(out, truths[template]["video"]))[:160000, 0]
        frames = audio[: len(audio) // 480 * 480].reshape(-1, 480)
        return float(np.mean(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) < -60))

    assert silent_fraction("silent") >= 0.85
    for template in ("moving_lr", "surround51", "mono8k", "webm_vp9", "distractor_sweep", "static_left"):
        assert silent_fraction(template) < 0.3, template


def test_vggsound_csv_and_media(sample):
    out, _, truths = sample
    with open(os.path.join(out, "vggsound.csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 4
    by_key = {t.get("vggsound_key"): t for t in truths.values()}
    for youtube_id, start, label, split in rows:
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}", youtube_id) and split in ("train", "test")
        key = f"{youtube_id}_{int(start):06d}"
        truth = by_key[key]
        assert truth["expected"] == "kept" and truth["label"] == label
        with open(os.path.join(out, "vggsound_media", key + ".mp4"), "rb") as a, \
                open(os.path.join(out, truth["video"]), "rb") as b:
            assert a.read() == b.read()


def test_same_seed_gives_same_bytes(sample, tmp_path):
    out, _, _ = sample
    again = str(tmp_path / "again")
    generate_sample(again, clips=N_CLIPS, seed=0)

    def tree(root: str) -> dict:
        files = {}
        for folder, _, names in os.walk(root):
            for name in names:
                with open(os.path.join(folder, name), "rb") as fh:
                    files[os.path.relpath(os.path.join(folder, name), root)] = fh.read()
        return files

    first, second = tree(out), tree(again)
    assert sorted(first) == sorted(second) and len(first) == 2 * N_CLIPS + 2 + 4
    for name in first:  # media, truth, manifests: all byte-identical (truth holds no absolute path)
        assert first[name] == second[name], name
    other = str(tmp_path / "other")
    generate_sample(other, clips=1, seed=1)
    assert tree(other)["clips/s000_moving_lr.mp4"] != first["clips/s000_moving_lr.mp4"]
