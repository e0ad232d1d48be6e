"""U-Net speed on CPU: conversion throughput per core, batching, training steps/s, actor memory.

Every figure runs in a fresh subprocess with ONE torch thread (so "per core" is literal and the
peak resident memory (VmHWM, reset after the inputs are made) is that of one convert actor: torch,
the model, its inputs, activations).
Conversion: 10 s clips, 0.63 s windows with a 0.1 s hop (96 windows per clip), for the tiny
model the sample run trains and for the paper-scale architecture (width 1.0, 224 x 448 frames;
speed does not depend on weight values, so its weights are seeded random apart from the real
ImageNet MobileNetV2). Batching: the same conversion with window batches of 1, 8 (the CPU
default of `convert`) and 64 (the GPU default).
Training: steps/s of the tiny configuration (batch 16 pseudo pairs, rendering included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CLIP_S = 10.0


def _convert(scale: str, window_batch: int, clips: int) -> dict:
    import time

    import torch

    from binauralizer.pseudobinaural import unet
    from binauralizer.pseudobinaural.conversion import ClipInput, UNetConverter
    from binauralizer.testing import synthetic_pool
    from binauralizer.testing import tiny_model_path

    torch.set_num_threads(1)
    if scale == "tiny":
        model = unet.load_model(tiny_model_path())
    else:
        torch.manual_seed(0)
        model = unet.build_model(unet.UNetConfig(width=1.0, frame_size=(224, 448))).eval()
    conv = UNetConverter(model, batch_size=window_batch)
    pool = synthetic_pool(clips, seed=3, seconds=CLIP_S, frame_hw=(224, 398))
    inputs = [ClipInput(c.audio, c.frames, c.fps) for c in pool]
    conv.convert(inputs[:1])  # warm-up (allocator, oneDNN kernels)
    _reset_peak_rss()  # the synthetic inputs' generation peaked higher than an actor ever does
    t0 = time.perf_counter()
    conv.convert(inputs)
    dt = time.perf_counter() - t0
    return {"clips_per_s_per_core": clips / dt, "realtime_factor_per_core": clips * CLIP_S / dt,
            "peak_rss_mb": _peak_rss_mb()}


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM, the peak resident set."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM): model, inputs, activations."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def _train(steps: int) -> dict:
    import dataclasses
    import tempfile
    import time

    import torch

    from binauralizer.testing import synthetic_pool
    from binauralizer.pseudobinaural.training import TINY, train

    torch.set_num_threads(1)
    pool = synthetic_pool(12, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        train(dataclasses.replace(TINY, steps=2, checkpoint_every=1000), pool, tmp)  # warm-up run
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(dataclasses.replace(TINY, steps=steps, checkpoint_every=1000), pool, tmp)
        dt = time.perf_counter() - t0
    return {"steps_per_s": steps / dt, "seconds_for_tiny_config": TINY.steps * dt / steps}


def _in_subprocess(name: str, *args) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {ROOT!r}); from benchmarks import bench_unet as b; "
            f"print('RESULT' + json.dumps(b.{name}(*{args!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def run() -> dict:
    from binauralizer.testing import tiny_model_path

    tiny_model_path()  # train (or reuse) the tiny model outside the timed subprocesses
    tiny = _in_subprocess("_convert", "tiny", 8, 3)
    tiny_b1 = _in_subprocess("_convert", "tiny", 1, 3)
    tiny_b64 = _in_subprocess("_convert", "tiny", 64, 3)
    paper = _in_subprocess("_convert", "paper", 8, 1)
    train = _in_subprocess("_train", 10)
    result = {
        "tiny_convert_clips_per_s_per_core": tiny["clips_per_s_per_core"],
        "tiny_convert_realtime_factor_per_core": tiny["realtime_factor_per_core"],
        "tiny_convert_batch1_clips_per_s_per_core": tiny_b1["clips_per_s_per_core"],
        "tiny_convert_batch64_clips_per_s_per_core": tiny_b64["clips_per_s_per_core"],
        "batching_speedup_8_vs_1": tiny["clips_per_s_per_core"] / tiny_b1["clips_per_s_per_core"],
        "tiny_actor_peak_rss_mb": tiny["peak_rss_mb"],
        "tiny_actor_peak_rss_mb_batch64": tiny_b64["peak_rss_mb"],
        "paper_convert_clips_per_s_per_core": paper["clips_per_s_per_core"],
        "paper_convert_realtime_factor_per_core": paper["realtime_factor_per_core"],
        "paper_actor_peak_rss_mb": paper["peak_rss_mb"],
        "tiny_train_steps_per_s": train["steps_per_s"],
        "tiny_train_seconds_estimate": train["seconds_for_tiny_config"],
    }
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
