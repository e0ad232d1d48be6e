"""Binaural rendering throughput: our renderers against ffmpeg's sofalizer on the same 10 s, 16 kHz clip.

Per core: our renders run in this single process with one FFT worker and one BLAS thread; ffmpeg
runs with -threads 1 -filter_threads 1, one call per clip (file in, file out, as a user would
script it). Times are CPU seconds per clip (process time for us, child rusage for ffmpeg; the
machine is shared, so CPU time is the fairer clock), median over repeats; wall times are reported
beside them. sofalizer cannot move a source within one call, so the moving renders are compared
with its cheapest (static) call.
Targets: >= 20x sofalizer's throughput, >= 1000x real time per core for a static source.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from binauralizer import foa, moving, sh_render  # noqa: E402
from binauralizer.hrir import load_hrirs, resolve_sofa  # noqa: E402

FS = 16000
SECONDS = 10.0


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median (cpu_s, wall_s) of `repeats` calls after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return float(np.median(cpu)), float(np.median(wall))


def _sofalizer_call(src: Path, dst: Path, az: float) -> None:
    af = f"sofalizer=sofa={resolve_sofa('kemar')}:interpolate=0:rotation={az:g}"
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1",
           "-filter_threads", "1", "-i", str(src), "-af", af, "-ar", str(FS), str(dst)]
    subprocess.run(cmd, check=True, capture_output=True)


def _time_sofalizer(src: Path, dst: Path, repeats: int) -> tuple[float, float]:
    _sofalizer_call(src, dst, 30.0)
    cpu, wall = [], []
    for _ in range(repeats):
        r0, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        _sofalizer_call(src, dst, 30.0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        wall.append(time.perf_counter() - w0)
    return float(np.median(cpu)), float(np.median(wall))


def run(repeats: int = 15, ffmpeg_repeats: int = 7) -> dict:
    """Figures per render kind: ms per clip (cpu, wall), clips/s per core, x real time, x sofalizer."""
    h = load_hrirs()
    x = (0.1 * np.random.default_rng(0).standard_normal(int(SECONDS * FS))).astype(np.float32)
    batch = np.stack([x] * 16)
    batch_az = np.linspace(-60, 60, 16)
    sweep_t, sweep_az = np.linspace(0, SECONDS, 81), np.linspace(90, -90, 81)  # 180 degrees, localizer-like 8 fps
    sweep_r = 1.0 + 2.0 * np.abs(np.sin(sweep_t))
    pan_t, pan_yaw = np.linspace(0, SECONDS, 11), np.linspace(0, 60, 11)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst, ours_dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav", Path(tmp) / "ours.wav"
        sf.write(src, x, FS, subtype="FLOAT")

        def static_file_to_file():
            mono, _ = sf.read(src, dtype="float32")
            sf.write(ours_dst, sh_render.render_static(mono, 30.0, 0.0, h).T, FS, subtype="FLOAT")

        cases = {
            "static sh (order 1)": (lambda: sh_render.render_static(x, 30.0, 0.0, h), 1),
            "static sh (order 4)": (lambda: sh_render.render_static(x, 30.0, 0.0, h, order=4), 1),
            "static direct": (lambda: sh_render.render_static(x, 30.0, 0.0, h, mode="direct"), 1),
            "static sh, batch of 16": (lambda: sh_render.render_static(batch, batch_az, 0.0, h), 16),
            "static sh, wav in -> wav out": (static_file_to_file, 1),
            "moving sh (180 deg + distance)": (
                lambda: moving.render_trajectory(x, sweep_t, sweep_az, 0 * sweep_az, sweep_r, h), 1),
            "moving direct (180 deg + distance)": (
                lambda: moving.render_trajectory(x, sweep_t, sweep_az, 0 * sweep_az, sweep_r, h, mode="direct"), 1),
            "moving direct, nearest HRIR": (lambda: moving.render_trajectory(
                x, sweep_t, sweep_az, 0 * sweep_az, sweep_r, h, mode="direct", interp="nearest"), 1),
            "FOA camera pan (60 deg)": (lambda: foa.render_rotated([x], [30.0], [0.0], h, pan_t, pan_yaw), 1),
        }
        sofa_cpu, sofa_wall = _time_sofalizer(src, dst, ffmpeg_repeats)
        results = {"clip_seconds": SECONDS, "sample_rate": FS, "hrirs": h.name,
                   "sofalizer": {"ms_per_clip_cpu": 1e3 * sofa_cpu, "ms_per_clip_wall": 1e3 * sofa_wall,
                                 "clips_per_s_per_core": 1.0 / sofa_cpu, "x_realtime": SECONDS / sofa_cpu}}
        for name, (fn, clips) in cases.items():
            cpu, wall = _time(fn, repeats)
            cpu, wall = cpu / clips, wall / clips
            results[name] = {"ms_per_clip_cpu": 1e3 * cpu, "ms_per_clip_wall": 1e3 * wall,
                             "clips_per_s_per_core": 1.0 / cpu, "x_realtime": SECONDS / cpu,
                             "x_sofalizer": sofa_cpu / cpu, "x_sofalizer_wall": sofa_wall / wall}
    static = results["static sh (order 1)"]
    results["targets"] = {
        "static_x_realtime_ge_1000": static["x_realtime"] >= 1000,
        "all_ge_20x_sofalizer": all(v["x_sofalizer"] >= 20 for k, v in results.items()
                                    if isinstance(v, dict) and "x_sofalizer" in v),
    }
    return results


def _print(results: dict) -> None:
    print(f"10 s clip at {FS} Hz, HRIRs {results['hrirs']}, one core")
    header = ("render", "ms/clip cpu", "ms wall", "clips/s", "x realtime", "x sofalizer")
    print(f"{header[0]:38s} {header[1]:>11s} {header[2]:>8s} {header[3]:>8s} {header[4]:>10s} {header[5]:>11s}")
    for name, v in results.items():
        if isinstance(v, dict) and "ms_per_clip_cpu" in v:
            ratio = f"{v['x_sofalizer']:11.1f}" if "x_sofalizer" in v else f"{'1.0':>11s}"
            label = "ffmpeg sofalizer (static)" if name == "sofalizer" else name
            print(f"{label:38s} {v['ms_per_clip_cpu']:11.2f} {v['ms_per_clip_wall']:8.2f} "
                  f"{v['clips_per_s_per_core']:8.1f} {v['x_realtime']:10.0f} {ratio}")
    print("targets:", results["targets"])


if __name__ == "__main__":
    _print(run())
