"""ingest: probe each video and decode it once into the work folder.

Audio becomes 16 kHz mono float32 (stereo and 5.1 downmixed by ffmpeg); frames are resampled to a
constant rate (default 8 fps, short side 224 px) and stored as JPEG (or raw, by setting). Every later stage reads these files instead of
decoding again. A clip that cannot be read becomes a failed row saying why.
"""

from __future__ import annotations

import os

from stages.base import settings, ConfigError, Params, Stage, StageError
from manifests import artifacts as A
from stages.clipdata import atomic_save_npy, ingest_dir, save_frames
from stages.media import (
    decode_audio, decode_frames, decode_frames_jpeg, frame_size, local_media, probe, summarize_probe,
)


@settings
class IngestParams(Params):
    fps: float = 8.0
    short_side: int = 224
    max_seconds: float = 0.0  # 0 = decode the whole clip; >0 caps decoding (saves disk on long videos)
    frame_format: str = "jpeg"  # jpeg (about 16x smaller) | raw (exact pixels)
    jpeg_quality: int = 3  # ffmpeg -q:v for frame_format jpeg: 2 (best) .. 31
    require_video: bool = True
    timeout_s: float = 600.0
    num_cpus: float = 1.0

    def validate(self) -> None:
        if not 0 < self.fps <= 60:
            raise ConfigError(f"stages.ingest.fps: must be in (0, 60], got {self.fps}")
        if not 16 <= self.short_side <= 2160:
            raise ConfigError(f"stages.ingest.short_side: must be in [16, 2160], got {self.short_side}")
        if self.frame_format not in ("jpeg", "raw"):
            raise ConfigError(f"stages.ingest.frame_format: must be jpeg or raw, got {self.frame_format!r}")
        if not 2 <= self.jpeg_quality <= 31:
            raise ConfigError("stages.ingest.jpeg_quality: ffmpeg's -q:v scale, 2 (best) to 31")
        if self.max_seconds < 0:
            raise ConfigError("stages.ingest.max_seconds: must be >= 0")


class IngestStage(Stage):
    name = "ingest"
    version = "1"
    Params = IngestParams
    reads = ("clip_id", "video", "start", "end")
    writes = (
        "source_id", "duration_s", "has_audio", "has_video", "audio_codec", "video_codec", "audio_sr_in",
        "audio_channels_in", "fps_in", "vfr", "width", "height", "size_bytes", "n_samples", "n_frames",
        "frame_fps", "frame_w", "frame_h",
    )
    kind = "task"

    def setup(self) -> None:
        from stages.media import require_ffmpeg

        require_ffmpeg()

    def measure_one(self, row: dict) -> dict:
        p = self.params
        start, end = row.get("start"), row.get("end")
        if p.max_seconds:
            cap = (start or 0.0) + p.max_seconds
            end = cap if end is None else min(end, cap)
        with local_media(row["video"]) as path:
            info = summarize_probe(probe(path, p.timeout_s))
            if not info["has_audio"]:
                raise StageError("no audio stream")
            if p.require_video and not info["has_video"]:
                raise StageError("no video stream")
            audio = decode_audio(path, self.ctx.sample_rate, start, end, p.timeout_s)
            if audio.size == 0:
                raise StageError("audio stream decodes to zero samples")
            frames = None
            if info["has_video"]:
                w, h = frame_size(info["width"], info["height"], p.short_side)
                if p.frame_format == "jpeg":
                    frames = decode_frames_jpeg(path, p.fps, w, h, start, end, p.jpeg_quality, p.timeout_s)
                else:
                    frames = decode_frames(path, p.fps, w, h, start, end, p.timeout_s)
                if p.require_video and len(frames) == 0:
                    raise StageError("video stream decodes to zero frames")
        folder = ingest_dir(self.ctx, row["clip_id"])
        atomic_save_npy(os.path.join(folder, A.AUDIO), audio)
        if frames is not None:
            save_frames(folder, frames)
        info.pop("container_duration_s", None)
        return {
            "source_id": row["clip_id"],
            "duration_s": round(audio.size / self.ctx.sample_rate, 6),
            **info,
            "n_samples": int(audio.size),
            "n_frames": len(frames) if frames is not None else 0,
            "frame_fps": float(p.fps),
            "frame_w": w if frames is not None else 0,
            "frame_h": h if frames is not None else 0,
        }
