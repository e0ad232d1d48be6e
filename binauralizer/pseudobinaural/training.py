"""Training the U-Net on seeded pseudo pairs: one process on CPU, DDP over Ray Train on GPUs.

Resumable by construction: the batch of step s is scenes [s*B, (s+1)*B) of a seeded generator,
the learning rate is a pure function of the step, and a checkpoint (model, optimiser, step,
loss history) is written atomically every N steps. After a kill, training restarts from the last
checkpoint and produces exactly the losses an uninterrupted run would have produced.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from binauralizer import torchtrain
from binauralizer.pseudobinaural import unet as unet_mod
from binauralizer.pseudobinaural.pseudo_pairs import PairConfig, PseudoPairGenerator, collate


@dataclass
class TrainConfig:
    steps: int = 200
    batch_size: int = 16
    lr_visual: float = 5e-5
    lr_audio: float = 5e-4
    lr_fusion: float = 1e-3
    weight_decay: float = 5e-4
    lr_decay: float = 0.94  # multiplied in every `decay_every` steps (paper: every 5 epochs)
    decay_every: int = 0  # 0 = constant learning rates
    width: float = 1.0
    frame_size: tuple[int, int] = (224, 448)
    visual: str = "mobilenet_v2"
    visual_checkpoint: str | None = None
    freeze_visual: bool = True
    apnet: bool = False
    hrir: str = "kemar,sonicom-1"  # one set or several, comma-separated (each scene draws one)
    fov_deg: float = 120.0  # camera field of view of the pseudo pairs' canvas (the run's spatial.fov_deg)
    sh_order: int = 1  # the `paper` target's SH order
    decoder: str = "lsq"
    target: str = "direct"  # pseudo-pair rendering: direct | sh4 | paper (first order, 8 speakers)
    input: str = "mono"  # network input in training: mono (as at conversion) | downmix (the paper's L + R)
    background: str = "frame"  # pseudo-pair canvas: frame (another clip's full frame) | black (the paper's)
    heatmap: bool = True  # condition the U-Net on the localiser's heatmap of the frame
    mask_range: float = 2.0  # complex mask parts in [-r, r] (the paper's 1 clips large ILDs)
    cue_weight: float = 1.0  # energy-weighted ILD / low-band IPD loss beside L1 on the difference (0 = the paper's)
    own_frame_prob: float = 0.5  # scenes on a clip's own frame labelled by its localised trajectory
    align: bool = True  # targets advanced by the ears' common delay (pseudo_pairs.align_to)
    ratio_target: bool = True  # diff target = mix * (L - R) / (L + R): the ears' ratio, reachable from mix +- diff
    seed: int = 0
    moving_prob: float = 0.0
    camera_rotation_prob: float = 0.0
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    data_digest: str = ""  # digest of the training rows (see rows_digest): new data, new identity

    def unet_config(self) -> unet_mod.UNetConfig:
        return unet_mod.UNetConfig(width=self.width, visual=self.visual, visual_checkpoint=self.visual_checkpoint,
                                   freeze_visual=self.freeze_visual, frame_size=tuple(self.frame_size), apnet=self.apnet,
                                   heatmap=self.heatmap, mask_range=self.mask_range)

    def pair_config(self) -> PairConfig:
        return PairConfig(moving_prob=self.moving_prob, camera_rotation_prob=self.camera_rotation_prob,
                          fov=self.fov_deg / 180.0, sh_order=self.sh_order, decoder=self.decoder,
                          target=self.target, input=self.input, background=self.background,
                          own_frame_prob=self.own_frame_prob, align=self.align)

    def fingerprint(self) -> str:
        """Identity of a training run: every field except those that only say how long/how often."""
        d = dataclasses.asdict(self)
        for k in ("steps", "checkpoint_every", "keep_checkpoints"):
            d.pop(k)
        d["frame_size"] = list(d["frame_size"])
        d["code"] = code_digest()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# Modules whose code shapes a trained model: an edit to any of them is a new training identity.
CODE_FILES = ("pseudobinaural/unet.py", "pseudobinaural/training.py", "pseudobinaural/pseudo_pairs.py",
              "pseudobinaural/backbones.py", "sh_render.py", "hrir.py")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # binauralizer/
    h = hashlib.sha256()
    for name in CODE_FILES:
        with open(os.path.join(here, name), "rb") as fh:
            h.update(name.encode() + b"\0" + fh.read())
    return h.hexdigest()[:16]


rows_digest = torchtrain.rows_digest  # what the U-Net trains on (train_unet's identity)


# The tiny configuration (sample run, tests); the paper scale lives in configs/binauralvggsound.yaml.
TINY = TrainConfig(steps=150, batch_size=16, width=0.125, frame_size=(112, 224), lr_audio=2e-3, lr_fusion=5e-3,
                   checkpoint_every=50)


# ---------------------------------------------------------------------------------------------
# Batches and the step
# ---------------------------------------------------------------------------------------------


def batch_indices(step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Scene indices for one step: the global batch is fixed by the step, ranks take slices."""
    start = step * batch_size
    return list(range(start + rank, start + batch_size, world_size))


