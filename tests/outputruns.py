"""A tiny run folder built without the lead's runner: real ffmpeg videos, real KEMAR renderings.

`build_run(root)` writes OUT/ with work/ingest, work/convert, work/localize, stats.json and
config.yaml, plus rows carrying the manifest columns the later stages read, and returns (ctx, rows).
Imported by name (`import outputruns`) from any test folder.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess

import numpy as np
import yaml

from stages.base import RunContext

SR = 16000
FPS = 8
WINDOW = 10 * SR
SOFA = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"

# clip id, source, window start (samples), label, split, trajectory (az start, az end) or None
CLIPS = (
    ("clipA_w0", "srcA", 0, "dog barking", "train", (60.0, 60.0)),  # window on a keyframe: stream copy
    ("clipA_w1", "srcA", 8000, "dog barking", "train", (-60.0, -60.0)),  # 0.5 s: re-encoded
    ("clipB_w0", "srcB", 0, "playing violin, fiddle", "test", (60.0, -60.0)),  # moving left to right
    ("clipB_w1", "srcB", 16000, "ambulance siren", "test", None),  # no localisation files
)


@functools.lru_cache(maxsize=None)
def kemar_16k() -> tuple[np.ndarray, np.ndarray]:
    """Horizontal-plane KEMAR HRIRs resampled to 16 kHz: (azimuths deg, (n, 2, taps))."""
    import sofar
    from scipy.signal import resample_poly

    sofa = sofar.read_sofa(SOFA, verbose=False)
    pos = np.asarray(sofa.SourcePosition)
    horizontal = np.abs(pos[:, 1]) < 1e-6
    az = (pos[horizontal, 0] + 180) % 360 - 180
    hrir = resample_poly(np.asarray(sofa.Data_IR)[horizontal], 160, 441, axis=-1)
    return az, hrir


def render(mono: np.ndarray, az_deg: np.ndarray | float, block: int = SR // 10) -> np.ndarray:
    """(2, N) float32: mono convolved per 0.1 s block with the HRIR nearest its azimuth."""
    from scipy.signal import fftconvolve

    az_grid, hrirs = kemar_16k()
    n = mono.shape[0]
    az_per_block = np.broadcast_to(np.asarray(az_deg, float), (-(-n // block),))
    out = np.zeros((2, n + hrirs.shape[-1] - 1))
    for b, az in enumerate(az_per_block):
        i = int(np.argmin(np.abs((az_grid - az + 180) % 360 - 180)))
        seg = mono[b * block : (b + 1) * block]
        for ear in range(2):
            y = fftconvolve(seg, hrirs[i, ear])
            out[ear, b * block : b * block + y.shape[0]] += y
    return out[:, :n].astype(np.float32)


def make_video(path: str, seconds: float = 11.0, freq: int = 440) -> str:
    """H.264 + AAC test video, 160x120 at 24 fps, a keyframe every second (cuts at whole seconds copy)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=24",
         "-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=16000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "24", "-keyint_min", "24", "-sc_threshold", "0",
         "-threads", "1", "-pix_fmt", "yuv420p", "-c:a", "aac", "-fflags", "+bitexact", "-flags", "+bitexact",
         "-map_metadata", "-1", path],
        check=True,
    )
    return path


@functools.lru_cache(maxsize=None)
def _cached_video(freq: int) -> bytes:
    tmp = f"/tmp/_binaural_test_video_{os.getpid()}_{freq}.mp4"
    make_video(tmp, freq=freq)
    with open(tmp, "rb") as fh:
        data = fh.read()
    os.unlink(tmp)
    return data


def _save(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, array, allow_pickle=False)


