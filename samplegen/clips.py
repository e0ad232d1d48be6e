"""The bundled sample: synthetic clips whose true sound-source trajectory is known.

Each clip is a textured background with a red disk (the sounding object) moving along a known
path while it sounds; the disk's radius pulses with the sound's envelope, like a vibrating
source, so audio-visual correlation has something to find. Some clips add a silent blue square
that moves a lot (a distractor), some must be filtered (too short, mostly silent), some are
broken (zero bytes, truncated, no audio) and some vary the format (5.1, 8 kHz, stereo, WebM
VP9+Opus, variable frame rate), so one sample run shows every outcome of the pipeline.

Written for every clip: clips/<id>.<ext>, truth/<id>.json (the trajectory per video frame and
the expected outcome), plus manifest.csv (MEDIA_ROOT = out_dir) and vggsound.csv with
vggsound_media/ (the same kind of clips in VGGSound's naming). Same seed, same bytes: ffmpeg
runs single-threaded with bitexact flags and fixed encoder settings.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy import ndimage, signal

from manifests.io import atomic_path, atomic_write_text

WIDTH, HEIGHT, FPS = 320, 240, 24
FOV_H_DEG, FOV_V_DEG = 120.0, 90.0
RADIUS_PX = 20.0  # disk radius at mean loudness; pulses between 0.75x and 1.25x
SQUARE_HALF_PX = 20.0  # distractor half side
SOURCE_RGB = (235, 40, 30)  # saturated red: the background never has R above G
DISTRACTOR_RGB = (40, 90, 235)
VGGSOUND_CLIPS = 4
VFR_EXPR = "not(between(mod(n,60),30,44)*mod(n,2))"  # every other frame dropped in 30..44 of 60


@dataclass(frozen=True)
class ClipSpec:
    """One clip template; the plan below lists them in priority order."""

    name: str
    kind: str  # moving | static | distractor | long | short | silent | broken | format
    expected: str  # kept | dropped:duration | dropped:silence | failed
    label: str
    path: str = "lr"  # lr | rl | arc | arc_rl | swing | left | right | centre
    y0: float = 0.5  # vertical centre of the path, fraction of the height
    sound: str = "tone"  # tone | noise | chirp | am
    duration_s: float = 11.0
    sample_rate: int = 44100
    channels: int = 1
    container: str = "mp4"  # mp4 (H.264 + AAC) | webm (VP9 + Opus)
    vfr: bool = False
    silence: str = ""  # digital | noise70: one short burst in otherwise silent audio
    distractor: str = ""  # sweep | opposite
    broken: str = ""  # zero | truncated | noaudio


# Priority order: any prefix of 12 or more holds every outcome; N > 24 repeats the plan.
PLAN: tuple[ClipSpec, ...] = (
    ClipSpec("moving_lr", "moving", "kept", "playing violin, fiddle", "lr", sound="tone"),
    ClipSpec("short", "short", "dropped:duration", "hammering nails", "rl", sound="noise", duration_s=6.0),
    ClipSpec("silent", "silent", "dropped:silence", "playing flute", "lr", silence="digital"),
    ClipSpec("truncated", "broken", "failed", "dog barking", "lr", sound="noise", broken="truncated"),
    ClipSpec("distractor_sweep", "distractor", "kept", "dog barking", "left", 0.35, "noise", distractor="sweep"),
    ClipSpec("surround51", "format", "kept", "bird chirping, tweeting", "arc", sound="chirp",
             sample_rate=48000, channels=6),
    ClipSpec("long", "long", "kept", "playing trumpet", "lr", sound="tone", duration_s=22.0),
    ClipSpec("noaudio", "broken", "failed", "helicopter", "rl", broken="noaudio"),
    ClipSpec("mono8k", "format", "kept", "playing flute", "rl", sound="tone", sample_rate=8000),
    ClipSpec("zero_bytes", "broken", "failed", "dog barking", "lr", broken="zero"),
    ClipSpec("static_left", "static", "kept", "dog barking", "left", 0.45, "noise"),
    ClipSpec("webm_vp9", "format", "kept", "ambulance siren", "arc_rl", sound="am", sample_rate=48000,
             container="webm"),
    ClipSpec("stereo", "format", "kept", "car passing by", "lr", sound="noise", sample_rate=48000, channels=2),
    ClipSpec("vfr", "format", "kept", "playing violin, fiddle", "swing", sound="tone", vfr=True),
    ClipSpec("distractor_opposite", "distractor", "kept", "playing trumpet", "lr", 0.35, "tone",
             distractor="opposite"),
    ClipSpec("moving_rl", "moving", "kept", "bird chirping, tweeting", "rl", sound="chirp", sample_rate=48000),
    ClipSpec("silent_lownoise", "silent", "dropped:silence", "hammering nails", "rl", sound="noise",
             silence="noise70"),
    ClipSpec("static_right", "static", "kept", "ambulance siren", "right", 0.55, "am", duration_s=10.5),
    ClipSpec("moving_arc", "moving", "kept", "ambulance siren", "arc", sound="am"),
    ClipSpec("short_b", "short", "dropped:duration", "playing flute", "arc", sound="tone", duration_s=7.5),
    ClipSpec("static_centre", "static", "kept", "playing violin, fiddle", "centre", 0.5, "tone", sample_rate=48000),
    ClipSpec("moving_arc_rl", "moving", "kept", "hammering nails", "arc_rl", sound="noise", duration_s=12.0),
    ClipSpec("moving_swing", "moving", "kept", "bird chirping, tweeting", "swing", sound="chirp"),
    ClipSpec("moving_lr_b", "moving", "kept", "dog barking", "lr", 0.6, "noise", sample_rate=48000),
)


def plan_clips(clips: int) -> list[tuple[str, ClipSpec]]:
    """(clip_id, spec) for N clips: a prefix of PLAN, repeated when N exceeds it."""
    width = max(3, len(str(clips - 1)))
    return [(f"s{i:0{width}d}_{PLAN[i % len(PLAN)].name}", PLAN[i % len(PLAN)]) for i in range(clips)]


# --- geometry -------------------------------------------------------------------------------


def pixel_to_direction(x_px, y_px, width: int = WIDTH, height: int = HEIGHT):
    """Azimuth (positive left) and elevation (positive up) in degrees, as COMMON.md defines them."""
    az = (width / 2 - np.asarray(x_px, float)) / width * FOV_H_DEG
    el = (height / 2 - np.asarray(y_px, float)) / height * FOV_V_DEG
    return az, el


def _ease(u: np.ndarray) -> np.ndarray:
    return (1 - np.cos(np.pi * np.clip(u, 0, 1))) / 2


def trajectory(path: str, y0: float, times: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Object centre (x, y) in continuous pixel coordinates (pixel i spans [i, i+1))."""
    u = times / duration
    s = _ease(u)
    if path in ("lr", "rl", "arc", "arc_rl"):
        x = 0.15 + 0.7 * s
        x = 1 - x if path.endswith("rl") else x
        if path.startswith("arc"):
            y = y0 + 0.15 - 0.3 * np.sin(np.pi * s) if path == "arc" else y0 - 0.15 + 0.3 * np.sin(np.pi * s)
        else:
            y = y0 + 0.06 * np.sin(2 * np.pi * u)
    elif path == "swing":  # left, then right, back to the centre
        x = 0.5 - 0.33 * np.sin(2 * np.pi * u)
        y = y0 + 0.05 * np.sin(4 * np.pi * u)
    elif path in ("left", "right", "centre"):
        x = np.full_like(u, {"left": 0.2, "right": 0.8, "centre": 0.5}[path])
        y = np.full_like(u, y0)
    else:
        raise ValueError(f"unknown path {path!r}")
    return x * WIDTH, y * HEIGHT


