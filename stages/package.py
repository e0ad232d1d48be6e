"""package: each kept, converted clip's WebDataset sample members, staged on a worker (a task stage).

One sample per clip, key = clip id (members as output/shards.py writes them):

    <key>.mp4          the clip's exact window of the source video: stream-copied when the window
                       starts on a keyframe, re-encoded (H.264, fixed settings) otherwise
    <key>.flac         binaural, 2 channels (row 0 = left), 16 kHz
    <key>.mono.flac    the source audio window (what the binaural was made from)
    <key>.json         label, captions, split, source and window, quality, conversion, metrics
    <key>.spatial.npy  (T, 5) float32 per-frame S_h, S_area, S_var, S_LR, S_shape ((0, 5) if absent)
    <key>.traj.npy     (T, 3) float32 azimuth, elevation (deg), distance (m) ((0, 3) if absent)

The cut, the encodes and the json run here, per chunk on the executor's workers; the members go to
work/package/<clip_id>/ with their index (staged.json: fingerprint + members) written last. The row
gets package_path, package_fingerprint and sample_split; `shard` (global) only plans and packs.
A clip staged earlier with the same fingerprint is not staged again.

Time of the window in the video: `start` (the input trim, 0 if absent) + window_start / SAMPLE_RATE,
the same origin ingest decoded from.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from contextlib import nullcontext

import numpy as np
import soundfile as sf

from output.captions import label_sentence, spatial_phrase, trajectory_summary
from output.sample_schema import QUALITY_SCORES, SPATIAL_METRICS, check_json
from output.shards import check_key, check_split
from stages.base import ConfigError, Params, Stage, StageError, settings
from manifests import artifacts as A
from manifests.io import atomic_path, atomic_write_bytes, atomic_write_json
from stages.clipdata import artifact, load_audio
from stages.media import FFMPEG, FFPROBE, _run, local_media

VIDEO_MODES = ("copy_or_encode", "encode", "none")
FLAC_SUBTYPES = ("PCM_16", "PCM_24")
METRIC_COLUMNS = SPATIAL_METRICS  # the json's names are the manifest's columns (output/sample_schema.py)
QUALITY_COLUMNS = QUALITY_SCORES


@settings
class PackageParams(Params):
    video: str = "copy_or_encode"  # copy_or_encode | encode | none (no mp4 member)
    video_crf: int = 23
    video_preset: str = "veryfast"
    video_threads: int = 2  # part of the result: x264's output depends on its thread count
    mp4_audio: bool = False  # the source audio track in the mp4 too (mono.flac has the exact window)
    copy_tolerance_s: float = 0.001  # a keyframe this close to the window start allows stream copy
    flac_subtype: str = "PCM_16"
    default_split: str = "unsplit"  # for rows without a split
    timeout_s: float = 600.0

    def validate(self) -> None:
        if self.video not in VIDEO_MODES:
            raise ConfigError(f"stages.package.video: {self.video!r} is not one of {VIDEO_MODES}")
        if self.flac_subtype not in FLAC_SUBTYPES:
            raise ConfigError(f"stages.package.flac_subtype: {self.flac_subtype!r} is not one of {FLAC_SUBTYPES}")
        if not 0 <= self.video_crf <= 51:
            raise ConfigError("stages.package.video_crf: must be in [0, 51]")
        if self.video_threads < 1:
            raise ConfigError("stages.package.video_threads: must be >= 1")
        try:
            check_split(self.default_split)
        except ValueError as exc:
            raise ConfigError(f"stages.package.default_split: {exc}") from None


# -- media members ---------------------------------------------------------------------------------


def video_window(row: dict, sample_rate: int) -> tuple[float, float]:
    """(start, duration) in seconds of the clip's window in its source video."""
    start = float(row.get("start") or 0.0)
    offset = int(row.get("window_start") or 0) / sample_rate
    samples = row.get("window_samples")
    if samples is None or samples != samples:
        samples = row.get("n_samples") or 0
    return start + offset, int(samples) / sample_rate


