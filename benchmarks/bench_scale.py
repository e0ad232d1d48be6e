"""Issue 12: does a run stay flat in memory and linear in time as the dataset grows?

The same cheap pipeline (ingest, duration, silence, convert mode mono, package without video, shard; 1 s clips at
64x48, chunks of 64) runs on SMALL and LARGE synthetic clip sets with the Ray executor on this machine.
Peak memory is each process's VmHWM read from /proc while the run lasts: the driver, and the largest of
its Ray workers. Linear time means wall(LARGE) / wall(SMALL) within 20 % of LARGE / SMALL. Clips are hard
links of 16 distinct encodes, so generating the media costs seconds; every row is still decoded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = int(os.environ.get("BENCH_SCALE_SMALL", "200"))
LARGE = int(os.environ.get("BENCH_SCALE_LARGE", "2000"))
SETTINGS = ["run.stages=[ingest, duration, silence, convert, package, shard]", "run.chunk_size=64", "executor.num_cpus=2",
            "stages.ingest.fps=4", "stages.ingest.short_side=32", "stages.duration.min_seconds=0.5",
            "stages.duration.window_seconds=1.0", "stages.convert.mode=mono", "stages.package.video=none"]


def _media(folder: str, clips: int) -> str:
    sys.path.insert(0, os.path.join(ROOT, "tests", "reliability"))
    from corpus import clip

    os.makedirs(folder, exist_ok=True)
    sources = [clip(os.path.join(folder, f"src{k:02d}.mp4"), seconds=1.0, freq=300 + 40 * k) for k in range(16)]
    lines = ["clip_id,video"]
    for i in range(clips):
        name = f"c{i:05d}.mp4"
        os.link(sources[i % len(sources)], os.path.join(folder, name))
        lines.append(f"c{i:05d},{name}")
    path = os.path.join(folder, "manifest.csv")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _run(clips: int, tmp: str) -> dict:
    sys.path.insert(0, os.path.join(ROOT, "tests", "reliability"))
    from procs import descendants

    media = os.path.join(tmp, f"media{clips}")
    manifest = _media(media, clips)
    out = os.path.join(tmp, f"run{clips}")
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", os.path.join(ROOT, "configs", "sample.yaml"),
           "--input", manifest, "--media-root", media, "--out", out, "--executor", "ray", "--no-progress"]
    for item in SETTINGS:
        cmd += ["--set", item]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver, workers = 0, 0
    while proc.poll() is None:
        driver = max(driver, _hwm_kb(proc.pid))
        for pid in descendants(proc.pid):
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read().startswith(b"ray::"):
                    workers = max(workers, _hwm_kb(pid))
        time.sleep(0.25)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read()[-3000:])
    return {"wall_s": wall, "driver_peak_mb": driver / 1024, "worker_peak_mb": workers / 1024}


def run() -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    try:
        small, large = _run(SMALL, tmp), _run(LARGE, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    time_ratio = large["wall_s"] / small["wall_s"] / (LARGE / SMALL)
    driver_ratio = large["driver_peak_mb"] / small["driver_peak_mb"]
    worker_ratio = large["worker_peak_mb"] / small["worker_peak_mb"]
    rows = [f"| {n} clips | {r['wall_s']:.1f} | {1000 * r['wall_s'] / n:.1f} | {r['driver_peak_mb']:.0f} | "
            f"{r['worker_peak_mb']:.0f} |" for n, r in ((SMALL, small), (LARGE, large))]
    markdown = "\n".join(["| run | wall s | ms per clip | driver peak MB | largest worker peak MB |",
                          "|---|---|---|---|---|", *rows])
    return {"markdown": markdown, "small": SMALL, "large": LARGE,
            "wall_per_clip_ratio": time_ratio, "driver_peak_ratio": driver_ratio, "worker_peak_ratio": worker_ratio,
            "linear_within_20pct": abs(time_ratio - 1) <= 0.2,
            "memory_within_1_2x": driver_ratio <= 1.2 and worker_ratio <= 1.2}
