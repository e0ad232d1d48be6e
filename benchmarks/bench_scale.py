"""Issue 12: does a run stay flat in memory and linear in time as the dataset grows?

The cheapest pipeline that still runs every stage kind: task stages (ingest, duration, silence, validate,
package without video), an actor stage (convert, mode mono) and the global stage (shard), then the run-level
report and card; 10 s clips at 64x48, chunks of 64. It runs on SMALL and LARGE synthetic clip sets with the
Ray executor on this machine (2 CPUs). Peak memory is each process's VmHWM read from /proc while the run
lasts: the driver, and every Ray worker (the largest is reported). Time: the ratio of per-clip wall times
(LARGE over SMALL) must not exceed 1.2 (no growth worse than linear); a ratio well below 1 means fixed
costs (Ray and actor start-up, the report) are amortised, and the marginal cost per clip,
(wall(LARGE) - wall(SMALL)) / (LARGE - SMALL), is reported beside it. Clips are hard links of 16 distinct encodes, so generating the
media costs seconds; every row is still decoded, converted, measured and packed. The builds run with a
hermetic HOME (no token from a user's ~/.ray).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = int(os.environ.get("BENCH_SCALE_SMALL", "200"))
LARGE = int(os.environ.get("BENCH_SCALE_LARGE", "2000"))
SECONDS = 10.0
SETTINGS = ["run.stages=[ingest, duration, silence, convert, validate, package, shard]", "run.chunk_size=64",
            "executor.num_cpus=2", "stages.ingest.fps=4", "stages.ingest.short_side=32", "stages.convert.mode=mono",
            "stages.convert.batch_size=16", "stages.validate.downmix_quality='off'", "stages.package.video=none"]


def _media(folder: str, clips: int) -> str:
    sys.path.insert(0, os.path.join(ROOT, "tests", "reliability"))
    from corpus import clip

    os.makedirs(folder, exist_ok=True)
    sources = [clip(os.path.join(folder, f"src{k:02d}.mp4"), seconds=SECONDS, fps=4, freq=300 + 40 * k) for k in range(16)]
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
    from procs import cmdline, descendants

    media = os.path.join(tmp, f"media{clips}")
    manifest = _media(media, clips)
    out = os.path.join(tmp, f"run{clips}")
    cmd = [sys.executable, "-m", "pipeline", "build", "--config", os.path.join(ROOT, "configs", "sample.yaml"),
           "--input", manifest, "--media-root", media, "--out", out, "--executor", "ray", "--no-progress"]
    for item in SETTINGS:
        cmd += ["--set", item]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver, workers, loads = 0, {}, []
    while proc.poll() is None:
        driver = max(driver, _hwm_kb(proc.pid))
        for pid in descendants(proc.pid):
            title = cmdline(pid)
            if title.startswith("ray::") and not title.startswith(RAY_AGENTS):  # task and actor workers
                workers[pid] = max(workers.get(pid, 0), _hwm_kb(pid))
        loads.append(os.getloadavg()[0])
        time.sleep(0.25)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read()[-3000:])
    with open(os.path.join(out, "stats.json")) as fh:
        stages = {name: s["wall_s"] or 0.0 for name, s in json.load(fh)["stages"].items()}
    shutil.rmtree(out, ignore_errors=True)
    peaks = sorted(workers.values())
    return {"wall_s": wall, "stages_wall_s": sum(stages.values()), "stage_wall_s": stages,
            "driver_peak_mb": driver / 1024, "worker_peak_mb": (peaks[-1] if peaks else 0) / 1024,
            "worker_peaks_mb": [round(p / 1024) for p in peaks], "load_mean": sum(loads) / max(1, len(loads))}


RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")  # Ray's own per-node agents, not stage workers


def _env(tmp: str) -> dict:
    """Hermetic for Ray: no RAY_* variables and a HOME without the user's ~/.ray (an auth token there makes
    the local cluster demand a token), as tests/reliability/test_cluster.py does."""
    home = os.path.join(tmp, "home")
    os.makedirs(home, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "HOME": home, "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)}


def run() -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    try:
        small, large = _run(SMALL, tmp), _run(LARGE, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    time_ratio = large["wall_s"] / small["wall_s"] / (LARGE / SMALL)
    stages_ratio = large["stages_wall_s"] / small["stages_wall_s"] / (LARGE / SMALL)
    driver_ratio = large["driver_peak_mb"] / small["driver_peak_mb"]
    worker_ratio = large["worker_peak_mb"] / small["worker_peak_mb"]
    rows = [f"| {n} clips | {r['wall_s']:.1f} | {1000 * r['wall_s'] / n:.0f} | {1000 * r['stages_wall_s'] / n:.0f} | "
            f"{r['driver_peak_mb']:.0f} | {r['worker_peak_mb']:.0f} | {r['worker_peaks_mb']} | {r['load_mean']:.1f} |"
            for n, r in ((SMALL, small), (LARGE, large))]
    per_stage = [f"| {name} | {1000 * small['stage_wall_s'][name] / SMALL:.0f} | "
                 f"{1000 * large['stage_wall_s'][name] / LARGE:.0f} |" for name in small["stage_wall_s"]]
    markdown = "\n".join(["| run | wall s | ms per clip | ms per clip in stages | driver peak MB | largest worker "
                          "peak MB | every worker's peak MB | mean load average |",
                          "|---|---|---|---|---|---|---|---|", *rows, "",
                          f"| stage | ms per clip, {SMALL} clips | ms per clip, {LARGE} clips |", "|---|---|---|",
                          *per_stage])
    return {"markdown": markdown, "small": SMALL, "large": LARGE,
            "wall_per_clip_ratio": time_ratio, "stages_wall_per_clip_ratio": stages_ratio,
            "driver_peak_ratio": driver_ratio, "worker_peak_ratio": worker_ratio,
            "marginal_ms_per_clip": 1000 * (large["wall_s"] - small["wall_s"]) / (LARGE - SMALL),
            "small_ms_per_clip": 1000 * small["wall_s"] / SMALL,
            "no_worse_than_linear_within_20pct": time_ratio <= 1.2,
            "strictly_linear_within_20pct": abs(time_ratio - 1) <= 0.2,
            "memory_within_1_2x": driver_ratio <= 1.2 and worker_ratio <= 1.2}
