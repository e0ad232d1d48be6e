"""Deterministic fixtures shared by the tests and the benchmarks (never used to build a dataset).

synthetic_pool   -- stand-in source clips (varied sounds, a coloured object on a texture)
localised_pool   -- real clips as the pipeline hands them to train_unet: a localiser's heatmaps and trajectory
tiny_model_path  -- the tiny U-Net trained once on a pool (the synthetic one by default) and cached
paper_tiny_model_path -- the same with the paper's training data (first-order targets through KEMAR,
                   L + R input, black canvas): the `paper` row of benchmarks/eval_spatial
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np
import torch

from binauralizer.pseudobinaural.pseudo_pairs import SAMPLE_RATE, SourceClip
from binauralizer.pseudobinaural.training import TINY, TrainConfig, checkpoint_dir, train


def synthetic_pool(n_clips: int = 12, seed: int = 0, seconds: float = 2.0, frame_hw=(224, 288),
                   fps: float = 8.0) -> list[SourceClip]:
    """Deterministic stand-in sources for tests, benchmarks and the evaluation: varied sounds
    (harmonic tones with vibrato, band-passed noise bursts, chirps, click trains, AM noise) and
    a frame of a coloured object on a textured background. Physics comes later, from real HRIRs.
    """
    from scipy import signal

    sr, n = SAMPLE_RATE, int(seconds * SAMPLE_RATE)
    t = np.arange(n) / sr
    pool = []
    for k in range(n_clips):
        rng = np.random.default_rng(seed * 1000 + k)
        kind = k % 5
        if kind == 0:
            f0 = rng.uniform(110, 440)
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / sr
            x = sum(np.sin(h * phase) / h for h in range(1, 12) if h * f0 < sr / 2)
        elif kind == 1:
            lo = rng.uniform(200, 2000)
            sos = signal.butter(4, [lo, min(lo * 4, 7500)], "bandpass", fs=sr, output="sos")
            env = (np.sin(2 * np.pi * rng.uniform(1.5, 4) * t) > 0).astype(float)
            x = signal.sosfilt(sos, rng.standard_normal(n)) * signal.lfilter([0.01], [1, -0.99], env)
        elif kind == 2:
            x = signal.chirp(t % 0.5, rng.uniform(200, 800), 0.5, rng.uniform(2000, 6000))
        elif kind == 3:
            x = np.zeros(n)
            x[:: int(sr / rng.uniform(4, 20))] = 1.0
            x = signal.lfilter(*signal.butter(2, rng.uniform(1000, 5000), fs=sr), x) * 20
        else:
            x = rng.standard_normal(n) * (1 + np.sin(2 * np.pi * rng.uniform(2, 8) * t))
            x = signal.sosfilt(signal.butter(2, rng.uniform(500, 6000), fs=sr, output="sos"), x)
        x = (x / (np.abs(x).max() + 1e-9) * 0.5).astype(np.float32)
        h, w = frame_hw
        yy, xx = np.mgrid[0:h, 0:w]
        bg = (60 + 40 * np.sin(xx / rng.uniform(5, 20)) * np.cos(yy / rng.uniform(5, 20))).astype(np.float32)
        frame = np.repeat(bg[..., None], 3, axis=2)
        colour = rng.uniform(80, 255, 3)
        r = min(h, w) * rng.uniform(0.2, 0.35)
        if kind % 2:
            mask = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r**2
        else:
            mask = (np.abs(yy - h / 2) < r) & (np.abs(xx - w / 2) < r)
        frame[mask] = colour
        frames = np.repeat(frame.clip(0, 255).astype(np.uint8)[None], int(seconds * fps), axis=0)
        pool.append(SourceClip(f"synthetic_{seed}_{k:03d}", x, frames, fps))
    return pool


def localised_pool(clips, localiser: str = "motion", localiser_options: dict | None = None,
                   **traj_options) -> list[SourceClip]:
    """Source clips with what `localize` would give train_unet: heatmaps and the trajectory from them.

    `clips`: (clip_id, mono audio, frames (T, H, W, 3) uint8, fps) tuples; `localiser_options` go to
    build_localiser (e.g. fusion-learned's checkpoint).
    """
    from binauralizer.localize import build_localiser
    from binauralizer.localize.trajectory import trajectory_from_heatmaps

    loc = build_localiser(localiser, **(localiser_options or {}))
    pool = []
    for clip_id, audio, frames, fps in clips:
        heat = np.asarray(loc.heatmaps(frames, audio), np.float32)
        traj = trajectory_from_heatmaps(heat, **traj_options)
        pool.append(SourceClip(str(clip_id), np.asarray(audio, np.float32), frames, float(fps), heat, traj))
    return pool


_SOURCES = ("pseudobinaural/unet.py", "pseudobinaural/training.py", "pseudobinaural/pseudo_pairs.py",
            "pseudobinaural/backbones.py", "sh_render.py", "hrir.py", "localize/trajectory.py")


def tiny_model_path(cache_root: str | None = None, cfg: TrainConfig = TINY, pool_seed: int = 0, pool_size: int = 12,
                    pool_factory=None, pool_key: str = "") -> str:
    """Train the tiny configuration on the synthetic pool (or `pool_factory()`, named by `pool_key`)
    once and cache it; returns model.pt.

    The cache key covers the configuration, the pool and the source of every module that shapes
    the result, so a code change retrains instead of reusing a stale model.
    """
    here = os.path.dirname(os.path.abspath(__file__))  # binauralizer/
    h = hashlib.sha256(cfg.fingerprint().encode() + f"{cfg.steps}/{pool_seed}/{pool_size}/{pool_key}".encode())
    for name in _SOURCES:
        p = os.path.join(here, name)
        if os.path.exists(p):
            h.update(open(p, "rb").read())
    root = cache_root or os.path.join(tempfile.gettempdir(), "binauralvgg-tiny-unet")
    out_dir = os.path.join(root, h.hexdigest()[:16])
    model_path = os.path.join(out_dir, "model.pt")
    if not os.path.exists(model_path):
        import fcntl

        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test processes train it once
            if not os.path.exists(model_path):
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # robust on a shared machine (2 threads spin against other work)
                try:
                    pool = pool_factory() if pool_factory else synthetic_pool(pool_size, seed=pool_seed)
                    train(cfg, pool, out_dir)
                finally:
                    torch.set_num_threads(threads)
                import shutil

                shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)  # the cache keeps the model only
                prune_unused(root, keep=os.path.basename(out_dir))
    os.utime(model_path)  # in use: the mark prune_unused reads
    return model_path


def prune_unused(root: str, keep: str, max_idle_s: float = 7 * 86400.0) -> list[str]:
    """Remove cached models nobody used for `max_idle_s` (default a week); returns what went.

    Only idle entries go: another pool, configuration or checkout sharing the folder keeps its
    model while it is in use (deleting every other entry once removed a model a parallel
    checkout's test was about to load).
    """
    import shutil
    import time

    gone = []
    for other in sorted(os.listdir(root)):
        entry = os.path.join(root, other)
        if other == keep or not os.path.isdir(entry):
            continue
        model = os.path.join(entry, "model.pt")
        stamp = os.path.getmtime(model if os.path.exists(model) else entry)
        if time.time() - stamp > max_idle_s:
            shutil.rmtree(entry, ignore_errors=True)
            gone.append(other)
    return gone


def paper_tiny_model_path() -> str:
    """The tiny U-Net trained on PseudoBinaural's own recipe, cached apart from the default one."""
    import dataclasses

    cfg = dataclasses.replace(TINY, target="paper", input="downmix", background="black", hrir="kemar", lr_fusion=2e-3,
                              heatmap=False, mask_range=1.0, cue_weight=0.0, own_frame_prob=0.0, align=False,
                              ratio_target=False)
    return tiny_model_path(os.path.join(tempfile.gettempdir(), "binauralvgg-tiny-unet-paper"), cfg)