def spectrogram_batch(batch: dict[str, torch.Tensor], device, ratio_range: float | None = None) -> tuple[torch.Tensor, ...]:
    """(mix, diff, frames, heat): mix and L-R spectrograms as (B, 2, 256, 64) channels.

    The network's ears are (mix +- diff) / 2, so L + R is the mono input, while the target's L + R
    is the mono through the head (colour, delay, dispersion): fitting L - R itself then yields the
    wrong interaural ratio, and below 1.5 kHz no ITD at all. With `ratio_range` the target is
    diff = mix * (L - R) / (L + R) per bin (each part clipped to the mask range): exactly the mask
    whose ears have the target's interaural level and phase differences.
    """
    mixture = batch["mixture"].to(device)
    binaural = batch["binaural"].to(device)
    mix_spec = unet_mod.stft(mixture)
    mix = unet_mod.complex_to_channels(mix_spec)
    if ratio_range:
        ears = unet_mod.stft(binaural)
        ratio = (ears[:, 0] - ears[:, 1]) / (ears[:, 0] + ears[:, 1] + 1e-8)
        ratio = torch.complex(ratio.real.clamp(-ratio_range, ratio_range), ratio.imag.clamp(-ratio_range, ratio_range))
        diff = unet_mod.complex_to_channels(mix_spec * ratio)
    else:
        diff = unet_mod.complex_to_channels(unet_mod.stft(binaural[:, 0] - binaural[:, 1]))
    return mix, diff, batch["frame"].to(device), batch["heat"].to(device)


