"""Training on synthetic KEMAR shards: loss, exact resume after SIGKILL, sampling, the spatial condition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import TINY_STEPS, tiny_overrides
from trainer import features as ft
from trainer.codec import n_frames
from trainer.deps import metrics
from trainer.generate import Generator, sample_video
from trainer.stream import shard_list, tar_samples

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def losses(out: str) -> list[float]:
    with open(os.path.join(out, "log.jsonl")) as fh:
        return [json.loads(line)["loss"] for line in fh]


def test_tiny_loss_decreases(tiny_run):
    curve = losses(tiny_run["out"])
    assert len(curve) == TINY_STEPS
    first, last = np.mean(curve[:15]), np.mean(curve[-15:])
    print(f"tiny loss: first 15 steps {first:.3f}, last 15 steps {last:.3f}")
    assert last < first - 0.2


def _train_cmd(features_dir: str, out: str) -> list[str]:
    sets = {**tiny_overrides(), "checkpoint_every": 10}
    return [sys.executable, "-m", "trainer", "train", "--data", features_dir, "--out", out, "--config", "tiny",
            "--no-progress", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], "--steps", "40"]


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_same_loss_curve(features_dir, tiny_run, tmp_path):
    out = str(tmp_path / "killed")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(_train_cmd(features_dir, out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpts = os.path.join(out, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(ckpts) and any(f.endswith("_step00000020.pt") and not f.startswith(".tmp")
                                        for f in os.listdir(ckpts)):  # complete, not the writer's temp file
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = len(losses(out))
    assert 20 <= killed_at < 40
    done = subprocess.run(_train_cmd(features_dir, out), cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["resumed_from"].endswith("_step00000030.pt") or summary["resumed_from"].endswith("_step00000020.pt")
    # Same identity as the session's uninterrupted run (checkpoint cadence is not part of it).
    assert summary["identity"] == tiny_run["identity"]
    assert losses(out) == losses(tiny_run["out"])[:40]



def test_mirrored_spatial_condition_flips_the_ild(tiny_run, features_dir):
    gen = Generator(tiny_run["checkpoint"])
    feats = [ft.decode_members(s) for s in tar_samples(iter(shard_list(features_dir, "test").urls))]
    n = feats[0]["meta"]["n_samples"]
    mean_ild = {}
    for mirrored in (False, True):
        ilds = []
        for f in feats:
            s = f["spatial"].copy()
            if mirrored:
                s[:, 3], s[:, 0] = -s[:, 3], 1.0 - s[:, 0]
            audio = gen.generate(gen.conditions({**f, "spatial": s}, n_frames(n)), n, steps=10, cfg=3.0)[0]
            ilds.append(metrics.broadband_ild_db(audio) * np.sign(f["traj"][0, 0]))  # + = louder on the source side
        mean_ild[mirrored] = float(np.mean(ilds))
    print(f"mean ILD towards the source: {mean_ild[False]:+.2f} dB, mirrored condition {mean_ild[True]:+.2f} dB")
    assert mean_ild[False] > 1.0 and mean_ild[True] < -1.0


def test_sample_writes_two_channels_of_the_right_length(tiny_run, tmp_path):
    from trainer.synthetic import video_bytes

    video = tmp_path / "v.mp4"
    video.write_bytes(video_bytes(60.0, 2.0))
    out = sample_video(tiny_run["checkpoint"], str(video), str(tmp_path / "gen" / "v"), steps=4)
    audio, sr = sf.read(out["wav"], always_2d=True)
    assert sr == 16000 and audio.shape == (32000, 2) and out["spatial_source"] == "localiser:motion"
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,channels", "-of", "json",
                            out["mp4"]], capture_output=True, text=True, check=True)
    streams = json.loads(probe.stdout)["streams"]
    assert {s["codec_type"] for s in streams} == {"video", "audio"}
    assert [s["channels"] for s in streams if s["codec_type"] == "audio"] == [2]
    spatial = tmp_path / "s.npy"
    np.save(spatial, np.tile(np.array([[0.9, 0.05, 0.01, 0.8, 1.0]], np.float32), (16, 1)))
    again = sample_video(tiny_run["checkpoint"], str(video), str(tmp_path / "gen" / "w"), spatial=str(spatial),
                         seconds=1.0, steps=4)
    assert sf.read(again["wav"], always_2d=True)[0].shape == (16000, 2)