def keyframe_at(path: str, t: float, tolerance: float, timeout: float = 60) -> bool:
    """Whether the first video stream has a keyframe within `tolerance` s of `t` (packets only)."""
    out = _run(
        [FFPROBE, "-v", "error", "-select_streams", "v:0", "-read_intervals", f"{max(0.0, t - 2):.3f}%{t + 2:.3f}",
         "-show_entries", "packet=pts_time,flags:stream=start_time", "-of", "json", path],
        "cannot list keyframes", timeout,
    )
    info = json.loads(out or b"{}")
    streams = info.get("streams") or []
    if not streams:
        raise StageError("source has no video stream")
    origin = float(streams[0].get("start_time") or 0.0)
    for packet in info.get("packets") or []:
        pts = packet.get("pts_time")
        if pts is not None and "K" in (packet.get("flags") or "") and abs(float(pts) - origin - t) <= tolerance:
            return True
    return False


BITEXACT = ["-fflags", "+bitexact", "-map_metadata", "-1", "-map_chapters", "-1"]


def cut_video(src: str, dst: str, start: float, duration: float, p: PackageParams) -> str:
    """Write the window to `dst` (mp4); returns 'copy' or 'encode'."""
    mode = "encode"
    if p.video == "copy_or_encode" and keyframe_at(src, start, p.copy_tolerance_s, p.timeout_s):
        mode = "copy"
    seek = ["-ss", f"{start:.6f}"] if start > 0 else []
    audio = ["-map", "0:a:0?"] if p.mp4_audio else ["-an"]
    if mode == "copy":
        codec = ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    else:
        codec = ["-c:v", "libx264", "-preset", p.video_preset, "-crf", str(p.video_crf),
                 "-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2",
                 "-threads", str(p.video_threads), "-flags:v", "+bitexact"]
        if p.mp4_audio:
            codec += ["-c:a", "aac", "-b:a", "128k", "-flags:a", "+bitexact"]
    with atomic_path(dst) as tmp:
        _run([FFMPEG, "-nostdin", "-v", "error", "-y", *seek, "-i", src, "-t", f"{duration:.6f}",
              "-map", "0:v:0", *audio, *codec, *BITEXACT, "-movflags", "+faststart", "-f", "mp4", tmp],
             f"cannot cut the video window ({mode})", p.timeout_s)
    return mode


