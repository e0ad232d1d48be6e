"""Score a localiser against the bundled sample's ground-truth trajectories.

Shared by the tests and benchmarks/bench_localize.py. Decoding mirrors what `ingest` hands a
stage (frames at 8 fps with a 224 px short side, 16 kHz mono float32 audio), with ffmpeg.

Scores per clip:
  spearman      rank correlation of estimated and true azimuth over frames (moving sources)
  mae_az_deg    mean |estimated - true azimuth|
  hit_rate      distractor clips: fraction of frames whose estimated direction is nearer the
                sounding object than the silent distractor (azimuth and elevation, degrees)
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time

import numpy as np
from scipy import stats

from binauralizer.localize.trajectory import trajectory_from_heatmaps
from binauralizer.constants import SAMPLE_RATE

# The sample generator's camera: truth azimuths are computed with these fields of view.
SAMPLE_FOV_DEG, SAMPLE_VFOV_DEG = 120.0, 90.0


def decode_clip(path: str, fps: float = 8.0, short_side: int = 224, sample_rate: int = SAMPLE_RATE):
    """(frames uint8 (T,H,W,3), audio float32 mono) of a media file, decoded with ffmpeg."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0", path], capture_output=True, text=True, check=True)
    width, height = (int(v) for v in probe.stdout.strip().split(",")[:2])
    scale = short_side / min(width, height)
    out_w = max(2, int(round(width * scale / 2)) * 2)
    out_h = max(2, int(round(height * scale / 2)) * 2)
    video = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-an", "-vf",
         f"fps={fps},scale={out_w}:{out_h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-threads", "1", "pipe:1"], capture_output=True, check=True).stdout
    frames = np.frombuffer(video, np.uint8).reshape(-1, out_h, out_w, 3)
    audio = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vn", "-ac", "1", "-ar", str(sample_rate),
         "-f", "f32le", "-threads", "1", "pipe:1"], capture_output=True, check=True).stdout
    return frames, np.frombuffer(audio, "<f4").astype(np.float32)


def load_sample(sample_dir: str, fps: float = 8.0) -> list[dict]:
    """Decode every kept clip of a generated sample: dicts with frames, audio, truth, clip_id."""
    clips = []
    for truth_path in sorted(glob.glob(os.path.join(sample_dir, "truth", "*.json"))):
        with open(truth_path, encoding="utf-8") as fh:
            truth = json.load(fh)
        if truth.get("expected") != "kept":
            continue
        frames, audio = decode_clip(os.path.join(sample_dir, truth["video"]), fps=fps)
        clips.append({"clip_id": truth["clip_id"], "kind": truth["kind"], "frames": frames,
                      "audio": audio, "truth": truth, "fps": fps})
    return clips


def truth_directions(truth: dict, times: np.ndarray, key: str | None = None) -> np.ndarray:
    """(T, 2) true azimuth/elevation at `times` (the sounding object, or truth[key], e.g. "distractor")."""
    rec = truth[key] if key else truth
    t = np.asarray(rec["times_s"], float)
    return np.stack([np.interp(times, t, rec["azimuth_deg"]), np.interp(times, t, rec["elevation_deg"])], 1)


def is_moving(truth: dict) -> bool:
    return float(np.ptp(truth["azimuth_deg"])) > 10.0


def score_clip(traj: np.ndarray, truth: dict, fps: float) -> dict:
    """Spearman / mean abs azimuth error / distractor hit rate of a (T, 3) trajectory."""
    times = np.arange(traj.shape[0]) / fps
    true = truth_directions(truth, times)
    out = {"mae_az_deg": float(np.mean(np.abs(traj[:, 0] - true[:, 0]))), "spearman": float("nan"),
           "hit_rate": float("nan")}
    if is_moving(truth):
        out["spearman"] = float(stats.spearmanr(traj[:, 0], true[:, 0]).statistic)
    if "distractor" in truth:
        other = truth_directions(truth, times, "distractor")
        d_true = np.linalg.norm(traj[:, :2] - true, axis=1)
        d_other = np.linalg.norm(traj[:, :2] - other, axis=1)
        out["hit_rate"] = float(np.mean(d_true < d_other))
    return out


def evaluate(localiser, clips: list[dict], **traj_options) -> dict:
    """Run a localiser over decoded clips; per-clip scores and the summary figures."""
    rows = []
    for clip in clips:
        start = time.perf_counter()
        maps = localiser.heatmaps(clip["frames"], clip["audio"])
        seconds = time.perf_counter() - start
        traj = trajectory_from_heatmaps(maps, fov_deg=SAMPLE_FOV_DEG, vfov_deg=SAMPLE_VFOV_DEG, **traj_options)
        rows.append({"clip_id": clip["clip_id"], "kind": clip["kind"], "seconds": seconds,
                     **score_clip(traj, clip["truth"], clip["fps"])})
    return {"clips": rows, **summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    def finite(key, subset=None):
        vals = [r[key] for r in rows if (subset is None or subset(r)) and np.isfinite(r[key])]
        return np.asarray(vals, float)

    spearman = finite("spearman")
    distractor = lambda r: r["kind"] == "distractor"  # noqa: E731
    return {
        "median_spearman": float(np.median(spearman)) if spearman.size else float("nan"),
        "min_spearman": float(np.min(spearman)) if spearman.size else float("nan"),
        "mean_abs_az_err_deg": float(np.mean(finite("mae_az_deg"))),
        "distractor_mae_az_deg": float(np.mean(finite("mae_az_deg", distractor))) if any(map(distractor, rows)) else float("nan"),
        "distractor_hit_rate": float(np.mean(finite("hit_rate"))) if finite("hit_rate").size else float("nan"),
        "seconds_per_clip": float(np.mean([r["seconds"] for r in rows])),
    }
