"""Quality stage throughput: Audiobox Aesthetics clips/s on CPU at batch sizes 1, 4, 8.

Runs the real architecture with seeded random weights (the real ones cannot be fetched here;
speed and memory do not depend on weight values) on 10 s clips, 2 torch threads. Each batch
size runs in a fresh subprocess so its peak memory is that of one actor: `ru_maxrss` from
resource.getrusage (peak resident set of the whole process: torch, model, activations).
Also times the dsp fallback on the same clips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCH_SIZES = (1, 4, 8)
CLIPS_PER_BATCH_SIZE = {1: 4, 4: 8, 8: 8}
THREADS = 2
SR = 16000


def _clips(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(10 * SR)).astype(np.float32) for _ in range(n)]


def _worker(checkpoint: str, batch_size: int, n_clips: int) -> dict:
    """One actor's life: load the model, warm up, score n 10 s clips `batch_size` windows per forward."""
    import resource

    import torch

    from audioquality.audiobox import AudioboxScorer

    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    scorer = AudioboxScorer(checkpoint, device="cpu", precision="fp32", batch_size=batch_size)
    load_s = time.perf_counter() - t0
    clips = _clips(n_clips)
    scorer.score(clips[:1])  # warm-up: first-call allocations
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n_clips, batch_size):
        scorer.score(clips[i : i + batch_size])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "batch_size": batch_size,
        "clips": n_clips,
        "clips_per_s": round(n_clips / elapsed, 3),
        "s_per_clip": round(elapsed / n_clips, 3),
        # CPU seconds (all threads) per clip: comparable across runs on a busy machine.
        "cpu_s_per_clip": round(cpu / n_clips, 3),
        "model_load_s": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _dsp_speed(n_clips: int = 20) -> float:
    from audioquality.dsp import dsp_scores

    clips = _clips(n_clips, seed=1)
    t0 = time.perf_counter()
    for clip in clips:
        dsp_scores(clip)
    return round(n_clips / (time.perf_counter() - t0), 1)


def run() -> dict:
    from audioquality.audiobox import write_random_checkpoint

    results = {
        "threads": THREADS,
        "clip_seconds": 10,
        "weights": "random (real architecture, 94.4 M params)",
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),  # > cores: other work shares the CPU
    }
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        checkpoint = write_random_checkpoint(os.path.join(tmp, "checkpoint.pt"), seed=0)
        for bs in BATCH_SIZES:
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--worker", checkpoint, str(bs), str(CLIPS_PER_BATCH_SIZE[bs])],
                capture_output=True, text=True, check=True, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": str(THREADS)},
            )
            worker = json.loads(proc.stdout.strip().splitlines()[-1])
            results[f"audiobox_cpu_bs{bs}"] = worker
        results["sample_run_share"] = _share_of_sample_run(checkpoint, tmp)
    results["peak_memory_note"] = "peak_rss_mb = ru_maxrss of a fresh subprocess per batch size (one actor)"
    results["dsp_clips_per_s"] = _dsp_speed()
    return results


def _share_of_sample_run(checkpoint: str, tmp: str) -> dict:
    """The sample run (ingest..quality, Ray, Audiobox architecture) and the share of its wall time in quality."""
    from pipeline.config import load_config
    from pipeline.runner import BuildRequest, build
    from samplegen import generate_sample

    sample = os.path.join(tmp, "sample")
    generate_sample(sample, clips=24, seed=0)
    config = load_config(os.path.join(ROOT, "configs", "sample.yaml"), {
        "run.stages": ["ingest", "duration", "silence", "quality"],
        "stages.quality.backend": "audiobox", "stages.quality.checkpoint": checkpoint,
    })
    stats = build(BuildRequest(config=config, input=os.path.join(sample, "manifest.csv"), out=os.path.join(tmp, "run"),
                               media_root=sample, executor="ray", progress=False))
    walls = {name: s["wall_s"] or 0.0 for name, s in stats["stages"].items()}
    return {"stage_wall_s": walls, "quality_share": round(walls["quality"] / sum(walls.values()), 3),
            "clips_scored": stats["stages"]["quality"]["in"]}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        print(json.dumps(run(), indent=2))