def flac_bytes(audio: np.ndarray, sample_rate: int, subtype: str) -> tuple[bytes, int]:
    """FLAC of (N,) or (C, N) float audio, clipped to [-1, 1]; (bytes, samples clipped).

    libsndfile writes no time or random field (vendor string and MD5 only): same audio, same bytes.
    """
    audio = np.asarray(audio, dtype=np.float32)
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    data = np.clip(audio, -1.0, 1.0)
    data = data.T if data.ndim == 2 else data
    buf = io.BytesIO()
    sf.write(buf, data, sample_rate, format="FLAC", subtype=subtype)
    return buf.getvalue(), clipped


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _clean(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_bytes(obj: dict) -> bytes:
    return json.dumps(_clean(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# -- the stage ------------------------------------------------------------------------------------


def _load_optional(path: str, width: int) -> np.ndarray:
    if not os.path.exists(path):
        return np.zeros((0, width), np.float32)
    array = np.load(path, allow_pickle=False).astype(np.float32)
    if array.ndim != 2 or array.shape[1] != width:
        raise StageError(f"{path}: expected shape (T, {width}), got {tuple(array.shape)}")
    return array


def content_digest(path: str) -> str | None:
    """What a member is made from, by content (never size + mtime, never the path): two run folders built
    from the same input give the same package fingerprints, hence byte-identical shard .parquet/.stats.json.
    None when the file is absent; a URL stands for itself (fetching it only to hash it costs a download)."""
    if "://" in path:
        return path
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()[:32]
    except OSError:
        return None


PACKAGE_COLUMNS = ("package_path", "package_fingerprint", "sample_split")


def staged_members(out: str, row: dict) -> list[tuple[str, str]] | None:
    """(suffix, absolute path) of the members the row's package_path holds, None when they are gone
    or were staged for another fingerprint."""
    folder = A.row_file(out, row, "package_path")
    if folder is None:
        return None
    try:
        with open(os.path.join(folder, A.PACKAGE_INDEX)) as fh:
            staged = json.load(fh)
        members = [(s, os.path.join(folder, f)) for s, f in staged["members"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if staged.get("fingerprint") != row.get("package_fingerprint") or not all(os.path.exists(p) for _, p in members):
        return None
    return members


class PackageStage(Stage):
    name = "package"
    version = "1"
    Params = PackageParams
    kind = "task"
    data_deps = ("ingest", "localize", "convert")
    reads = ("clip_id", "video", "label", "caption", "split", "source_id", "window_start", "window_samples",
             "conversion_mode", "binaural_path", "spatial_path", "traj_path") + METRIC_COLUMNS
    writes = PACKAGE_COLUMNS

    # -- paths and metadata ---------------------------------------------------------------------------
    def _video_path(self, row: dict) -> str:
        video = str(row.get("video") or "")
        if video and "://" not in video and not os.path.isabs(video) and self.ctx.media_root:
            video = os.path.join(self.ctx.media_root, video)
        return video

    def _paths(self, clip_id: str, row: dict | None = None) -> dict[str, str]:
        row = row or {}
        missing = os.path.join(self.ctx.out, "nonexistent")
        return {  # what the row points at (convert's binaural_path, localize's spatial/traj paths)
            "binaural": A.row_file(self.ctx.out, row, "binaural_path") or missing,
            "spatial": A.row_file(self.ctx.out, row, "spatial_path") or missing,
            "traj": A.row_file(self.ctx.out, row, "traj_path") or missing,
            "staging": A.resolve(self.ctx.out, A.package(clip_id)),
        }

    def metadata(self, row: dict, traj: np.ndarray | None) -> dict:
        """The json member, minus what staging adds (video mode, clipped samples)."""
        sr = self.ctx.sample_rate
        fps = float(row.get("frame_fps") or 8.0)
        start_s, duration_s = video_window(row, sr)
        az = traj[:, 0] if traj is not None and traj.shape[0] else None
        quality = {c: row.get(c) for c in QUALITY_COLUMNS}  # every key always: one schema for all samples
        return {
            "clip_id": row["clip_id"],
            "label": row.get("label"),
            "caption": row.get("caption") or label_sentence(row.get("label")),
            "spatial_caption": spatial_phrase(az),
            "split": row.get("split") or self.params.default_split,
            "source_id": row.get("source_id") or row["clip_id"],
            "window": {"index": row.get("window_index"), "start_s": start_s, "end_s": start_s + duration_s,
                       "start_sample": row.get("window_start"), "padded_samples": row.get("padded_samples")},
            "duration_s": duration_s,
            "sample_rate": sr,
            "silent_fraction": row.get("silent_fraction"),
            "quality": {"backend": row.get("quality_backend"), **quality},
            "conversion_mode": row.get("conversion_mode"),
            "spatial_metrics": {c: row.get(c) for c in METRIC_COLUMNS},
            "trajectory": {**trajectory_summary(traj, fps), "method": row.get("loc_method"),
                           "confidence": row.get("loc_confidence"), "centre_pull": row.get("loc_centre_pull"),
                           "model": row.get("loc_model")},
        }

    def fingerprint(self, row: dict, video: str | None = None) -> str:
        """Identity of the sample's bytes. `video`: a local copy of a fetched source (digested by content,
        so an s3:// or file:// run gives the fingerprints of a plain-path run)."""
        paths = self._paths(row["clip_id"], row)
        traj = _load_optional(paths["traj"], 3) if os.path.exists(paths["traj"]) else None
        audio_src = A.resolve(self.ctx.out, A.ingest_file(str(row.get("source_id") or row["clip_id"]), A.AUDIO))
        blob = json.dumps(_clean({
            "version": self.version,
            "settings": {k: v for k, v in self.measure_settings().items() if k != "timeout_s"},
            "meta": self.metadata(row, traj),
            "files": [content_digest(video or self._video_path(row)) if self.params.video != "none" else None,
                      content_digest(audio_src), *(content_digest(paths[k]) for k in ("binaural", "spatial", "traj"))],
        }), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    # -- staging ---------------------------------------------------------------------------------------
    def stage_sample(self, row: dict, fingerprint: str, video: str | None = None) -> list[tuple[str, str]]:
        """Members as staged files (cached: a matching staged.json means they are ready)."""
        paths = self._paths(row["clip_id"], row)
        folder = paths["staging"]
        marker = os.path.join(folder, A.PACKAGE_INDEX)
        try:
            with open(marker) as fh:
                staged = json.load(fh)
            members = [(s, os.path.join(folder, f)) for s, f in staged["members"]]
            if staged["fingerprint"] == fingerprint and all(os.path.exists(p) for _, p in members):
                return members
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        p, sr = self.params, self.ctx.sample_rate
        mono = load_audio(self.ctx, row)
        binaural = np.load(artifact(self.ctx, row, "binaural_path", "convert"), allow_pickle=False)
        if binaural.ndim != 2 or binaural.shape[0] != 2:
            raise StageError(f"binaural.npy has shape {tuple(binaural.shape)}, expected (2, N)")
        if binaural.shape[1] != mono.shape[0]:
            raise StageError(f"binaural has {binaural.shape[1]} samples, the window {mono.shape[0]}")
        if not np.all(np.isfinite(binaural)):
            raise StageError("binaural audio has non-finite samples")
        spatial, traj = _load_optional(paths["spatial"], 5), _load_optional(paths["traj"], 3)
        files: dict[str, bytes] = {}
        files["binaural.flac"], clipped = flac_bytes(binaural, sr, p.flac_subtype)
        files["mono.flac"], clipped_mono = flac_bytes(mono, sr, p.flac_subtype)
        files["spatial.npy"], files["traj.npy"] = npy_bytes(spatial), npy_bytes(traj)
        meta = self.metadata(row, traj if traj.shape[0] else None)
        members = [("flac", "binaural.flac"), ("mono.flac", "mono.flac"), ("json", "meta.json"),
                   ("spatial.npy", "spatial.npy"), ("traj.npy", "traj.npy")]
        video_mode = None
        if p.video != "none":
            start, duration = video_window(row, sr)
            with local_media(video or self._video_path(row)) as src:
                video_mode = cut_video(src, os.path.join(folder, "video.mp4"), start, duration, p)
            members.append(("mp4", "video.mp4"))
        meta["media"] = {"video": video_mode, "mp4_audio": p.mp4_audio if video_mode else None,
                         "flac_subtype": p.flac_subtype, "clipped_samples": clipped,
                         "clipped_samples_mono": clipped_mono}
        check_json(_clean(meta))  # every sample's json has exactly the schema's fields and types
        files["meta.json"] = json_bytes(meta)
        for name, data in files.items():
            atomic_write_bytes(os.path.join(folder, name), data)
        atomic_write_json(marker, {"fingerprint": fingerprint, "members": members})
        return [(s, os.path.join(folder, f)) for s, f in members]

    # -- the per-clip call ----------------------------------------------------------------------------
    def measure_one(self, row: dict) -> dict:
        key = str(row.get("clip_id"))
        check_key(key)  # ValueError: the row fails with the reason
        split = str(row.get("split") or self.params.default_split)
        check_split(split)
        try:
            with (local_media(self._video_path(row)) if self.params.video != "none" else nullcontext()) as video:
                fingerprint = self.fingerprint(row, video)  # one fetch of a remote source serves both
                self.stage_sample(row, fingerprint, video)
        except BaseException:
            shutil.rmtree(self._paths(key)["staging"], ignore_errors=True)  # a failed clip leaves nothing
            raise
        return {"package_path": A.package(key), "package_fingerprint": fingerprint, "sample_split": split}