# --- sound ------------------------------------------------------------------------------------

ENV_RATE = 1000  # envelope control rate (Hz); upsampled to the audio rate


def _burst_envelope(rng: np.random.Generator, duration: float, floor: float = 0.12) -> np.ndarray:
    """Bursts of 0.15-0.5 s with 15 ms attacks and 80 ms decays over a quiet floor."""
    n = int(round(duration * ENV_RATE))
    env = np.full(n, floor)
    t = rng.uniform(0.0, 0.3)
    while t < duration:
        length = rng.uniform(0.15, 0.5)
        level = rng.uniform(0.7, 1.0)
        i0, i1 = int(t * ENV_RATE), min(n, int((t + length) * ENV_RATE))
        k = np.arange(i0, min(n, i1 + 400)) - i0
        attack = np.minimum(1.0, k / 15.0)
        decay = np.where(k < i1 - i0, 1.0, np.exp(-(k - (i1 - i0)) / 80.0))
        env[i0 : i0 + k.size] = np.maximum(env[i0 : i0 + k.size], level * attack * decay)
        t += length + rng.uniform(0.15, 0.45)
    return env


def _am_envelope(rng: np.random.Generator, duration: float) -> np.ndarray:
    t = np.arange(int(round(duration * ENV_RATE))) / ENV_RATE
    rate = rng.uniform(1.5, 3.0)
    slow = 0.8 + 0.2 * np.sin(2 * np.pi * 0.23 * t + rng.uniform(0, 2 * np.pi))
    return (0.55 + 0.45 * np.sin(2 * np.pi * rate * t)) * slow


