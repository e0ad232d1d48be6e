"""Media made at test time with real ffmpeg (no binaries in git): good tiny clips and every kind of bad input."""

from __future__ import annotations

import csv
import os
import struct
import subprocess

SECONDS = 2.0


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120)


def clip(path: str, *, seconds: float = SECONDS, size: str = "64x48", fps: int = 8, rate: int = 16000,
         channels: int = 1, video: bool = True, audio: bool = True, vfr: bool = False, freq: int = 440) -> str:
    """A deterministic H.264/AAC mp4: a test pattern and a tone (bitexact, one thread)."""
    args: list[str] = []
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
        args += ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds},"
                                      f"aformat=channel_layouts={layout}"]
    if vfr:
        args += ["-vf", "select='not(between(mod(n,8),2,5)*mod(n,2))'", "-fps_mode", "vfr"]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "32k" if rate <= 8000 else "96k"]
    ffmpeg(*args, "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
           "-flags:a", "+bitexact", "-f", "mp4", path)
    return path


def claim_huge_duration(path: str) -> None:
    """Rewrite the movie header's duration to about 2^32 ticks (days) while the streams stay 2 s."""
    data = bytearray(open(path, "rb").read())
    at = data.index(b"mvhd") + 4
    version = data[at]
    field = at + 4 + (16 if version == 1 else 8) + 4  # skip version/flags, times, timescale
    if version == 1:
        data[field : field + 8] = struct.pack(">Q", 2**40)
    else:
        data[field : field + 4] = struct.pack(">I", 0xFFFFFFF0)
    open(path, "wb").write(bytes(data))


def make_corpus(root: str, outside: str) -> tuple[str, dict[str, str]]:
    """MEDIA_ROOT with every case; returns (manifest path, {clip_id: expected outcome}).

    Expected outcomes: "kept", "failed:<reason start>", "rejected:<reason start>".
    """
    media = os.path.join(root, "media")
    os.makedirs(os.path.join(media, "a folder.mp4"), exist_ok=True)
    os.makedirs(outside, exist_ok=True)
    rows, expect = [], {}

    def add(clip_id: str, name: str, outcome: str):
        rows.append([clip_id, name, "tone", "train"])
        if clip_id not in expect:
            expect[clip_id] = outcome

    add("good_plain", clip(os.path.join(media, "plain.mp4")), "kept")
    add("good_space", clip(os.path.join(media, "with space.mp4"), freq=500), "kept")
    add("good_quotes", clip(os.path.join(media, "it's \"quoted\".mp4"), freq=550), "kept")
    add("good_unicode", clip(os.path.join(media, "ünïcödé 音.mp4"), freq=600), "kept")
    add("good_dash", clip(os.path.join(media, "-leading-dash.mp4"), freq=650), "kept")
    add("surround51", clip(os.path.join(media, "surround.mp4"), rate=48000, channels=6), "kept")
    add("rate8k", clip(os.path.join(media, "rate8k.mp4"), rate=8000), "kept")
    add("rate96k", clip(os.path.join(media, "rate96k.mp4"), rate=96000), "kept")
    add("vfr", clip(os.path.join(media, "vfr.mp4"), vfr=True), "kept")
    add("frame4k", clip(os.path.join(media, "4k.mp4"), size="3840x2160", fps=2, seconds=SECONDS), "kept")
    huge = clip(os.path.join(media, "huge.mp4"), freq=700)
    claim_huge_duration(huge)
    add("huge_header", huge, "kept")

    full = open(os.path.join(media, "plain.mp4"), "rb").read()
    with open(os.path.join(media, "truncated.mp4"), "wb") as fh:
        fh.write(full[: len(full) * 2 // 5])
    add("truncated", os.path.join(media, "truncated.mp4"), "failed:cannot")
    open(os.path.join(media, "zero.mp4"), "wb").close()
    add("zero_bytes", os.path.join(media, "zero.mp4"), "failed:empty file (0 bytes)")
    add("no_audio", clip(os.path.join(media, "noaudio.mp4"), audio=False), "failed:no audio stream")
    add("audio_only", clip(os.path.join(media, "audioonly.mp4"), video=False), "failed:no video stream")
    add("missing", os.path.join(media, "not-there.mp4"), "failed:file not found")
    add("directory", os.path.join(media, "a folder.mp4"), "failed:is a directory")
    add("outside", clip(os.path.join(outside, "elsewhere.mp4")), "rejected:video outside MEDIA_ROOT")
    add("escape", "../outside/elsewhere.mp4", "rejected:video outside MEDIA_ROOT")
    add("../evil", os.path.join(media, "plain.mp4"), "rejected:clip_id contains a path separator")
    add("good_plain", os.path.join(media, "with space.mp4"), "kept")  # a duplicate id: the second is rejected

    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_id", "video", "label", "split"])
        for clip_id, video, label, split in rows:
            writer.writerow([clip_id, os.path.relpath(video, media) if video.startswith(media) else video, label, split])
    return manifest, expect