def build_run(root: str, clips=CLIPS, stats: bool = True) -> tuple[RunContext, list[dict]]:
    out = os.path.join(root, "out")
    media = os.path.join(root, "media")
    os.makedirs(media, exist_ok=True)
    ctx = RunContext(out=out, media_root=media)
    rng = np.random.default_rng(7)
    sources = {}
    for k, source in enumerate(sorted({c[1] for c in clips})):
        video = os.path.join(media, f"{source}.mp4")
        with open(video, "wb") as fh:
            fh.write(_cached_video(440 + 110 * k))
        audio = (0.1 * rng.standard_normal(11 * SR)).astype(np.float32)
        _save(os.path.join(out, "work", "ingest", source, "audio.npy"), audio)
        sources[source] = (video, audio)
    rows = []
    for clip_id, source, start, label, split, path in clips:
        video, audio = sources[source]
        mono = audio[start : start + WINDOW]
        frames = np.arange(WINDOW // SR * FPS)
        if path is not None:
            az = np.linspace(path[0], path[1], frames.size)
            traj = np.stack([az, np.zeros_like(az), np.full_like(az, 1.5)], 1).astype(np.float32)
            spatial = np.stack([np.full_like(az, 0.8), np.full_like(az, 0.1), np.full_like(az, 0.05),
                                az / 60, np.full_like(az, 0.5)], 1).astype(np.float32)
            _save(os.path.join(out, "work", "localize", clip_id, "traj.npy"), traj)
            _save(os.path.join(out, "work", "localize", clip_id, "spatial.npy"), spatial)
            block_az = np.interp(np.arange(WINDOW // (SR // 10)) / 10, frames / FPS, az)
            binaural = render(mono, block_az)
        else:
            binaural = render(mono, 0.0)
        _save(os.path.join(out, "work", "convert", clip_id, "binaural.npy"), binaural)
        row = {
            "clip_id": clip_id, "video": video, "label": label, "caption": None, "split": split,
            "start": None, "end": None, "status": "kept", "reason": "",
            "source_id": source, "duration_s": 11.0, "has_audio": True, "audio_sr_in": 16000,
            "audio_channels_in": 1, "fps_in": 24.0, "width": 160, "height": 120, "n_samples": 11 * SR,
            "frame_fps": float(FPS), "window_index": start // SR, "window_start": start,
            "window_samples": WINDOW, "padded_samples": 0, "silent_fraction": 0.02,
            "quality_backend": "dsp", "dsp_clipping": 0.0, "dsp_bandwidth_hz": 7900.0,
            "dsp_snr_db": 20.0, "dsp_score": 7.5, "conversion_mode": "sh",
            "loc_method": "motion" if path else None,
            "az_mean_deg": float(np.mean(path)) if path else None,
            "az_start_deg": path[0] if path else None, "az_end_deg": path[1] if path else None,
            "el_mean_deg": 0.0 if path else None, "loc_confidence": 0.9 if path else None,
            "traj_path": f"work/localize/{clip_id}/traj.npy" if path else None,
            "spatial_path": f"work/localize/{clip_id}/spatial.npy" if path else None,
            "binaural_path": f"work/convert/{clip_id}/binaural.npy",
        }
        rows.append(row)
    if stats:
        with open(os.path.join(out, "stats.json"), "w") as fh:
            json.dump({
                "stages": {
                    "ingest": {"in": 6, "kept": 5, "dropped": {}, "failed": 1, "wall_s": 3.2},
                    "duration": {"in": 5, "kept": 5, "dropped": {"too_short": 1}, "failed": 0, "wall_s": 0.1},
                    "silence": {"in": 5, "kept": 4, "dropped": {"silent": 1}, "failed": 0, "wall_s": 0.4},
                },
                "preflight": {"quality": {"backend": "dsp", "why": "no Audiobox checkpoint found offline"}},
            }, fh)
        with open(os.path.join(out, "config.yaml"), "w") as fh:
            yaml.safe_dump({"dataset": {"name": "tiny-binaural", "licence": "CC BY 4.0 (test)"},
                            "stages": {"validate": {"report_clips": 2}}}, fh)
    return ctx, rows


def copy_run(ctx: RunContext, rows: list[dict], dest: str) -> tuple[RunContext, list[dict]]:
    """A copy of a run folder at `dest` (video paths rewritten)."""
    root = os.path.dirname(ctx.out)
    shutil.copytree(root, dest)
    new_rows = [{**r, "video": r["video"].replace(root, dest)} for r in rows]
    return RunContext(out=os.path.join(dest, "out"), media_root=os.path.join(dest, "media")), new_rows


def pack(ctx: RunContext, rows: list[dict], return_rows: bool = False, **settings):
    """package (per clip, as a worker would) then shard (the global packing), as the runner chains them.

    `settings` go to whichever of the two stages has them. Returns one dict per input row: the shard
    location, or {"_error": reason} from the stage that failed it (and, with return_rows, the rows as
    package left them, which `shard_only` packs again).
    """
    import dataclasses

    from stages.package import PackageStage
    from stages.shard import ShardStage

    package_keys = {f.name for f in dataclasses.fields(PackageStage.Params)}
    package = PackageStage(PackageStage.params_from({k: v for k, v in settings.items() if k in package_keys}), ctx)
    shard = ShardStage(ShardStage.params_from({k: v for k, v in settings.items() if k not in package_keys}), ctx)
    ctx.extra["stage_params"] = {"package": package.params}
    package.setup()
    staged = package.measure(rows)
    good = [i for i, m in enumerate(staged) if "_error" not in m]
    packed = shard.run_global([{**rows[i], **staged[i]} for i in good]) if good else []
    out = [dict(m) for m in staged]
    for i, result in zip(good, packed):
        out[i] = result
    return (out, [{**rows[i], **staged[i]} for i in good]) if return_rows else out


def shard_only(ctx: RunContext, packaged: list[dict], **settings) -> list[dict]:
    """The global packing alone over rows package already staged (a rerun with package done)."""
    from stages.shard import ShardStage

    return ShardStage(ShardStage.params_from(settings), ctx).run_global(packaged)


def validate_run(ctx: RunContext, rows: list[dict], **settings) -> list[dict]:
    """validate per clip (as a worker would, after the driver's preflight), its manifest, then the
    run-level publish step (report and card), as the runner chains them. Returns validate's results."""
    from manifests.io import write_rows
    from output.publish import publish
    from stages.validate import ValidateStage

    params = ValidateStage.params_from(settings)
    stats_path = os.path.join(ctx.out, "stats.json")
    stats = json.load(open(stats_path)) if os.path.exists(stats_path) else None
    preflight = dict((stats or {}).get("preflight") or {})
    preflight["validate"] = ValidateStage.preflight(params, ctx.spatial, preflight)
    if stats is not None:
        with open(stats_path, "w") as fh:
            json.dump({**stats, "preflight": preflight}, fh)
    ctx.extra["preflight"] = preflight
    stage = ValidateStage(params, ctx)
    stage.setup()
    out = stage.measure(rows)
    manifest = [{**r, "status": "failed", "reason": m["_error"]} if "_error" in m else
                {**r, **m, "status": "kept", "reason": ""} for r, m in zip(rows, out)]
    write_rows(os.path.join(ctx.out, "manifests", "validate", "chunk-00000.parquet"), manifest)
    publish(ctx.out)
    return out
