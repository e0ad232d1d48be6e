"""Read and write a clip's intermediates in the run's work folder.

`ingest` decodes each source video once into `work/ingest/<source_id>/`: `audio.npy` (16 kHz mono
float32) and the frames (sampled at `frame_fps` from t = 0), either as JPEG (`frames_jpeg.npy`, the
concatenated JPEG bytes encoded by ffmpeg, + `frames_index.npy`, offsets; over 10x smaller than
raw, mean error of a few grey levels) or raw (`frames.npy`, uint8 T x H x W x 3). Every later stage reads the
clip's exact window through the functions below, so a window (`{id}_w{k}` from `duration`) is a
slice, never a second decode.

Row columns used here: source_id, window_start (samples), window_samples, frame_fps,
padded_samples (zeros appended when a clip was within tolerance of the window length).
"""

from __future__ import annotations

import os

import numpy as np

from manifests import artifacts as A
from manifests.io import atomic_save_npy
from stages.base import RunContext, StageError

__all__ = ["atomic_save_npy", "ingest_dir", "load_audio", "load_frames", "save_frames", "has_media",
           "artifact", "read_artifact", "WindowFrames"]


def ingest_dir(ctx: RunContext, source_id: str) -> str:
    return A.resolve(ctx.out, A.ingest_dir(source_id))


def _load(path: str, mmap: bool = True) -> np.ndarray:
    if not os.path.exists(path):
        raise StageError(f"missing intermediate {path}: rerun ingest (python -m pipeline build --from ingest)")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_audio(ctx: RunContext, row: dict) -> np.ndarray:
    """The clip's audio window: float32 mono at ctx.sample_rate, exactly `window_samples` long."""
    audio = _load(os.path.join(ingest_dir(ctx, row.get("source_id") or row["clip_id"]), A.AUDIO))
    start = int(row.get("window_start") or 0)
    n = row.get("window_samples")
    n = int(n) if n is not None and n == n else audio.shape[0] - start
    out = np.asarray(audio[start : start + n], dtype=np.float32)
    if out.shape[0] < n:  # within tolerance: zero-pad to the exact window length
        out = np.concatenate([out, np.zeros(n - out.shape[0], np.float32)])
    return out


def save_frames(folder: str, frames) -> None:
    """Store frames: a uint8 (T, H, W, 3) array as raw `frames.npy`, or a list of JPEG byte strings
    (encoded by ffmpeg at decode time) as `frames_jpeg.npy` + `frames_index.npy`, the index last."""
    if isinstance(frames, np.ndarray):
        atomic_save_npy(os.path.join(folder, A.FRAMES_RAW), frames)
        return
    offsets = np.cumsum([0] + [len(b) for b in frames]).astype(np.int64)
    data = np.frombuffer(b"".join(frames), np.uint8)
    atomic_save_npy(os.path.join(folder, A.FRAMES_JPEG), data)
    atomic_save_npy(os.path.join(folder, A.FRAMES_INDEX), offsets)


def has_media(ctx: RunContext, source_id: str) -> bool:
    """True when ingest left both the audio and the frames of this source."""
    folder = ingest_dir(ctx, source_id)
    frames = os.path.exists(os.path.join(folder, A.FRAMES_RAW)) or os.path.exists(os.path.join(folder, A.FRAMES_INDEX))
    return frames and os.path.exists(os.path.join(folder, A.AUDIO))


class _JpegFrames:
    """Lazy frame sequence: slicing decodes only the frames asked for."""

    def __init__(self, folder: str):
        self.data = _load(os.path.join(folder, A.FRAMES_JPEG))
        self.offsets = _load(os.path.join(folder, A.FRAMES_INDEX), mmap=False)
        self.shape = (len(self.offsets) - 1,)

    def __getitem__(self, item: slice) -> np.ndarray:
        import io

        from PIL import Image

        frames = [
            np.asarray(Image.open(io.BytesIO(self.data[self.offsets[i] : self.offsets[i + 1]].tobytes())).convert("RGB"))
            for i in range(*item.indices(self.shape[0]))
        ]
        return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def _frames(ctx: RunContext, source_id: str):
    folder = ingest_dir(ctx, source_id)
    if os.path.exists(os.path.join(folder, A.FRAMES_INDEX)):
        return _JpegFrames(folder)
    return _load(os.path.join(folder, A.FRAMES_RAW))


def load_frames(ctx: RunContext, row: dict) -> np.ndarray:
    """The clip's frames that fall inside its window: uint8 (T, H, W, 3)."""
    frames = _frames(ctx, row.get("source_id") or row["clip_id"])
    fps = float(row.get("frame_fps") or 8.0)
    start = int(row.get("window_start") or 0)
    n = row.get("window_samples")
    i0 = int(round(start / ctx.sample_rate * fps))
    if n is None or n != n:
        return np.asarray(frames[i0:])
    count = int(round(int(n) / ctx.sample_rate * fps))
    out = np.asarray(frames[i0 : i0 + count])
    if 0 < out.shape[0] < count:  # last frames missing (stream ends early): repeat the last one
        out = np.concatenate([out, np.repeat(out[-1:], count - out.shape[0], axis=0)])
    return out


def artifact(ctx: RunContext, row: dict, column: str, producer: str) -> str:
    """Absolute path of the artefact the row points at in `column`; a readable error naming the
    stage to rerun when the row has none or the file is gone."""
    path = A.row_file(ctx.out, row, column)
    if path is None:
        raise StageError(f"no {column} in the row: run {producer} first")
    if not os.path.exists(path):
        raise StageError(f"missing {path}: rerun {producer}")
    return path


def read_artifact(ctx: RunContext, row: dict, column: str, width: int | None = None) -> np.ndarray | None:
    """The (T, width) array a row points at in `column` (e.g. traj_path), None when it has none."""
    path = A.row_file(ctx.out, row, column)
    if path is None or not os.path.exists(path):
        return None
    array = np.load(path, allow_pickle=False)
    if width is not None and (array.ndim != 2 or array.shape[1] != width):
        raise StageError(f"{os.path.basename(path)} has shape {tuple(array.shape)}, expected (T, {width})")
    return array


class WindowFrames:
    """The frames of a clip's window as a lazy sequence: `len()` reads no pixels, `[t]` decodes one
    frame (a trainer drawing one frame per clip never decodes the other 79 of a 10 s clip)."""

    def __init__(self, ctx: RunContext, row: dict):
        self.frames = _frames(ctx, row.get("source_id") or row["clip_id"])
        fps = float(row.get("frame_fps") or 8.0)
        self.start = int(round(int(row.get("window_start") or 0) / ctx.sample_rate * fps))
        n = row.get("window_samples")
        available = max(0, int(self.frames.shape[0]) - self.start)
        self.count = available if n is None or n != n else int(round(int(n) / ctx.sample_rate * fps))
        self.last = self.start + max(0, min(self.count, available) - 1)  # a short stream repeats its last frame

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, t: int) -> np.ndarray:
        if not 0 <= t < self.count:
            raise IndexError(f"frame {t} outside the window's {self.count}")
        i = min(self.start + int(t), self.last)
        return np.asarray(self.frames[i : i + 1])[0]
