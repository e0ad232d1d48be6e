"""Small synthetic datasets in the shard contract, for tests and benchmarks.

Each clip: a mono source (harmonic tone plus noise bursts, different per clip) rendered with
measured MIT KEMAR HRIRs (direct HRIR filtering) at +60 deg (left) or -60 deg (right), and a
`spatial.npy` that matches it (S_h < 0.5 and S_LR < 0 on the left, mirrored on the right),
written with `output.shards.ShardWriter` exactly like the pipeline's shard stage.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from binauralizer.constants import SAMPLE_RATE as SR
FPS = 8.0


def mono_source(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    f0 = rng.uniform(180, 600)
    tone = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) for k in range(1, 6))
    env = np.zeros(n)
    for start in rng.integers(0, n - SR // 4, size=int(n / SR * 3)):
        length = int(rng.integers(SR // 20, SR // 4))
        env[start : start + length] += np.hanning(length)
    noise = rng.standard_normal(n) * np.minimum(env, 1.0)
    x = 0.6 * tone * (0.5 + 0.5 * np.minimum(env, 1.0)) + 0.4 * noise
    return (x / np.sqrt(np.mean(x**2)) * 0.1).astype(np.float32)


def spatial_track(az_deg: float, frames: int, rng: np.random.Generator) -> np.ndarray:
    side = -np.sign(az_deg)  # S_LR > 0 = right half of the picture = negative azimuth
    s = np.zeros((frames, 5), np.float32)
    s[:, 0] = 0.5 + side * 0.4 + rng.normal(0, 0.02, frames)  # S_h
    s[:, 1] = 0.05 + rng.uniform(0, 0.01, frames)  # S_area
    s[:, 2] = 0.01 + rng.uniform(0, 0.005, frames)  # S_var
    s[:, 3] = side * 0.8 + rng.normal(0, 0.05, frames)  # S_LR
    s[:, 4] = 1.0 + rng.uniform(0, 0.2, frames)  # S_shape
    return s


def video_bytes(az_deg: float, seconds: float, size: int = 64) -> bytes:
    """A tiny mp4: a bright square on the source's side of the picture, pulsing."""
    frames = int(seconds * FPS)
    video = np.zeros((frames, size, size, 3), np.uint8)
    cx = int(size * (0.1 if az_deg > 0 else 0.9))
    for i in range(frames):
        r = 6 + (i % 4)
        video[i, size // 2 - r : size // 2 + r, max(0, cx - r) : cx + r] = 230
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "v.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}",
                        "-r", str(FPS), "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                        "yuv420p", "-threads", "1", "-flags:v", "+bitexact", "-fflags", "+bitexact",
                        "-map_metadata", "-1", path], input=video.tobytes(), check=True)
        with open(path, "rb") as fh:
            return fh.read()


def flac_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    data = np.clip(np.asarray(audio, np.float32), -1, 1)
    sf.write(buf, data.T if data.ndim == 2 else data, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def write_dataset(out_dir: str, n_train: int = 16, n_test: int = 4, seconds: float = 4.0, seed: int = 0,
                  samples_per_shard: int = 4, video: bool = True) -> str:
    """Shards under out_dir (the OUT/shards layout); returns out_dir."""
    from trainer.deps import Entry, ShardWriter, load_hrirs, render_static

    hrirs = load_hrirs("kemar")
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    frames = int(seconds * FPS)
    entries = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        az = 60.0 if i % 2 == 0 else -60.0
        mono = mono_source(rng, n)
        binaural = render_static(mono, az, 0.0, hrirs=hrirs)[:, :n]
        binaural = binaural / max(1.0, float(np.max(np.abs(binaural))) / 0.9)  # one gain for both ears
        traj = np.tile(np.array([[az, 0.0, 1.0]], np.float32), (frames, 1))
        label = ["flute", "violin", "drum", "bell"][i % 4]
        meta = {"clip_id": f"syn{i:04d}", "caption": f"the sound of a {label}", "label": label,
                "spatial_caption": "on the left" if az > 0 else "on the right", "split": split,
                "sample_rate": SR, "duration_s": seconds, "trajectory": {"fps": FPS}}
        members = [("flac", flac_bytes(binaural)), ("mono.flac", flac_bytes(mono)),
                   ("json", json.dumps(meta, sort_keys=True).encode()), ("spatial.npy", npy_bytes(spatial_track(az, frames, rng))),
                   ("traj.npy", npy_bytes(traj))]
        if video:
            members.append(("mp4", video_bytes(az, seconds)))
        entries.append(Entry.from_members(f"syn{i:04d}", split, members))
    ShardWriter(out_dir, max_samples_per_shard=samples_per_shard).write(entries)
    return out_dir


def describe(out_dir: str) -> dict:
    with open(os.path.join(out_dir, "sizes.json")) as fh:
        return json.load(fh)
