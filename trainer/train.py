"""The training loop: streamed batches, CFM loss summed over ears, EMA, exact resume, DDP.

A checkpoint holds model, EMA, optimiser, (epoch, batch in epoch, seed), the loss history and
every RNG state (the loss's own generator, torch, numpy, python); a resumed job rebuilds the
epoch's stream, skips the batches it already trained on and continues the same loss curve.
Checkpoints are named by an identity = configuration + a digest of the data (features.json and
the shard list), so training on other data never resumes a stale run. Only global rank 0
writes; DDP comes from torchrun (RANK/WORLD_SIZE) or Ray Train (`launch_ray`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from trainer import batches as bt
from trainer import features as ft
from trainer import stream as st
from trainer.deps import torchtrain
from trainer.model import ModelConfig, SpatialV2A, cfm_loss, count_parameters

log = logging.getLogger("trainer")


@dataclass
class TrainConfig:
    name: str = "tiny"
    model: ModelConfig = field(default_factory=ModelConfig)
    mode: str = "features"  # features: stream OUT/features; raw: encode OUT/shards on the fly
    codec: str | None = None  # raw mode: codec.pt (features mode reads it from features.json)
    batch_size: int = 8
    crop_frames: int = 64
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-6
    warmup_steps: int = 1000
    steps: int = 300_000
    ema_decay: float = 0.999
    null_p: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 1
    shuffle_buffer: int = 64
    exact_epoch: bool = False
    samples_per_epoch: int | None = None
    visual_size: int = 224
    clip: str | None = None  # the paper's encoders (ARCH:PATH, PATH); features mode takes them from features.json
    synchformer: str | None = None
    threads: int = 0  # torch threads per rank; 0 = torch's default
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = ModelConfig(**d.get("model", {}))
        d["betas"] = tuple(d.get("betas", (0.9, 0.95)))
        return cls(**d)

    def identity_fields(self) -> dict:
        """What changes the trained weights (not how often we log or save)."""
        d = self.to_dict()
        for k in ("checkpoint_every", "keep_checkpoints", "log_every", "steps"):
            d.pop(k)
        return d


CONFIGS = {
    # The paper: N1 6, N2 12, AdamW 1e-4, 1k warm-up, 300k steps, 8 s crops. Width (448 = 7 heads
    # of 64), batch 512, betas and bf16 from MMAudio-S, which the paper builds on and does not restate.
    "paper": TrainConfig(name="paper", model=ModelConfig(hidden=448, heads=7, n_joint=6, n_single=12, mlp_ratio=4.0),
                         batch_size=512, crop_frames=250, lr=1e-4, warmup_steps=1000, steps=300_000,
                         ema_decay=0.9999, num_workers=8, shuffle_buffer=2000, checkpoint_every=5000),
    # Minutes on 2 CPU cores (`make train` on the sample run: 200 steps, the mean loss falls 4.0 -> 3.4 by
    # step 200): enough to learn level differences from the spatial condition.
    "tiny": TrainConfig(name="tiny", model=ModelConfig(hidden=64, heads=2, n_joint=1, n_single=1, mlp_ratio=2.0),
                        batch_size=8, crop_frames=32, lr=2e-3, warmup_steps=20, steps=200, ema_decay=0.98,
                        num_workers=1, shuffle_buffer=32, checkpoint_every=100, log_every=20, visual_size=112,
                        threads=1),
}


def get_config(name: str, overrides: dict | None = None) -> TrainConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; known: {sorted(CONFIGS)}")
    d = CONFIGS[name].to_dict()
    for key, value in (overrides or {}).items():
        target = d
        parts = key.split(".")
        for p in parts[:-1]:
            target = target[p]
        if parts[-1] not in target:
            raise ValueError(f"unknown setting {key!r}; settings: {sorted(k for k in d if k != 'model')} "
                             f"and model.{{{', '.join(sorted(d['model']))}}}")
        target[parts[-1]] = value
    return TrainConfig.from_dict(d)


# -- data --------------------------------------------------------------------------------------


class Decoder:
    """Sample bytes -> training example; raw mode loads the codec and encoders once per worker."""

    def __init__(self, cfg: TrainConfig, rate: float, mean, std, codec_spec: str | None):
        self.cfg, self.rate, self.codec_spec = cfg, rate, codec_spec
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.state: dict | None = None

    def features(self, sample: dict) -> dict:
        if self.cfg.mode == "features":
            return ft.decode_members(sample)
        from trainer import encoders as enc
        from trainer.codec import load_codec

        if self.state is None:
            self.state = {"codec": load_codec(self.codec_spec),
                          "enc": enc.Encoders("cpu", self.cfg.visual_size, clip=self.cfg.clip,
                                              synchformer=self.cfg.synchformer)}
        return ft.encode_sample(enc.raw_sample(sample), self.state["codec"], self.state["enc"])

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return bt.example(self.features(sample), self.cfg.crop_frames, self.rate, self.mean, self.std, rng)


@dataclass
class Data:
    shards: st.ShardList
    rate: float
    latent_dim: int
    mean: list
    std: list
    codec: str
    digest: str
    encoders: dict = field(default_factory=dict)  # features.json's "encoders" (dims, the paper's specs)


def open_data(cfg: TrainConfig, root: str, split: str = "train") -> Data:
    shards = st.shard_list(root, split)
    if cfg.mode == "features":
        info = ft.load_features_info(root)
        return Data(shards, info["latent_rate"], info["latent_dim"], info["latent_mean"], info["latent_std"],
                    info["codec"]["spec"], torchtrain.data_digest([info, shards.digest]), info.get("encoders") or {})
    if cfg.mode != "raw":
        raise ValueError(f"mode {cfg.mode!r}: use features (OUT/features) or raw (OUT/shards, encoded on the fly)")
    if not cfg.codec:
        raise ValueError("raw mode needs a codec: --codec codec.pt (train one with `python -m trainer codec`)")
    from trainer.codec import load_codec

    codec = load_codec(cfg.codec)
    mean, std = codec.latent_stats()
    encoders = {}
    if cfg.clip or cfg.synchformer:  # their widths size the model
        from trainer import encoders as enc

        encoders = enc.Encoders("cpu", cfg.visual_size, clip=cfg.clip, synchformer=cfg.synchformer).describe()
    return Data(shards, codec.rate, codec.dim, mean, std, cfg.codec,
                torchtrain.data_digest([codec.describe(), shards.digest]), encoders)


def with_data(cfg: TrainConfig, data: Data) -> TrainConfig:
    """The model sized to the data: latent width from the codec, visual/sync widths and the paper's
    encoder specs from the feature encoders (so sampling and eval rebuild the same encoders)."""
    vis, sync = data.encoders.get("visual", {}), data.encoders.get("sync", {})
    model = dataclasses.replace(cfg.model, latent_dim=data.latent_dim,
                                visual_dim=int(vis.get("dim", cfg.model.visual_dim)),
                                sync_dim=int(sync.get("dim", cfg.model.sync_dim)))
    return dataclasses.replace(cfg, model=model, clip=vis.get("spec") or cfg.clip,
                               synchformer=sync.get("spec") or cfg.synchformer)


def make_stream(cfg: TrainConfig, data: Data, rank: int, world: int, epoch: int, skip: int) -> st.ShardStream:
    scfg = st.StreamConfig(cfg.batch_size, cfg.shuffle_buffer, cfg.exact_epoch, cfg.samples_per_epoch, cfg.seed)
    return st.ShardStream(data.shards, scfg, Decoder(cfg, data.rate, data.mean, data.std, data.codec), bt.collate,
                          rank, world, epoch, skip, cfg.num_workers)


def stream_config(cfg: TrainConfig) -> st.StreamConfig:
    return st.StreamConfig(cfg.batch_size, cfg.shuffle_buffer, cfg.exact_epoch, cfg.samples_per_epoch, cfg.seed)


# -- checkpoints -------------------------------------------------------------------------------


def identity(cfg: TrainConfig, data: Data) -> str:
    return f"{cfg.name}-{torchtrain.data_digest([cfg.identity_fields(), data.digest])}"


def _rng_state(gen: torch.Generator) -> dict:
    state = {"loss": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["loss"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str) -> dict:
    # Our own files hold numpy/python RNG states, which weights_only loading refuses.
    return torch.load(path, map_location="cpu", weights_only=False)


def build_model(ckpt: dict, ema: bool = True) -> SpatialV2A:
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = SpatialV2A(cfg.model)
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return model.eval()


# -- the loop ----------------------------------------------------------------------------------


def _lr(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


def train(cfg: TrainConfig, data_root: str, out_dir: str, device: str | torch.device = "auto",
          progress: bool = True, stop_after: int | None = None) -> dict:
    """Train until cfg.steps (resuming this identity's newest checkpoint); rank 0 writes out_dir."""
    device = device if isinstance(device, torch.device) else torchtrain.pick_device(device)
    rank, world = torchtrain.init_distributed(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = open_data(cfg, data_root)
    cfg = with_data(cfg, data)
    ident = identity(cfg, data)
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    writer = rank == 0

    torch.manual_seed(cfg.seed)
    model = SpatialV2A(cfg.model).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step = epoch = batch_in_epoch = 0
    history: list[dict] = []
    resumed = torchtrain.latest_checkpoint(ckpt_dir, ident)
    if resumed:
        ck = load_checkpoint(resumed)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        step, epoch, batch_in_epoch, history = ck["step"], ck["epoch"], ck["batch"], ck["history"]
        _set_rng_state(gen, ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
        log.info("resumed %s at step %d (epoch %d, batch %d)", resumed, step, epoch, batch_in_epoch)
    if writer:
        os.makedirs(out_dir, exist_ok=True)
        _write_log(out_dir, history)  # drops lines a killed run wrote after its last checkpoint
        torchtrain.atomic_write_text(os.path.join(out_dir, "config.json"),
                                     json.dumps({"identity": ident, "config": cfg.to_dict(), "world_size": world,
                                                 "parameters": count_parameters(model)}, indent=1) + "\n")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    bar = None
    if progress and writer:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, unit="step", desc=f"train {cfg.name}", file=sys.stderr,
                   mininterval=1.0)
    started, trained = time.time(), 0
    samples_seen = 0
    while step < cfg.steps and (stop_after is None or trained < stop_after):
        steps_per_ep = st.steps_per_epoch(data.shards, stream_config(cfg), world, cfg.num_workers, epoch)
        stream = make_stream(cfg, data, rank, world, epoch, batch_in_epoch)
        batches = iter(st.loader(stream, cfg.num_workers))
        if cfg.exact_epoch:
            for _ in range(batch_in_epoch):
                next(batches)
        consumed = 0
        for b in batches:
            consumed += 1
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step)
            b = bt.drop_conditions(b, cfg.null_p, gen)
            x1 = b["latent"].to(device)
            cond = bt.conditions(b, device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):  # no grad scaler
                loss, per_ear = cfm_loss(net, x1, cond, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            step, batch_in_epoch, trained = step + 1, batch_in_epoch + 1, trained + 1
            samples_seen += x1.shape[0]
            entry = {"step": step, "epoch": epoch, "loss": float(loss.detach()), "loss_left": per_ear[0],
                     "loss_right": per_ear[1], "lr": _lr(cfg, step - 1)}
            history.append(entry)
            if writer:
                _append_log(out_dir, entry)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{entry['loss']:.3f}")
                if step % cfg.log_every == 0 or step == cfg.steps:
                    log.info("step %d epoch %d loss %.4f (left %.4f, right %.4f)", step, epoch, entry["loss"],
                             per_ear[0], per_ear[1])
            rolled_over = batch_in_epoch >= steps_per_ep
            if rolled_over:  # saved as (next epoch, batch 0): a resume starts the next epoch's stream
                epoch, batch_in_epoch = epoch + 1, 0
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                rngs = _gather_rng(gen, world)
                if writer:
                    _save(ckpt_dir, ident, cfg, data, model, ema, opt, step, epoch, batch_in_epoch, history, rngs,
                          world)
            if rolled_over or step >= cfg.steps or (stop_after is not None and trained >= stop_after):
                break
        del batches
        if consumed == 0:
            raise ValueError(f"epoch {epoch} gave rank {rank} no batch: batch_size {cfg.batch_size} is larger than "
                             "what its shards hold per loader worker; lower batch_size or num_workers")
    if bar is not None:
        bar.close()
    elapsed = time.time() - started
    summary = {"identity": ident, "step": step, "epoch": epoch, "loss_first": history[0]["loss"] if history else None,
               "loss_last": history[-1]["loss"] if history else None, "seconds": elapsed,
               "samples_per_s": samples_seen * world / elapsed if elapsed > 0 else 0.0, "world_size": world,
               "checkpoint": torchtrain.latest_checkpoint(ckpt_dir, ident), "resumed_from": resumed,
               "parameters": count_parameters(model)}
    if writer:
        torchtrain.atomic_write_text(os.path.join(out_dir, "train_summary.json"), json.dumps(summary, indent=1) + "\n")
    return summary


def _gather_rng(gen: torch.Generator, world: int) -> list:
    """Every rank's RNG states (rank 0 saves them all so each rank resumes its own)."""
    state = _rng_state(gen)
    if world == 1:
        return [state]
    out = [None] * world
    torch.distributed.all_gather_object(out, state)
    return out


def _save(ckpt_dir, ident, cfg, data, model, ema, opt, step, epoch, batch, history, rngs, world) -> None:
    payload = {"identity": ident, "config": cfg.to_dict(), "model": model.state_dict(), "ema": ema.state_dict(),
               "optimizer": opt.state_dict(), "step": step, "epoch": epoch, "batch": batch, "seed": cfg.seed,
               "rng": rngs, "history": history, "world_size": world, "written_by_rank": 0,
               "latent": {"mean": list(data.mean), "std": list(data.std), "rate": data.rate, "dim": data.latent_dim},
               "codec": data.codec, "data": {"root": data.shards.root, "digest": data.digest}}
    torchtrain.atomic_torch_save(payload, torchtrain.checkpoint_path(ckpt_dir, ident, step))
    torchtrain.prune_checkpoints(ckpt_dir, ident, cfg.keep_checkpoints)


def _write_log(out_dir: str, history: list[dict]) -> None:
    torchtrain.atomic_write_text(os.path.join(out_dir, "log.jsonl"), "".join(json.dumps(h) + "\n" for h in history))


def _append_log(out_dir: str, entry: dict) -> None:
    with open(os.path.join(out_dir, "log.jsonl"), "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def run_training(cfg_dict: dict, data_root: str, out_dir: str, device=None, progress: bool = False) -> dict:
    """Entry point of a Ray Train (or any) worker: RANK/WORLD_SIZE are already set."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return train(TrainConfig.from_dict(cfg_dict), data_root, out_dir, device or "auto", progress=progress)


def train_with_ray(cfg: TrainConfig, data_root: str, out_dir: str, num_workers: int, use_gpu: bool) -> dict:
    """Data-parallel training on Ray Train workers (gloo on CPU); paths must be shared storage."""
    out_dir = os.path.abspath(out_dir)
    torchtrain.launch_ray(run_training, (cfg.to_dict(), os.path.abspath(data_root), out_dir), {},
                          num_workers=num_workers, use_gpu=use_gpu, name=f"trainer_{cfg.name}",
                          storage_path=os.path.join(out_dir, "ray_results"))
    with open(os.path.join(out_dir, "train_summary.json")) as fh:
        return json.load(fh)