def make_optimizer(model: unet_mod.AudioVisualUNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = model.parameter_groups()
    lrs = {"visual": cfg.lr_visual, "audio": cfg.lr_audio, "fusion": cfg.lr_fusion}
    param_groups = [{"params": groups[k], "lr": lrs[k], "name": k, "base_lr": lrs[k]} for k in lrs if groups[k]]
    return torch.optim.Adam(param_groups, weight_decay=cfg.weight_decay)


def _set_lr(opt: torch.optim.Optimizer, cfg: TrainConfig, step: int) -> None:
    factor = cfg.lr_decay ** (step // cfg.decay_every) if cfg.decay_every else 1.0
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor


# ---------------------------------------------------------------------------------------------
# Checkpoints and the loss curve
# ---------------------------------------------------------------------------------------------


_atomic_write_text = torchtrain.atomic_write_text


def checkpoint_dir(out_dir: str) -> str:
    return os.path.join(out_dir, "checkpoints")


def latest_checkpoint(out_dir: str, fingerprint: str, max_step: int | None = None) -> str | None:
    """Newest checkpoint of this training identity, at most `max_step` (others are never resumed)."""
    return torchtrain.latest_checkpoint(checkpoint_dir(out_dir), fingerprint, max_step)


def write_loss_curve(out_dir: str, history: list[dict], png: bool = True) -> None:
    """loss_curve.json (every step) and loss_curve.png in the run's train folder."""
    _atomic_write_text(os.path.join(out_dir, "loss_curve.json"), json.dumps({"history": history}, indent=1))
    if not png or not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [h["step"] for h in history]
    keys = [k for k in history[0] if k != "step"]
    if keys == ["diff", "total"]:  # no APNet, no cue term: the total is the diff loss
        keys = ["total"]
    for key in keys:
        values = np.array([h[key] for h in history])
        line, = ax.plot(steps, values, label=key, lw=0.8, alpha=0.5)
        k = min(len(values), 10)  # 10-step moving average: the trend under the batch noise
        ax.plot(steps[k - 1:], np.convolve(values, np.ones(k) / k, mode="valid"), color=line.get_color(), lw=1.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from manifests.io import atomic_path

    with atomic_path(os.path.join(out_dir, "loss_curve.png")) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def load_hrirs(name: str):
    """One HRIRSet, or a list for a comma-separated list of sets."""
    from binauralizer import hrir

    names = [n.strip() for n in str(name).split(",") if n.strip()]
    return hrir.load_hrirs(names[0]) if len(names) == 1 else [hrir.load_hrirs(n) for n in names]


def train(cfg: TrainConfig, pool, out_dir: str, hrirs=None, device: str | torch.device = "cpu",
          rank: int = 0, world_size: int = 1, log: Callable[[str], None] | None = None,
          progress: Callable[..., None] | None = None) -> dict:
    """Train (or resume) to `cfg.steps`; rank 0 writes checkpoints, model.pt and the loss curve.

    `progress(done_steps, total_steps, "step", loss=...)` is called on rank 0 after every step.

    When torch.distributed is initialised (Ray Train or torchrun) the model is wrapped in DDP and
    each rank renders its slice of every global batch.
    """
    os.makedirs(out_dir, exist_ok=True)
    device = torch.device(device)
    hrirs = hrirs if hrirs is not None else load_hrirs(cfg.hrir)
    generator = PseudoPairGenerator(pool, hrirs, seed=cfg.seed, config=cfg.pair_config())
    torch.manual_seed(cfg.seed)
    model = unet_mod.AudioVisualUNet(cfg.unet_config()).to(device)
    opt = make_optimizer(model, cfg)
    fp = cfg.fingerprint()
    start, history = 0, []
    resume = latest_checkpoint(out_dir, fp, cfg.steps)
    if resume:
        state = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history = int(state["step"]), list(state["history"])
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    net.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        _set_lr(opt, cfg, step)
        scenes = [generator[i] for i in batch_indices(step, cfg.batch_size, rank, world_size)]
        mix, diff, frames, heat = spectrogram_batch(collate(scenes), device,
                                                    cfg.mask_range if cfg.ratio_target else None)
        with torch.autocast(device.type, enabled=use_amp):
            out = net(mix, frames, heat)
        parts = unet_mod.losses({k: v.float() for k, v in out.items()}, mix, diff, cfg.cue_weight)
        opt.zero_grad(set_to_none=True)
        scaler.scale(parts["total"]).backward()
        scaler.step(opt)
        scaler.update()
        values = torch.stack([p.detach().float() for p in parts.values()])
        if distributed:
            torch.distributed.all_reduce(values)
            values /= world_size
        history.append({"step": step + 1, **{k: float(v) for k, v in zip(parts, values)}})
        done = step + 1
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            _save_checkpoint(out_dir, fp, model, opt, done, history, cfg)
        if progress and rank == 0:
            progress(done, cfg.steps, "step", loss=history[-1]["total"])
        if log and rank == 0 and (done % max(1, cfg.steps // 10) == 0):
            log(f"train_unet step {done}/{cfg.steps} loss {history[-1]['total']:.4f}")
    elapsed = time.perf_counter() - t0
    result = {"steps": cfg.steps, "resumed_from": start, "final_loss": history[-1]["total"] if history else None,
              "seconds": elapsed, "steps_per_s": (cfg.steps - start) / elapsed if elapsed > 0 else None}
    if rank == 0:
        unet_mod.save_model(model, os.path.join(out_dir, "model.pt"))
        write_loss_curve(out_dir, history)
        _atomic_write_text(os.path.join(out_dir, "train_summary.json"),
                           json.dumps({**result, "seconds": None, "steps_per_s": None, "fingerprint": fp,
                                       "config": _jsonable(cfg)}, indent=1, sort_keys=True))
    return result


def _jsonable(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["frame_size"] = list(d["frame_size"])
    return d


def _save_checkpoint(out_dir, fp, model, opt, step, history, cfg) -> None:
    path = torchtrain.checkpoint_path(checkpoint_dir(out_dir), fp, step)
    torchtrain.atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                  "history": history, "config": _jsonable(cfg)}, path)
    write_loss_curve(out_dir, history, png=False)
    torchtrain.prune_checkpoints(checkpoint_dir(out_dir), fp, cfg.keep_checkpoints)


# ---------------------------------------------------------------------------------------------
# Ray Train: one worker per GPU, torch DDP
# ---------------------------------------------------------------------------------------------


PROGRESS_FILE = "progress.jsonl"


def _ray_train(config: dict, pool_factory: Callable[[], list], out_dir: str, device=None) -> dict:
    """One Ray Train worker (torchtrain.launch_ray has set up the process group)."""
    cfg = TrainConfig(**{**config, "frame_size": tuple(config["frame_size"])})
    rank, world_size = torchtrain.dist_info()
    relay = torchtrain.ProgressFile(os.path.join(out_dir, PROGRESS_FILE)) if rank == 0 else None
    return train(cfg, pool_factory(), out_dir, device=device, rank=rank, world_size=world_size, progress=relay)


def train_with_ray(cfg: TrainConfig, pool_factory: Callable[[], list], out_dir: str, num_workers: int,
                   use_gpu: bool, storage_path: str | None = None,
                   progress: Callable[..., None] | None = None) -> dict:
    """Data-parallel training over `num_workers` Ray Train workers (one GPU each when use_gpu).

    `pool_factory` is a picklable callable each worker calls to load its source pool (clips are
    read where the worker runs, not shipped through the driver). `out_dir` must be visible to
    every worker (the run folder on shared storage); rank 0 writes checkpoints and the model.
    `progress` gets rank 0's steps on the driver, relayed through `out_dir/progress.jsonl`.
    """
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with torchtrain.ProgressFile(os.path.join(out_dir, PROGRESS_FILE)).relaying(progress):
        torchtrain.launch_ray(_ray_train, (_jsonable(cfg), pool_factory, out_dir), {}, num_workers=num_workers,
                              use_gpu=use_gpu, name=f"train_unet_{cfg.fingerprint()}",
                              storage_path=storage_path or os.path.join(out_dir, "ray_results"))
    with open(os.path.join(out_dir, "train_summary.json")) as fh:  # written by rank 0
        return json.load(fh)
