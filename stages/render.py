"""render: each clip's mono window rendered binaurally along its localised trajectory (conversion mode `sh`).

Per clip: the 16 kHz mono window (work/ingest) and work/localize/<clip_id>/traj.npy (T, 3: azimuth
deg left +, elevation deg up +, distance m; frame k at time k / frame_fps) go through
binauralizer.moving.render_trajectory: first-order SH with the least-squares decoder on
PseudoBinaural's ring of 8 virtual loudspeakers through measured HRIRs by default (SpatialV2A
section 3.2), or `direct` HRIR filtering; positions update every 40 ms with linear crossfades.
localize's distance is a constant (heatmaps carry no depth), so it is ignored unless
`use_distance` is set.

Level: the project's one convention (binauralizer.level, shared with convert): ONE gain for both
ears, so interaural level differences survive, making the per-ear RMS equal the mono window's RMS,
lowered if needed so no sample exceeds PEAK_CEILING. A silent window renders to silence.

Writes work/render/<clip_id>/binaural.npy (float32 (2, N), row 0 = left) and the manifest columns
conversion_mode = "sh" and binaural_path (relative to the run folder), which validate and shard read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from stages.base import ConfigError, Params, RunContext, Stage, StageError
from binauralizer.level import match_level
from stages.clipdata import atomic_save_npy, clip_work_path, load_audio

log = logging.getLogger(__name__)

MODES = ("sh", "direct")
DECODERS = ("lsq", "sampling", "magls")
LAYOUTS = ("auto", "ring8", "tdesign")
INTERPS = ("barycentric", "nearest")
NO_TRAJECTORY = "no trajectory: run localize first"


@dataclass
class RenderParams(Params):
    hrir: str = "kemar"  # kemar | sonicom-1 | sonicom-2 | path to a .sofa file
    mode: str = "sh"  # sh (SH encode -> virtual loudspeakers -> HRIRs) | direct (HRIR of each direction)
    order: int = 1
    decoder: str = "lsq"  # lsq (the paper's) | sampling (PseudoBinaural's code) | magls
    layout: str = "auto"  # auto (ring8 at order 1, t-design above) | ring8 | tdesign
    interp: str = "barycentric"  # direct mode: barycentric | nearest
    update_s: float = 0.04
    use_distance: bool = False  # localize's distance is a constant: off by default
    num_cpus: float = 1.0

    def validate(self) -> None:
        if not self.hrir.strip():
            raise ConfigError("stages.render.hrir: give a set name (kemar, sonicom-1, sonicom-2) or a .sofa path")
        for key, allowed in (("mode", MODES), ("decoder", DECODERS), ("layout", LAYOUTS), ("interp", INTERPS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"stages.render.{key}: expected one of {allowed}, got {getattr(self, key)!r}")
        if isinstance(self.order, bool) or not isinstance(self.order, int) or not 1 <= self.order <= 10:
            raise ConfigError(f"stages.render.order: expected an integer in 1..10, got {self.order!r}")
        if not 0.001 <= self.update_s <= 1.0:
            raise ConfigError(f"stages.render.update_s: expected seconds in [0.001, 1], got {self.update_s!r}")
        if self.num_cpus <= 0:
            raise ConfigError("stages.render.num_cpus: must be > 0")


def _load_hrirs(name: str):
    """The HRIR set at 16 kHz; load_hrirs caches it per process (one load per Ray worker)."""
    from binauralizer.hrir import load_hrirs

    return load_hrirs(name)


class RenderStage(Stage):
    name = "render"
    version = "1"
    Params = RenderParams
    kind = "task"
    data_deps = ("ingest", "duration", "localize")
    reads = ("clip_id", "source_id", "window_start", "window_samples", "frame_fps")
    writes = ("conversion_mode", "binaural_path")

    @classmethod
    def preflight(cls, params: RenderParams) -> dict:
        """Fail before any work when the HRIR set cannot be loaded; report which file was used."""
        try:
            hrirs = _load_hrirs(params.hrir)
        except FileNotFoundError as exc:
            raise ConfigError(f"stages.render.hrir {params.hrir!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - an unreadable SOFA file is a configuration problem
            raise ConfigError(f"stages.render.hrir {params.hrir!r}: cannot read the HRIR set "
                              f"({type(exc).__name__}: {exc}); point it to a SimpleFreeFieldHRIR .sofa file") from None
        from binauralizer.hrir import resolve_sofa

        return {"hrir": str(resolve_sofa(params.hrir)), "directions": int(len(hrirs.az_deg)),
                "source_fs": hrirs.source_fs}

    def setup(self) -> None:
        self._hrirs = _load_hrirs(self.params.hrir)

    def trajectory(self, row: dict) -> np.ndarray | None:
        """The clip's (T, 3) trajectory from localize, None when localize left none."""
        path = os.path.join(self.ctx.work, "localize", str(row["clip_id"]), "traj.npy")
        if not os.path.exists(path):
            return None
        traj = np.load(path, allow_pickle=False).astype(np.float64)
        if traj.ndim != 2 or traj.shape[1] != 3 or traj.shape[0] == 0:
            raise StageError(f"traj.npy has shape {traj.shape}, expected (T, 3) with T >= 1")
        if not np.all(np.isfinite(traj)):
            raise StageError("traj.npy has non-finite values")
        return traj

    def render(self, mono: np.ndarray, traj: np.ndarray, fps: float) -> np.ndarray:
        """(2, N) float32 binaural of the mono window along traj, level-matched (binauralizer.level)."""
        from binauralizer.pseudobinaural.conversion import convert_sh

        p = self.params
        traj = np.column_stack([traj[:, 0], np.clip(traj[:, 1], -90.0, 90.0),
                                traj[:, 2] if p.use_distance else np.ones(len(traj))])
        binaural = convert_sh(mono, traj, fps, self._hrirs, mode=p.mode, order=p.order, update_s=p.update_s,
                              decoder=p.decoder, layout=p.layout, interp=p.interp)
        return match_level(mono, binaural)

    def measure_one(self, row: dict) -> dict:
        traj = self.trajectory(row)
        if traj is None:
            return {"_error": NO_TRAJECTORY}
        mono = load_audio(self.ctx, row)
        if mono.size == 0:
            raise StageError("the clip's audio window is empty")
        if not np.all(np.isfinite(mono)):
            raise StageError("the clip's audio has non-finite samples")
        fps = float(row.get("frame_fps") or 8.0)
        if not fps > 0:
            raise StageError(f"frame_fps must be positive, got {fps}")
        binaural = self.render(mono, traj, fps)
        clip_id = str(row["clip_id"])
        atomic_save_npy(clip_work_path(self.ctx, self.name, clip_id, "binaural.npy"), np.ascontiguousarray(binaural))
        return {"conversion_mode": "sh", "binaural_path": f"work/{self.name}/{clip_id}/binaural.npy"}
