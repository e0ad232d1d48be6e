"""Generation from a checkpoint: conditions from a video (or arrays), Euler + CFG, decode per ear.

`python -m trainer sample --ckpt C --video V --out O` writes O.wav (2 channels, row 0 = left,
16 kHz) and O.mp4 (V's picture with the generated sound). S_sound comes from the project's
weight-free localiser (`motion`) on V's frames and audio, or from `--spatial S.npy`.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import soundfile as sf
import torch

from trainer import batches as bt
from trainer import encoders as enc
from trainer.codec import load_codec
from trainer.codec import n_frames as latent_frames
from trainer.train import build_model, load_checkpoint
from binauralizer.constants import SAMPLE_RATE

LOCALISER_SIZE = (224, 224)


class Generator:
    """A checkpoint's EMA model, its codec and latent statistics."""

    def __init__(self, ckpt_path: str, codec: str | None = None, device: str = "cpu"):
        if not os.path.isfile(ckpt_path):
            raise FileNotFoundError(f"checkpoint {ckpt_path!r} not found: train one with `make train` or "
                                    "`python -m trainer train` (checkpoints are in RUN/checkpoints/)")
        self.ckpt = load_checkpoint(ckpt_path)
        self.device = torch.device(device)
        self.model = build_model(self.ckpt).to(self.device)
        lat = self.ckpt["latent"]
        self.rate = float(lat["rate"])
        self.mean = torch.tensor(lat["mean"], dtype=torch.float32)
        self.std = torch.tensor(lat["std"], dtype=torch.float32)
        spec = codec or self.ckpt["codec"]
        try:
            self.codec = load_codec(spec)
        except Exception as exc:  # noqa: BLE001 - say which flag fixes it
            raise RuntimeError(f"cannot load the checkpoint's codec {spec!r} ({exc}); pass --codec PATH") from exc

    def conditions(self, feat: dict, n_frames: int) -> dict:
        """A one-clip batch of conditions spanning `n_frames` latent frames from the clip's start."""
        ex = bt.example({**feat, "lat": np.zeros((2, n_frames, self.codec.dim), np.float32)}, n_frames, self.rate,
                        np.zeros(1, np.float32), np.ones(1, np.float32), np.random.default_rng(0), random_crop=False)
        return bt.conditions(bt.collate([ex]), self.device)

    def generate(self, cond: dict, n_samples: int, steps: int = 25, cfg: float = 4.5, seed: int = 0) -> np.ndarray:
        """(B, 2, n_samples) waveforms for a batch of conditions."""
        n_frames = latent_frames(n_samples)
        gen = torch.Generator().manual_seed(seed)
        lat = self.model.sample(cond, n_frames, steps=steps, cfg=cfg, generator=gen).cpu()
        lat = lat * self.std + self.mean
        return np.stack([self.codec.decode(x, n_samples).numpy() for x in lat])


def video_features(path: str, encoders: enc.Encoders, spatial: str | None, localiser: str = "motion") -> dict:
    """Conditions of a video file: visual, sync, S_sound (localiser or --spatial), no caption."""
    from trainer import deps

    vis, sync = encoders.video_file(path)
    if spatial:
        s = np.load(spatial).astype(np.float32)
        if s.ndim != 2 or s.shape[1] != enc.SPATIAL_DIM:
            raise ValueError(f"--spatial {spatial}: expected a (T, 5) array at 8 fps, got {s.shape}")
    else:
        frames = deps.decode_frames(path, enc.VISUAL_FPS, *LOCALISER_SIZE)
        try:
            audio = deps.decode_audio(path, SAMPLE_RATE)
            audio = audio.mean(axis=0) if audio.ndim == 2 else audio
        except Exception:  # noqa: BLE001 - a silent video: the localiser sees silence
            audio = np.zeros(int(len(frames) / enc.VISUAL_FPS * SAMPLE_RATE), np.float32)
        heat = deps.build_localiser(localiser).heatmaps(frames, audio.astype(np.float32))
        s = deps.spatial_features(heat)
    return {"key": os.path.basename(path), "vis": vis, "sync": sync, "text": np.zeros((0, enc.TEXT_DIM), np.float32),
            "spatial": s, "meta": {"spatial_fps": enc.VISUAL_FPS}}


def duration_s(path: str) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                         capture_output=True, text=True)
    try:
        return float(out.stdout.strip())
    except ValueError:
        raise ValueError(f"{path}: ffprobe cannot read its duration ({out.stderr.strip()[:200]})") from None


def sample_video(ckpt: str, video: str, out: str, spatial: str | None = None, caption: str | None = None,
                 seconds: float | None = None, steps: int = 25, cfg: float = 4.5, seed: int = 0,
                 codec: str | None = None) -> dict:
    if not os.path.isfile(video):
        raise FileNotFoundError(f"--video {video!r} not found")
    gen = Generator(ckpt, codec)
    conf = gen.ckpt["config"]
    encoders = enc.Encoders("cpu", conf.get("visual_size", 224), clip=conf.get("clip"), synchformer=conf.get("synchformer"))
    feat = video_features(video, encoders, spatial)
    if caption:
        feat["text"] = encoders.text(caption)
    dur = seconds or duration_s(video)
    n = int(round(dur * SAMPLE_RATE))
    audio = gen.generate(gen.conditions(feat, latent_frames(n)), n, steps, cfg, seed)[0]
    base = out.removesuffix(".wav").removesuffix(".mp4")
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    wav = base + ".wav"
    sf.write(wav, np.clip(audio, -1, 1).T, SAMPLE_RATE, subtype="PCM_16")
    mp4 = base + ".mp4"
    proc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", video, "-i", wav, "-map", "0:v:0",
                           "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "192k", "-shortest", mp4],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not mux {mp4}: {proc.stderr.strip()[:300]}")
    return {"wav": wav, "mp4": mp4, "seconds": dur, "channels": int(audio.shape[0]), "samples": int(audio.shape[1]),
            "spatial_source": spatial or "localiser:motion"}
