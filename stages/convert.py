"""convert: every kept clip to binaural audio (SpatialV2A section 3.2), one stage with four modes.

  unet   -- the paper's: PseudoBinaural's U-Net trained by `train_unet` (manifests.artifacts.model()),
            sliding 0.63 s windows with a 0.1 s hop, the windows of all clips in a batch run together;
  direct -- the localised trajectory (the row's traj_path) rendered through interpolated HRIRs, with
            the trajectory's distance (gain and propagation delay) and crossfaded position updates
            (binauralizer.moving.render_trajectory(mode="direct"));
  sh     -- the same trajectory through spherical harmonics and a virtual-loudspeaker decoder
            (PseudoBinaural's ring of 8 at order 1); localize's distance is a constant, so ignored;
  mono   -- L = R = the source, the baseline.

Every mode writes work/convert/<clip_id>/binaural.npy (float32 (2, N), 16 kHz, row 0 = left) and
the row's `binaural_path` and `conversion_mode`, which validate and package read. Level: the
project's one convention (binauralizer.level): one gain for both ears, per-ear RMS = the source's.
An actor builds the converter (model or HRIR set) once; with num_gpus > 0 the U-Net runs on its
GPU share.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from binauralizer.level import match_level
from manifests import artifacts as A
from manifests.io import atomic_save_npy
from stages.base import ConfigError, Params, Spatial, Stage, StageError, file_digest, hrir_preflight, settings
from stages.clipdata import load_audio, load_frames, read_artifact

log = logging.getLogger(__name__)

MODES = ("unet", "direct", "sh", "mono")
RENDERED = ("direct", "sh")  # the modes that render the localised trajectory
LAYOUTS = ("auto", "ring8", "tdesign")
INTERPS = ("barycentric", "nearest")
NO_TRAJECTORY = "no trajectory: run localize first"


@settings
class ConvertParams(Params):
    mode: str = "unet"  # unet | direct | sh | mono
    batch_size: int = 8  # clips per actor call
    window_batch: int = 0  # unet: 0.63 s windows per forward pass, across clips; 0 = 64 on GPU, 8 on CPU
    num_gpus: float = 0.0  # per actor; fractional packs several actors on one GPU
    num_cpus: float = 1.0
    num_actors: int = 0  # 0 = the executor decides
    layout: str = "auto"  # sh: auto (ring8 at order 1, t-design above) | ring8 | tdesign
    interp: str = "barycentric"  # direct: barycentric | nearest
    update_s: float = 0.04  # direct / sh: position updates, linearly crossfaded
    use_distance: bool | None = None  # None: direct uses the trajectory's distance, sh does not

    def validate(self) -> None:
        for key, allowed in (("mode", MODES), ("layout", LAYOUTS), ("interp", INTERPS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"stages.convert.{key}: expected one of {allowed}, got {getattr(self, key)!r}")
        if self.window_batch < 0:
            raise ConfigError("stages.convert.window_batch: must be >= 0")
        if not 0.001 <= self.update_s <= 1.0:
            raise ConfigError(f"stages.convert.update_s: expected seconds in [0.001, 1], got {self.update_s!r}")


class ConvertStage(Stage):
    name = "convert"
    version = "2"
    Params = ConvertParams
    data_deps = ("ingest", "duration", "localize", "train_unet")
    reads = ("clip_id", "source_id", "window_start", "window_samples", "frame_fps", "traj_path", "heatmap_path")
    writes = ("conversion_mode", "binaural_path")
    spatial_keys = ("hrir", "sh_order", "decoder")
    kind = "actor"

    @classmethod
    def preflight(cls, params: ConvertParams, spatial: Spatial, resolved=None) -> dict:
        """Rendering modes: fail before any work when the HRIR set cannot be loaded; name the file."""
        if params.mode not in RENDERED:
            return {"mode": params.mode}
        return {"mode": params.mode, **hrir_preflight(spatial.hrir)}

    def measure_settings(self) -> dict:
        """The settings, plus (mode unet) the trained U-Net's content digest: a U-Net retrained on other
        clips reruns convert instead of reusing binaural audio cached from the old one."""
        settings = super().measure_settings()
        if self.params.mode == "unet":
            settings["model_sha256"] = file_digest(A.resolve(self.ctx.out, A.model()))
        return settings

    def setup(self) -> None:
        self._converter = None
        self._hrirs = None
        self._setup_error = ""
        p = self.params
        if p.mode == "unet":
            import torch

            from binauralizer.pseudobinaural.conversion import UNetConverter

            path = A.resolve(self.ctx.out, A.model())
            if not os.path.exists(path):
                self._setup_error = f"no trained model at {path}: run the train_unet stage before convert (mode unet)"
                return
            from binauralizer.devices import pick_device

            device = pick_device(p.num_gpus, self.name).type
            if device == "cpu":
                torch.set_num_threads(max(1, int(p.num_cpus)))
            # measured (benchmarks/bench_unet.py): on one CPU core 8 windows per pass is fastest,
            # 64 is slower (memory traffic); GPUs want large batches
            window_batch = p.window_batch or (64 if device == "cuda" else 8)
            self._converter = UNetConverter.from_file(path, device=device, batch_size=window_batch)
        elif p.mode in RENDERED:
            from binauralizer.hrir import load_hrirs

            self._hrirs = load_hrirs(self.ctx.spatial.hrir)  # cached per process: one load per Ray worker

    # -- inputs --------------------------------------------------------------------------------------
    def trajectory(self, row: dict) -> np.ndarray:
        """The clip's (T, 3) trajectory (azimuth, elevation deg; distance m) from its traj_path."""
        traj = read_artifact(self.ctx, row, "traj_path")
        if traj is None:
            raise StageError(NO_TRAJECTORY)
        traj = traj.astype(np.float64)
        if traj.ndim != 2 or traj.shape[1] != 3 or traj.shape[0] == 0:
            raise StageError(f"traj.npy has shape {traj.shape}, expected (T, 3) with T >= 1")
        if not np.all(np.isfinite(traj)):
            raise StageError("traj.npy has non-finite values")
        return traj

    def _inputs(self, row: dict):
        from binauralizer.pseudobinaural.conversion import ClipInput

        audio = load_audio(self.ctx, row)
        if audio.size == 0 or not np.all(np.isfinite(audio)):
            raise StageError("the clip's audio window is empty or has non-finite samples")
        fps = float(row.get("frame_fps") or 8.0)
        if not fps > 0:
            raise StageError(f"frame_fps must be positive, got {fps}")
        clip = ClipInput(audio=audio, fps=fps)
        if self.params.mode == "unet":
            clip.frames = load_frames(self.ctx, row)
            if clip.frames.ndim != 4 or len(clip.frames) == 0:
                raise StageError("no video frames in the clip's window (the U-Net needs the picture)")
            if self._converter.heat_grid:  # a heatmap-conditioned model: the localiser's maps of this clip
                heat = read_artifact(self.ctx, row, "heatmap_path")
                if heat is not None and (heat.ndim != 3 or not np.all(np.isfinite(heat))):
                    raise StageError(f"heatmap.npy has shape {heat.shape} or non-finite values, expected (T, h, w)")
                clip.heatmap = heat
        elif self.params.mode in RENDERED:
            clip.trajectory = self.trajectory(row)
        return clip

    def render(self, clip) -> np.ndarray:
        """direct / sh: the mono window along its trajectory (not yet level-matched)."""
        from binauralizer.pseudobinaural.conversion import convert_sh

        p = self.params
        traj = clip.trajectory
        use_distance = p.use_distance if p.use_distance is not None else p.mode == "direct"
        traj = np.column_stack([traj[:, 0], np.clip(traj[:, 1], -90.0, 90.0),
                                traj[:, 2] if use_distance else np.ones(len(traj))])
        view = self.ctx.spatial
        return convert_sh(clip.audio, traj, clip.fps, self._hrirs, mode=p.mode, order=view.sh_order,
                          update_s=p.update_s, decoder=view.decoder, layout=p.layout, interp=p.interp)

    # -- the batch -----------------------------------------------------------------------------------
    def measure(self, rows: list[dict]) -> list[dict]:
        from binauralizer.pseudobinaural.conversion import convert_mono

        p = self.params
        if self._setup_error:
            return [{"_error": self._setup_error} for _ in rows]
        results: list[dict | None] = [None] * len(rows)
        clips = {}
        for i, row in enumerate(rows):
            try:
                clips[i] = self._inputs(row)
            except (StageError, ValueError, OSError) as exc:  # a bad clip fails alone, in its own words
                results[i] = {"_error": str(exc)}
        outputs: dict[int, np.ndarray] = {}
        if p.mode == "unet" and clips:
            order = sorted(clips)
            for i, out in zip(order, self._converter.convert([clips[i] for i in order])):
                outputs[i] = out
        for i, clip in clips.items():
            try:
                if p.mode == "mono":
                    outputs[i] = convert_mono(clip.audio)
                elif p.mode in RENDERED:
                    outputs[i] = self.render(clip)
                binaural = match_level(clip.audio, outputs[i])
                if not np.all(np.isfinite(binaural)):
                    raise StageError("conversion produced non-finite samples")
                rel = A.binaural(str(rows[i]["clip_id"]))
                atomic_save_npy(A.resolve(self.ctx.out, rel), np.ascontiguousarray(binaural, dtype=np.float32))
                results[i] = {"conversion_mode": p.mode, "binaural_path": rel}
            except Exception as exc:  # noqa: BLE001 - a bad clip fails alone
                results[i] = {"_error": f"convert ({p.mode}): {exc}"}
        return results
