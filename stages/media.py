"""ffprobe / ffmpeg wrappers. Always argument lists, never a shell; errors become StageError text.

Remote inputs (an fsspec URL such as s3://, gs://, hf://) are fetched to a temporary local file
first; http(s) URLs go to ffmpeg directly, which streams them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from fractions import Fraction

import numpy as np

from stages.base import StageError

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"


def require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise RuntimeError(
            "ffmpeg/ffprobe not found on PATH. Install it: `sudo apt-get install -y ffmpeg` "
            "(Debian/Ubuntu) or `conda install -c conda-forge ffmpeg`, then rerun."
        )


@contextlib.contextmanager
def local_media(path: str):
    """Yield a path ffmpeg can open: local files and http(s) as they are, other URLs fetched."""
    if "://" not in path or path.startswith(("http://", "https://")):
        if "://" not in path:
            if not os.path.exists(path):
                raise StageError(f"file not found: {path}")
            if os.path.isdir(path):
                raise StageError(f"is a directory, not a video file: {path}")
            if os.path.getsize(path) == 0:
                raise StageError(f"empty file (0 bytes): {path}")
        yield path
        return
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover
        raise StageError(f"cannot open {path}: fsspec is not installed") from exc
    suffix = os.path.splitext(path)[1] or ".bin"
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        try:
            with fsspec.open(path, "rb") as src:
                shutil.copyfileobj(src, tmp)
        except Exception as exc:  # noqa: BLE001 - any fetch error is this clip's failure
            raise StageError(f"cannot fetch {path}: {type(exc).__name__}: {exc}") from None
        tmp.flush()
        yield tmp.name


def _run(args: list[str], what: str, timeout: float) -> bytes:
    try:
        proc = subprocess.run(args, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StageError(f"{what}: ffmpeg timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = message[-1] if message else f"exit code {proc.returncode}"
        raise StageError(f"{what}: {detail[:300]}")
    return proc.stdout


def probe(path: str, timeout: float = 60) -> dict:
    out = _run(
        [FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
        "cannot read container",
        timeout,
    )
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise StageError("cannot read container: ffprobe returned no metadata") from None


def _rate(text: str | None) -> float:
    try:
        value = float(Fraction(text)) if text and text != "0/0" else 0.0
    except (ValueError, ZeroDivisionError):
        value = 0.0
    return value


def summarize_probe(info: dict) -> dict:
    """The probe fields the manifest keeps, from ffprobe's JSON."""
    streams = info.get("streams", [])
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    fmt = info.get("format", {})
    width = int(video.get("width", 0)) if video else 0
    height = int(video.get("height", 0)) if video else 0
    rotation = 0
    for side in (video or {}).get("side_data_list", []) or []:
        if "rotation" in side:
            rotation = int(float(side["rotation"]))
    if "rotate" in ((video or {}).get("tags") or {}):
        rotation = int(float(video["tags"]["rotate"]))
    if rotation % 180 != 0:
        width, height = height, width
    r_rate, avg_rate = _rate((video or {}).get("r_frame_rate")), _rate((video or {}).get("avg_frame_rate"))
    return {
        "has_audio": audio is not None,
        "has_video": video is not None,
        "audio_codec": audio.get("codec_name") if audio else None,
        "video_codec": video.get("codec_name") if video else None,
        "audio_sr_in": int(audio.get("sample_rate", 0)) if audio else None,
        "audio_channels_in": int(audio.get("channels", 0)) if audio else None,
        "fps_in": round(avg_rate or r_rate, 4) if video else None,
        "vfr": bool(video) and r_rate > 0 and avg_rate > 0 and abs(r_rate - avg_rate) / r_rate > 0.01,
        "width": width,
        "height": height,
        "container_duration_s": _rate(fmt.get("duration")) if fmt.get("duration") else None,
        "size_bytes": int(fmt.get("size", 0) or 0),
    }


def _window_args(start: float | None, end: float | None) -> list[str]:
    args = []
    if start:
        args += ["-ss", f"{start:.6f}"]
    if end is not None:
        args += ["-t", f"{end - (start or 0):.6f}"]
    return args


def decode_audio(path: str, sample_rate: int, start=None, end=None, timeout: float = 600) -> np.ndarray:
    """First audio stream, downmixed to mono (ffmpeg's standard matrices for stereo and 5.1)."""
    raw = _run(
        [FFMPEG, "-v", "error", "-nostdin", *_window_args(start, end), "-i", path, "-map", "0:a:0", "-vn",
         "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"],
        "cannot decode audio",
        timeout,
    )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def frame_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Output (w, h): short side = short_side, aspect kept, both even (yuv-friendly, deterministic)."""
    if width <= 0 or height <= 0:
        raise StageError(f"video stream has no size ({width}x{height})")
    scale = short_side / min(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def _frame_args(path: str, fps: float, w: int, h: int, start, end) -> list[str]:
    return [FFMPEG, "-v", "error", "-nostdin", *_window_args(start, end), "-i", path, "-map", "0:v:0", "-an",
            "-vf", f"fps={fps},scale={w}:{h}:flags=area,setsar=1"]


def decode_frames(path: str, fps: float, w: int, h: int, start=None, end=None, timeout: float = 600) -> np.ndarray:
    """Frames resampled to a constant `fps` (VFR input is fine), RGB uint8 (T, h, w, 3)."""
    raw = _run([*_frame_args(path, fps, w, h, start, end), "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"],
               "cannot decode video", timeout)
    frame_bytes = w * h * 3
    n = len(raw) // frame_bytes
    return np.frombuffer(raw[: n * frame_bytes], dtype=np.uint8).reshape(n, h, w, 3)


def decode_frames_jpeg(path: str, fps: float, w: int, h: int, start=None, end=None, quality: int = 3,
                       timeout: float = 600) -> list[bytes]:
    """The same frames, JPEG-encoded by ffmpeg itself (no Python re-encode): one bytes object per frame.

    `quality` is ffmpeg's -q:v (2 best .. 31 worst). The stream is split at each JPEG end-of-image
    marker, which cannot occur inside entropy-coded data (0xFF is byte-stuffed there).
    """
    raw = _run([*_frame_args(path, fps, w, h, start, end), "-pix_fmt", "yuvj420p", "-c:v", "mjpeg",
                "-q:v", str(quality), "-threads:v", "1", "-f", "image2pipe", "pipe:1"],
               "cannot decode video", timeout)
    frames, begin = [], 0
    while True:
        end_marker = raw.find(b"\xff\xd9", begin)
        if end_marker < 0:
            break
        frames.append(raw[begin : end_marker + 2])
        begin = end_marker + 2
    return frames