def synth_sound(rng: np.random.Generator, spec: ClipSpec, sr: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Mono signal at `sr` (peak 0.5), its envelope at ENV_RATE, and a description."""
    duration = spec.duration_s
    n = int(round(duration * sr))
    t = np.arange(n) / sr
    nyq = sr / 2
    env = _am_envelope(rng, duration) if spec.sound == "am" else _burst_envelope(rng, duration)
    if spec.sound in ("tone", "am"):
        f0 = float(rng.choice([220.0, 262.0, 330.0, 392.0]))
        phase = 2 * np.pi * f0 * (t + 0.004 / 5.0 * np.sin(2 * np.pi * 5.0 * t))  # light vibrato
        partials = [k for k in range(1, 7) if k * f0 < 0.8 * nyq]
        carrier = sum(np.sin(k * phase) / k for k in partials)
        text = f"harmonic tone {f0:.0f} Hz ({len(partials)} partials)"
    elif spec.sound == "noise":
        hi = min(3500.0, 0.8 * nyq)
        sos = signal.butter(4, [400.0, hi], btype="bandpass", fs=sr, output="sos")
        carrier = signal.sosfilt(sos, rng.standard_normal(n))
        text = f"band-pass noise 400-{hi:.0f} Hz"
    elif spec.sound == "chirp":
        f_lo, f_hi, period = 700.0, min(2400.0, 0.8 * nyq), 0.3
        freq = f_lo + (f_hi - f_lo) * ((t / period) % 1.0)
        carrier = np.sin(2 * np.pi * np.cumsum(freq) / sr)
        text = f"chirps {f_lo:.0f}-{f_hi:.0f} Hz every {period} s"
    else:
        raise ValueError(f"unknown sound {spec.sound!r}")
    text += ", AM 1.5-3 Hz" if spec.sound == "am" else ", bursts 0.15-0.5 s over a -18 dB floor"
    if spec.silence:  # one 0.8 s burst at 3 s; the rest digital silence or -70 dBFS noise
        env = np.zeros_like(env)
        env[int(3.0 * ENV_RATE) : int(3.8 * ENV_RATE)] = 1.0
        text = f"mostly silent ({spec.silence}): one 0.8 s burst at 3.0 s of " + text.split(",")[0]
    carrier = carrier / (np.max(np.abs(carrier)) + 1e-12)
    env_audio = np.interp(t, np.arange(env.size) / ENV_RATE, env)
    mono = 0.5 * carrier * env_audio
    if spec.silence == "noise70":
        mono = mono + rng.standard_normal(n) * 10 ** (-70 / 20)
    return mono.astype(np.float32), env, text


def to_channels(mono: np.ndarray, channels: int, az_at_samples: np.ndarray) -> np.ndarray:
    """(samples, channels): stereo panned by azimuth (constant power); 5.1 mostly front."""
    if channels == 1:
        return mono[:, None]
    if channels == 2:
        p = np.clip(az_at_samples / 60.0, -1, 1)  # +1 = hard left
        return np.stack([mono * np.cos(np.pi / 4 * (1 - p)), mono * np.sin(np.pi / 4 * (1 - p))], axis=1)
    if channels == 6:  # FL FR FC LFE BL BR
        gains = np.array([0.5, 0.5, 0.7, 0.0, 0.2, 0.2])
        return mono[:, None] * gains[None, :]
    raise ValueError(f"unsupported channel count {channels}")


# --- pictures ---------------------------------------------------------------------------------


def background(rng: np.random.Generator) -> np.ndarray:
    """Smooth noise + a gradient + fine grain, low saturation with R < G everywhere."""
    coarse = ndimage.zoom(rng.standard_normal((7, 9)), (HEIGHT / 7, WIDTH / 9), order=3)[:HEIGHT, :WIDTH]
    grad = np.linspace(-1, 1, WIDTH)[None, :] * rng.uniform(-0.6, 0.6) + np.linspace(-1, 1, HEIGHT)[:, None] * 0.3
    lum = 115 + 28 * coarse + 25 * grad + rng.normal(0, 5, (HEIGHT, WIDTH))
    lum = np.clip(lum, 40, 190)
    tint = np.array([0.88, 1.0, 0.94])
    return np.clip(lum[:, :, None] * tint, 0, 255).astype(np.uint8)


def _draw_disk(frame: np.ndarray, cx: float, cy: float, r: float, rgb) -> None:
    y0, y1 = max(0, int(cy - r - 1)), min(HEIGHT, int(cy + r + 2))
    x0, x1 = max(0, int(cx - r - 1)), min(WIDTH, int(cx + r + 2))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    mask = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
    frame[y0:y1, x0:x1][mask] = rgb


def _draw_square(frame: np.ndarray, cx: float, cy: float, half: float, rgb) -> None:
    y0, y1 = max(0, int(round(cy - half))), min(HEIGHT, int(round(cy + half)))
    x0, x1 = max(0, int(round(cx - half))), min(WIDTH, int(round(cx + half)))
    frame[y0:y1, x0:x1] = rgb


def frame_envelope(env: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean envelope over each frame's interval, scaled to 0..1."""
    edges = (np.arange(n_frames + 1) / FPS * ENV_RATE).astype(int)
    vals = np.add.reduceat(env, np.minimum(edges[:-1], env.size - 1)) / np.maximum(np.diff(edges), 1)
    return vals / (vals.max() + 1e-12)


def render_frames(bg, src_xy, src_r, dis_xy=None, dis_half=None) -> Iterator[np.ndarray]:
    for i in range(len(src_r)):
        frame = bg.copy()
        if dis_xy is not None:
            _draw_square(frame, dis_xy[0][i], dis_xy[1][i], dis_half[i], DISTRACTOR_RGB)
        _draw_disk(frame, src_xy[0][i], src_xy[1][i], src_r[i], SOURCE_RGB)
        yield frame


def vfr_keep(n_frames: int) -> np.ndarray:
    """Frames the VFR clip keeps: the Python twin of VFR_EXPR."""
    n = np.arange(n_frames)
    return ~(((n % 60) >= 30) & ((n % 60) <= 44) & (n % 2 == 1))


# --- encoding ---------------------------------------------------------------------------------

LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def encode(out_path: str, frames: Iterator[np.ndarray], audio: np.ndarray | None, spec: ClipSpec,
           tmp: str) -> None:
    """Pipe RGB frames (and a raw f32 audio file) through one ffmpeg call, written atomically."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "pipe:0"]
    if audio is not None:
        audio_path = os.path.join(tmp, "audio.f32")
        np.ascontiguousarray(audio, dtype="<f4").tofile(audio_path)
        args += ["-f", "f32le", "-ar", str(spec.sample_rate), "-ch_layout", LAYOUTS[audio.shape[1]],
                 "-i", audio_path, "-map", "0:v", "-map", "1:a"]
    if spec.vfr:
        args += ["-vf", f"select='{VFR_EXPR}'", "-fps_mode", "vfr"]
    if spec.container == "webm":
        args += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "0",
                 "-b:v", "400k", "-g", "48", "-pix_fmt", "yuv420p"]
    else:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-g", "48", "-pix_fmt", "yuv420p"]
    if audio is not None and spec.container == "webm":
        args += ["-c:a", "libopus", "-b:a", "64k"]
    elif audio is not None:
        bitrate = "24k" if spec.sample_rate <= 8000 else {1: "64k", 2: "128k", 6: "256k"}[audio.shape[1]]
        args += ["-c:a", "aac", "-b:a", bitrate]
    args += ["-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
             "-flags:a", "+bitexact", "-f", spec.container]
    with atomic_path(out_path) as part:
        args.append(part)
        with tempfile.TemporaryFile(dir=tmp) as err:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for frame in frames:
                    proc.stdin.write(frame.tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            rc = proc.wait()
            if rc != 0:
                err.seek(0)
                raise RuntimeError(f"ffmpeg failed for {out_path}: {err.read().decode(errors='replace')[-2000:]}")


# --- one clip ---------------------------------------------------------------------------------


def _direction_dict(x: np.ndarray, y: np.ndarray) -> dict:
    az, el = pixel_to_direction(x, y)
    return {"x_px": _r(x), "y_px": _r(y), "azimuth_deg": _r(az), "elevation_deg": _r(el)}


def _r(a) -> list[float]:
    return [round(float(v), 4) for v in np.asarray(a)]


def make_clip(out_dir: str, clip_id: str, spec: ClipSpec, rng: np.random.Generator, tmp: str) -> dict:
    """Write the clip's media file and return its truth record."""
    ext = "webm" if spec.container == "webm" else "mp4"
    video_rel = f"clips/{clip_id}.{ext}"
    video_path = os.path.join(out_dir, video_rel)
    n_frames = int(round(spec.duration_s * FPS))
    times = np.arange(n_frames) / FPS
    bg = background(rng)
    x, y = trajectory(spec.path, spec.y0, times, spec.duration_s)
    mono, env, sound_text = synth_sound(rng, spec, spec.sample_rate)
    radius = RADIUS_PX * (0.75 + 0.5 * frame_envelope(env, n_frames))
    dis_xy = dis_half = None
    truth_extra: dict = {}
    if spec.distractor == "sweep":  # silent square sweeping the width twice below the source
        u = times / spec.duration_s
        dis_xy = (WIDTH * (0.5 + 0.38 * np.sin(2 * np.pi * 1.5 * u)), np.full(n_frames, 0.75 * HEIGHT))
        dis_half = np.full(n_frames, SQUARE_HALF_PX)
        truth_extra["distractor_motion"] = "silent square sweeping left-right, constant size"
    elif spec.distractor == "opposite":  # moves the other way; its size pulses with another envelope
        dis_xy = trajectory("rl", 0.72, times, spec.duration_s)
        other = _burst_envelope(np.random.default_rng(rng.integers(2**32)), spec.duration_s)
        dis_half = SQUARE_HALF_PX * (0.75 + 0.5 * frame_envelope(other, n_frames))
        truth_extra["distractor_motion"] = "silent square moving right-to-left, size pulsing off-beat"

    keep = vfr_keep(n_frames) if spec.vfr else np.ones(n_frames, bool)
    truth = {
        "clip_id": clip_id, "kind": spec.kind, "template": spec.name, "expected": spec.expected,
        "label": spec.label, "video": video_rel, "fps": FPS, "width": WIDTH, "height": HEIGHT,
        "duration_s": spec.duration_s, "container": spec.container,
        "video_codec": "vp9" if spec.container == "webm" else "h264", "vfr": spec.vfr,
        "audio_codec": None if spec.broken == "noaudio" else ("opus" if spec.container == "webm" else "aac"),
        "audio_sample_rate": None if spec.broken == "noaudio" else spec.sample_rate,
        "audio_channels": None if spec.broken == "noaudio" else spec.channels,
        "sound": sound_text, "radius_px": _r(radius[keep]), "times_s": _r(times[keep]),
        **_direction_dict(x[keep], y[keep]),
    }
    if dis_xy is not None:
        truth["distractor"] = {"times_s": _r(times[keep]), "half_side_px": _r(dis_half[keep]),
                               **_direction_dict(dis_xy[0][keep], dis_xy[1][keep])}
        truth.update(truth_extra)

    if spec.broken == "zero":
        open(video_path, "wb").close()
        truth.update({k: [] for k in ("times_s", "x_px", "y_px", "azimuth_deg", "elevation_deg", "radius_px")})
        truth.update({"duration_s": 0.0, "sound": "none: zero-byte file", "audio_codec": None,
                      "audio_sample_rate": None, "audio_channels": None, "video_codec": None})
        return truth
    frames = render_frames(bg, (x, y), radius, dis_xy, dis_half)
    az_samples = np.interp(np.arange(mono.size) / spec.sample_rate, times, pixel_to_direction(x, y)[0])
    audio = None if spec.broken == "noaudio" else to_channels(mono, spec.channels, az_samples)
    encode(video_path, frames, audio, spec, tmp)
    if spec.broken == "truncated":  # moov atom sits at the end: the first 30 % is undecodable
        with open(video_path, "rb") as fh:
            data = fh.read()
        with open(video_path, "wb") as fh:
            fh.write(data[: int(len(data) * 0.3)])
        truth["sound"] = "truncated to 30 % of its bytes; was " + sound_text
    return truth


# --- the sample -------------------------------------------------------------------------------


def youtube_like_id(seed: int, clip_id: str) -> str:
    """11 URL-safe base64 characters derived from the clip, like a YouTube video id."""
    digest = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def _write_csv(path: str, rows: list[list], header: list[str] | None = None) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _write_json(path: str, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def generate_sample(out_dir: str, clips: int = 24, seed: int = 0) -> dict:
    """Write the bundled sample into out_dir and return a summary of what it holds."""
    if clips < 1:
        raise ValueError("clips must be at least 1")
    out_dir = os.path.abspath(out_dir)
    for sub in ("clips", "truth", "vggsound_media"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    truths = []
    with tempfile.TemporaryDirectory(prefix="sample-") as tmp:
        for index, (clip_id, spec) in enumerate(plan_clips(clips)):
            rng = np.random.default_rng([seed, index])
            truths.append(make_clip(out_dir, clip_id, spec, rng, tmp))

    manifest, vgg_rows = [], []
    for index, truth in enumerate(truths):
        split = "test" if index % 4 == 3 else "train"
        manifest.append([truth["clip_id"], truth["video"], truth["label"], f"a {truth['label']}", split])
        usable = truth["expected"] == "kept" and truth["container"] == "mp4" and not truth["vfr"]
        if usable and len(vgg_rows) < VGGSOUND_CLIPS:
            yid, start = youtube_like_id(seed, truth["clip_id"]), 10 * (len(vgg_rows) + 1)
            name = f"{yid}_{start:06d}.mp4"
            _link(os.path.join(out_dir, truth["video"]), os.path.join(out_dir, "vggsound_media", name))
            vgg_rows.append([yid, start, truth["label"], split])
            truth["vggsound_key"] = name[:-4]
    for truth in truths:
        _write_json(os.path.join(out_dir, "truth", f"{truth['clip_id']}.json"), truth)
    _write_csv(os.path.join(out_dir, "manifest.csv"), manifest, ["clip_id", "video", "label", "caption", "split"])
    _write_csv(os.path.join(out_dir, "vggsound.csv"), vgg_rows)
    return {
        "clips": clips,
        "by_kind": dict(sorted(Counter(t["kind"] for t in truths).items())),
        "by_expected": dict(sorted(Counter(t["expected"] for t in truths).items())),
        "out": out_dir,
    }


def _link(src: str, dst: str) -> None:
    if os.path.lexists(dst):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(src, dst)
