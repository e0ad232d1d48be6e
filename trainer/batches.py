"""From one sample's features to a fixed-size training example, and examples to a batch.

10 s clips are 312.5 latent frames; training takes a random crop of `crop_frames` (the paper:
8 s = 250) and resamples every condition to the crop's time span: visual at 8 fps, sync at
24 fps, S_sound at its own fps (the model upsamples it to the latent rate). A condition with no
frames (clip not localised, no video, no caption) is marked absent: the model uses its null.
"""

from __future__ import annotations

import numpy as np
import torch

from trainer import encoders as enc


def time_window(array: np.ndarray, fps: float, start_s: float, dur_s: float, n: int) -> tuple[np.ndarray, bool]:
    """`n` rows of (T, C) `array` at `fps` covering [start_s, start_s + dur_s) (nearest frame)."""
    if array.shape[0] == 0:
        return np.zeros((n, array.shape[1]), np.float32), False
    centres = start_s + (np.arange(n) + 0.5) * dur_s / n
    idx = np.clip(np.floor(centres * fps).astype(np.int64), 0, array.shape[0] - 1)
    return array[idx].astype(np.float32), True


def condition_lengths(crop_frames: int, rate: float) -> tuple[int, int, int]:
    dur = crop_frames / rate
    return max(1, round(dur * enc.VISUAL_FPS)), max(1, round(dur * enc.SYNC_FPS)), max(1, round(dur * enc.VISUAL_FPS))


def example(feat: dict, crop_frames: int, rate: float, mean: np.ndarray, std: np.ndarray,
            rng: np.random.Generator, random_crop: bool = True) -> dict:
    """Normalised latent crop (2, L, D) and its time-aligned conditions."""
    lat = feat["lat"]
    frames = lat.shape[1]
    if frames >= crop_frames:
        start = int(rng.integers(0, frames - crop_frames + 1)) if random_crop else 0
        lat = lat[:, start : start + crop_frames]
    else:  # shorter clip: pad with silence
        start = 0
        lat = np.concatenate([lat, np.zeros((2, crop_frames - frames, lat.shape[2]), lat.dtype)], axis=1)
    lat = (lat - mean) / std
    t0, dur = start / rate, crop_frames / rate
    n_vis, n_sync, n_sp = condition_lengths(crop_frames, rate)
    vis, has_vis = time_window(feat["vis"], enc.VISUAL_FPS, t0, dur, n_vis)
    sync, _ = time_window(feat["sync"], enc.SYNC_FPS, t0, dur, n_sync)
    sp_fps = float(feat["meta"].get("spatial_fps") or enc.VISUAL_FPS)
    spatial, has_sp = time_window(feat["spatial"], sp_fps, t0, dur, n_sp)
    has_text = feat["text"].shape[0] > 0
    text = feat["text"][:1].astype(np.float32) if has_text else np.zeros((1, enc.TEXT_DIM), np.float32)
    return {"key": feat["key"], "latent": lat.astype(np.float32), "visual": vis, "visual_mask": has_vis,
            "sync": sync, "text": text, "text_mask": has_text, "spatial": spatial, "spatial_mask": has_sp,
            "start": start}


def collate(examples: list[dict]) -> dict:
    out = {"key": [e["key"] for e in examples], "start": torch.tensor([e["start"] for e in examples])}
    for name in ("latent", "visual", "sync", "text", "spatial"):
        out[name] = torch.from_numpy(np.stack([e[name] for e in examples]))
    for name in ("visual_mask", "text_mask", "spatial_mask"):
        out[name] = torch.tensor([bool(e[name]) for e in examples])
    return out


def drop_conditions(batch: dict, p: float, generator: torch.Generator) -> dict:
    """Classifier-free guidance training: each of text, video, spatial replaced by its null with p."""
    b = batch["latent"].shape[0]
    out = dict(batch)
    for name in ("text_mask", "visual_mask", "spatial_mask"):
        keep = torch.rand(b, generator=generator) >= p
        out[name] = batch[name] & keep
    return out


COND_KEYS = ("visual", "visual_mask", "sync", "text", "text_mask", "spatial", "spatial_mask")


def conditions(batch: dict, device) -> dict:
    return {k: batch[k].to(device) for k in COND_KEYS}
