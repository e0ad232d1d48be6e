"""convert: every kept clip to binaural audio (SpatialV2A section 3.2), on an actor pool.

Modes (the manifest records which one produced each clip in `conversion_mode`):
  unet -- the paper's: PseudoBinaural's U-Net trained by `train_unet` (work/train_unet/model.pt),
          sliding 0.63 s windows with a 0.1 s hop, windows of all clips in a batch run together;
  direct -- the localised trajectory rendered through interpolated measured HRIRs (real ITD and
          ILD of the head, 40 ms crossfades; binauralizer.moving.render_trajectory(mode="direct"));
  sh   -- the binauralizer's rendering of the mono clip along the localised trajectory
          (work/localize/<clip_id>/traj.npy), first-order SH through the chosen HRIR set;
  mono -- L = R, the baseline.
Writes work/convert/<clip_id>/binaural.npy: float32 (2, N), 16 kHz, row 0 = left, L + R = the
clip's mono audio in every mode. Each actor loads the model once; with num_gpus > 0 it runs on
its GPU share under autocast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from binauralizer.level import match_level
from stages.base import ConfigError, Params, Stage
from stages.clipdata import atomic_save_npy, clip_work_path, load_audio, load_frames


@dataclass
class ConvertParams(Params):
    mode: str = "unet"  # unet | direct | sh | mono
    batch_size: int = 8  # clips per actor call
    window_batch: int = 0  # 0.63 s windows per forward pass, across clips; 0 = 64 on GPU, 8 on CPU
    num_gpus: float = 0.0  # per actor; fractional packs several actors on one GPU
    num_cpus: float = 1.0
    num_actors: int = 0  # 0 = the executor decides
    hrir: str = "kemar"  # sh mode
    sh_order: int = 1
    decoder: str = "lsq"

    def validate(self) -> None:
        if self.mode not in ("unet", "direct", "sh", "mono"):
            raise ConfigError(f"stages.convert.mode: one of unet, direct, sh, mono; got {self.mode!r}")
        if self.batch_size < 1 or self.window_batch < 0:
            raise ConfigError("stages.convert: batch_size must be >= 1 and window_batch >= 0")
        if self.decoder not in ("lsq", "sampling"):
            raise ConfigError(f"stages.convert.decoder: lsq or sampling, got {self.decoder!r}")


class ConvertStage(Stage):
    name = "convert"
    version = "1"
    Params = ConvertParams
    data_deps = ("ingest", "duration", "localize", "train_unet")
    reads = ("clip_id", "source_id", "window_start", "window_samples", "frame_fps")
    writes = ("conversion_mode",)
    kind = "actor"

    def setup(self) -> None:
        self._converter = None
        self._hrirs = None
        self._setup_error = ""
        p = self.params
        if p.mode == "unet":
            import torch

            from binauralizer.pseudobinaural.conversion import UNetConverter
            from stages.train_unet import model_path

            path = model_path(self.ctx)
            if not os.path.exists(path):
                self._setup_error = f"no trained model at {path}: run the train_unet stage before convert (mode unet)"
                return
            if p.num_gpus == 0:
                torch.set_num_threads(max(1, int(p.num_cpus)))
            device = "cuda" if p.num_gpus > 0 and torch.cuda.is_available() else "cpu"
            # measured (benchmarks/bench_unet.py): on one CPU core 8 windows per pass is fastest,
            # 64 is slower (memory traffic); GPUs want large batches
            window_batch = p.window_batch or (64 if device == "cuda" else 8)
            self._converter = UNetConverter.from_file(path, device=device, batch_size=window_batch)
        elif p.mode in ("sh", "direct"):
            from binauralizer.hrir import load_hrirs

            self._hrirs = load_hrirs(p.hrir)

    def _inputs(self, row: dict):
        from binauralizer.pseudobinaural.conversion import ClipInput

        audio = load_audio(self.ctx, row)
        if audio.size == 0 or not np.all(np.isfinite(audio)):
            raise ValueError("audio is empty or has non-finite samples")
        fps = float(row.get("frame_fps") or 8.0)
        clip = ClipInput(audio=audio, fps=fps)
        if self.params.mode == "unet":
            clip.frames = load_frames(self.ctx, row)
            if clip.frames.ndim != 4 or len(clip.frames) == 0:
                raise ValueError("no video frames in the clip's window (the U-Net needs the picture)")
        elif self.params.mode in ("sh", "direct"):
            path = os.path.join(self.ctx.work, "localize", row["clip_id"], "traj.npy")
            if not os.path.exists(path):
                raise ValueError(f"no trajectory at {path}: run the localize stage before convert "
                                 f"(mode {self.params.mode})")
            clip.trajectory = np.load(path)
        return clip

    def measure(self, rows: list[dict]) -> list[dict]:
        from binauralizer.pseudobinaural import conversion

        p = self.params
        if self._setup_error:
            return [{"_error": self._setup_error} for _ in rows]
        results: list[dict | None] = [None] * len(rows)
        clips = {}
        for i, row in enumerate(rows):
            try:
                clips[i] = self._inputs(row)
            except Exception as exc:  # noqa: BLE001 - a bad clip fails alone
                results[i] = {"_error": f"convert: {exc}"}
        outputs: dict[int, np.ndarray] = {}
        if p.mode == "unet" and clips:
            order = sorted(clips)
            for i, out in zip(order, self._converter.convert([clips[i] for i in order])):
                outputs[i] = out
        for i, clip in clips.items():
            try:
                if p.mode == "mono":
                    outputs[i] = conversion.convert_mono(clip.audio)
                elif p.mode == "sh":
                    outputs[i] = conversion.convert_sh(clip.audio, clip.trajectory, clip.fps, self._hrirs,
                                                       order=p.sh_order, decoder=p.decoder)
                elif p.mode == "direct":
                    outputs[i] = conversion.convert_direct(clip.audio, clip.trajectory, clip.fps, self._hrirs)
                binaural = match_level(clip.audio, outputs[i])
                if not np.all(np.isfinite(binaural)):
                    raise ValueError("conversion produced non-finite samples")
                atomic_save_npy(clip_work_path(self.ctx, self.name, rows[i]["clip_id"], "binaural.npy"),
                                np.ascontiguousarray(binaural, dtype=np.float32))
                results[i] = {"conversion_mode": p.mode}
            except Exception as exc:  # noqa: BLE001
                results[i] = {"_error": f"convert ({p.mode}): {exc}"}
        return results
