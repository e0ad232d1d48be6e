"""A localiser that learns audio-visual correspondence from the dataset itself (EZ-VSL style).

No labels and no downloaded weights: the clips' own co-occurrence of sound and picture is the
signal. The audio of a moment (a 0.96 s log-mel window, YAMNet's front end) is embedded by a small
CNN and max-pooled to one unit vector; the frame at that moment becomes a map of unit vectors (a
small conv net trained from scratch, or frozen ImageNet MobileNetV2 features + a 1x1 projection).
A clip's audio matches its own frame by the MAXIMUM similarity over locations (multiple-instance
learning: somewhere in the picture is the thing that sounds), contrasted with the other frames of
the batch in both directions (InfoNCE). The localisation map is the per-location similarity.

Trained this small (a run's few clips, a few hundred steps), one model depends on its seed: on the
spatial evaluation's 28 scenes three seeds of the same recipe put the fused track on the correct side in
92 %, 89.5 % and 81 % of frames, and the learned map alone in 78 %, 68 % and 49 %. `ensemble: K` trains K
members from seeds seed .. seed+K-1 and averages their per-frame normalised maps (`LearnedEnsemble`):
bagging's variance reduction, at K times the training and inference cost.

Saved as {"arch", "kwargs", "state_dict"}, so `learned:<path>` in binauralizer.localize.base
loads it (a single model or an ensemble); `forward(frames (T, 3, H, W) in [0, 1], audio (N,))`
returns (T, h, w) similarities.
Training is deterministic for a seed and resumes from its last checkpoint (atomic writes).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from binauralizer.constants import SAMPLE_RATE
from binauralizer.torchtrain import atomic_torch_save, atomic_write_text
WINDOW_S = 0.96


def _log_mel(audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """(B, N) audio -> (B, 1, frames, 64) log-mel (25 ms Hann, 10 ms hop, YAMNet's mel bands)."""
    spec = torch.stft(audio, 512, hop_length=160, win_length=400, window=torch.hann_window(400, device=audio.device),
                      center=False, return_complex=True).abs()  # (B, 257, frames)
    return torch.log(torch.einsum("bft,fm->btm", spec, mel) + 0.001)[:, None]


def frozen_backbone(visual: str) -> bool:
    """Whether a `visual` kind is a frozen pretrained backbone (the same weights in every model)."""
    return visual == "mobilenet_v2"


class AVCorrespondenceNet(nn.Module):
    """Audio embedding vs visual embedding map; forward gives per-frame localisation maps."""

    def __init__(self, dim: int = 64, visual: str = "tiny", frame_size: tuple[int, int] = (112, 192),
                 temperature: float = 0.07):
        super().__init__()
        from binauralizer.localize.yamnet import mel_matrix

        self.visual_kind, self.frame_size, self.temperature = visual, tuple(frame_size), float(temperature)
        self.register_buffer("mel", torch.from_numpy(mel_matrix()), persistent=False)
        self.audio = nn.Sequential(
            nn.AvgPool2d((4, 1)),  # 40 ms time steps: what sounds, cheaply (the CNN dominated training)
            nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, dim, 1))
        if visual == "tiny":
            # replicate padding: zero padding marks the border, and the max over locations then
            # learns to match every sound at the frame's edge
            pad = {"padding_mode": "replicate"}
            self.backbone = nn.Sequential(
                nn.Conv2d(3, 32, 5, 2, 2, **pad), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 64, 3, 2, 1, **pad), nn.BatchNorm2d(64), nn.ReLU(),
                nn.Conv2d(64, 128, 3, 2, 1, **pad), nn.BatchNorm2d(128), nn.ReLU())
            width = 128
        elif visual == "mobilenet_v2":
            from binauralizer.pseudobinaural.backbones import mobilenet_v2

            self.backbone = mobilenet_v2(pretrained=True).features.eval()
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            width = 1280
        else:
            raise ValueError(f"visual must be 'tiny' or 'mobilenet_v2', got {visual!r}")
        self.project = nn.Conv2d(width, dim, 1)

    def audio_embedding(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, N) audio windows -> (B, dim) unit vectors (max over time-frequency)."""
        x = self.audio(_log_mel(windows, self.mel))
        return F.normalize(x.amax(dim=(2, 3)), dim=1)

    @property
    def frozen_visual(self) -> bool:
        """True when the backbone is frozen: its features can be computed once and cached."""
        return frozen_backbone(self.visual_kind)

    def backbone_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, width, h, w) backbone features (before the projection)."""
        x = F.interpolate(frames, size=self.frame_size, mode="bilinear", align_corners=False, antialias=True)
        if self.visual_kind == "mobilenet_v2":
            mean = torch.tensor([0.485, 0.456, 0.406], device=x.device)[:, None, None]
            std = torch.tensor([0.229, 0.224, 0.225], device=x.device)[:, None, None]
            x = (x - mean) / std
        return self.backbone(x)

    def visual_maps(self, frames: torch.Tensor | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, dim, h, w) unit vectors per location, from frames or from cached backbone features."""
        feats = self.backbone_features(frames) if features is None else features
        return F.normalize(self.project(feats), dim=1)

    def similarity_maps(self, frames: torch.Tensor | None, windows: torch.Tensor,
                        features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, h, w) cosine similarity of each frame's locations with its own audio window (from frames,
        or from backbone features already computed)."""
        return torch.einsum("bdhw,bd->bhw", self.visual_maps(frames, features), self.audio_embedding(windows))

    def loss(self, frames: torch.Tensor | None, windows: torch.Tensor, features: torch.Tensor | None = None
             ) -> torch.Tensor:
        """Symmetric InfoNCE over the batch with max-over-locations similarity (EZ-VSL)."""
        v = self.visual_maps(frames, features)
        a = self.audio_embedding(windows)
        sim = torch.einsum("bdhw,cd->bchw", v, a).flatten(2).amax(-1) / self.temperature  # (frames, audios)
        target = torch.arange(len(a), device=a.device)
        return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target))

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) frames of a clip and its (N,) audio -> (T, h, w) maps (audio around each frame)."""
        windows = torch.from_numpy(audio_windows(audio.detach().cpu().numpy(), len(frames))).to(frames.device)
        out = [self.similarity_maps(frames[i:i + 16], windows[i:i + 16]) for i in range(0, len(frames), 16)]
        return torch.cat(out)


class LearnedEnsemble(nn.Module):
    """K AVCorrespondenceNets of one architecture; forward gives the mean of their maps, each clipped at 0
    and scaled to a frame maximum of 1 (so no member outweighs the others by scale)."""

    def __init__(self, members: int = 1, **net_kwargs):
        super().__init__()
        self.members = nn.ModuleList(AVCorrespondenceNet(**net_kwargs) for _ in range(int(members)))
        if self.members[0].frozen_visual:  # one frozen ImageNet backbone in memory, not one per member
            for net in self.members[1:]:
                net.backbone = self.members[0].backbone

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) frames and (N,) audio -> (T, h, w); a frozen backbone (the same ImageNet weights in
        every member) runs once for all members."""
        windows = torch.from_numpy(audio_windows(audio.detach().cpu().numpy(), len(frames))).to(frames.device)
        shared = all(net.frozen_visual for net in self.members)
        out = []
        for i in range(0, len(frames), 16):
            feats = self.members[0].backbone_features(frames[i:i + 16]) if shared else None
            total = 0
            for net in self.members:
                maps = net.similarity_maps(frames[i:i + 16] if feats is None else None, windows[i:i + 16],
                                           feats).clamp_min(0)
                total = total + maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
            out.append(total / len(self.members))
        return torch.cat(out)


def audio_windows(audio: np.ndarray, n_frames: int, window_s: float = WINDOW_S,
                  shift_s: np.ndarray | float = 0.0) -> np.ndarray:
    """(n_frames, W) float32: the audio window centred on each frame's time (frames span the clip
    evenly), moved by `shift_s` seconds (per frame or one value; training jitters it)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    w = int(round(window_s * SAMPLE_RATE))
    padded = np.pad(audio, (w // 2, w - w // 2))
    centres = np.round((np.arange(n_frames) + 0.5) * audio.size / max(n_frames, 1)
                       + np.asarray(shift_s) * SAMPLE_RATE).astype(int)
    centres = np.clip(centres, 0, audio.size)
    out = np.stack([padded[c: c + w] for c in centres])
    rms = np.sqrt(np.mean(out.astype(np.float64) ** 2, axis=1, keepdims=True))
    return (out / np.maximum(rms, 1e-4) * 0.1).astype(np.float32)  # level-free: what sounds, not how loud


def _one_window(audio: np.ndarray, n_frames: int, frame: int, shift_s: float) -> np.ndarray:
    """audio_windows(audio, n_frames, shift_s=shift_s)[frame], without cutting the other frames' windows."""
    hop = audio.size / max(n_frames, 1)
    w = int(round(WINDOW_S * SAMPLE_RATE))
    padded_start = int(np.clip(np.round((frame + 0.5) * hop + shift_s * SAMPLE_RATE), 0, audio.size)) - w // 2
    seg = np.zeros(w, np.float32)
    a, b = max(0, padded_start), min(audio.size, padded_start + w)
    seg[a - padded_start: b - padded_start] = audio[a:b]
    rms = np.sqrt(np.mean(seg.astype(np.float64) ** 2))
    return (seg / max(rms, 1e-4) * 0.1).astype(np.float32)


@dataclass
class LocalizerTrainConfig:
    """Flat scalars only, so a pipeline stage can map its params onto it one to one."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    dim: int = 64
    visual: str = "mobilenet_v2"  # mobilenet_v2 (frozen ImageNet features, cached once) | tiny (from scratch)
    frame_height: int = 160
    frame_width: int = 288
    frames_per_clip: int = 8  # evenly spaced moments per clip used for training (features cached once)
    audio_jitter_s: float = 0.25  # each step's audio window moves up to this far from its frame (augmentation)
    cache_mb: int = 2048  # pools whose cached moments fit are read once; larger ones are read per step
    seed: int = 0
    ensemble: int = 1  # members trained from seeds seed .. seed+K-1, maps averaged (module doc: one seed is a gamble)
    checkpoint_every: int = 50
    device: str = "cpu"  # cpu | cuda[:n]; not part of a checkpoint's identity (a run resumes on another device)


def _net_kwargs(cfg: LocalizerTrainConfig) -> dict:
    """AVCorrespondenceNet's constructor arguments from a training config (saved in the checkpoint)."""
    return {"dim": cfg.dim, "visual": cfg.visual, "frame_size": (cfg.frame_height, cfg.frame_width)}


def _moments(n_frames: int, frames_per_clip: int) -> np.ndarray:
    """The evenly spaced frame indices a clip trains on."""
    return np.unique(np.linspace(0, n_frames - 1, min(n_frames, max(1, frames_per_clip))).round().astype(int))


def _visual(model: "AVCorrespondenceNet", frames: np.ndarray) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> what the loss takes: backbone features (frozen backbone) or [0, 1] frames."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
    if not model.frozen_visual:
        return x
    device = model.mel.device
    with torch.no_grad():  # cached on the CPU: a GPU's memory holds the model, not the pool
        return torch.cat([model.backbone_features(x[i:i + 8].to(device)).cpu() for i in range(0, len(x), 8)])


class _ClipCache:
    """Per clip: `frames_per_clip` evenly spaced moments and their audio; for a frozen backbone their
    features are computed once (the backbone dominates the cost otherwise). Pools too big for
    `cache_mb` (feature maps of every moment) are read per step instead: one moment per drawn clip,
    its frame decoded alone (lazy clips stay lazy) and its features computed then."""

    def __init__(self, clips, model: "AVCorrespondenceNet", frames_per_clip: int, jitter_s: float = 0.0,
                 cache_mb: float = 2048, log=None):
        self.clips, self.model, self.frames_per_clip, self.jitter_s = clips, model, frames_per_clip, float(jitter_s)
        self.cached = None
        if len(clips) * self._clip_mb(clips[0]) <= cache_mb:
            self.cached = []
            for n, clip in enumerate(clips):
                clip = clip.load() if hasattr(clip, "load") else clip
                t = len(clip.frames)
                picks = _moments(t, frames_per_clip)
                visual = _visual(model, np.stack([np.asarray(clip.frames[int(k)]) for k in picks]))
                self.cached.append((np.asarray(clip.audio, np.float32).reshape(-1), picks, t, visual))
                if log and (n + 1) % 100 == 0:
                    log(f"learned localiser: cached {n + 1}/{len(clips)} clips")

    def _clip_mb(self, clip) -> float:
        """Cached size of one clip's moments (features, or frames for a trained backbone), MB."""
        h, w = self.model.frame_size
        per = 1280 * -(-h // 32) * -(-w // 32) if self.model.frozen_visual else 3 * h * w
        return self.frames_per_clip * per * 4 / 1e6 * 1.5  # + the frames at their own size, roughly

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One (visual, audio window) moment from each of `batch_size` distinct clips (others are negatives)."""
        picks = rng.choice(len(self), size=min(batch_size, len(self)), replace=False)
        visual, windows = [], []
        for k in map(int, picks):
            if self.cached is not None:
                audio, moments, t, feats = self.cached[k]
            else:
                clip = self.clips[k]
                clip = clip.load() if hasattr(clip, "load") else clip
                audio, t = np.asarray(clip.audio, np.float32).reshape(-1), len(clip.frames)
                moments, feats = _moments(t, self.frames_per_clip), None
            j = int(rng.integers(len(moments)))
            shift = float(rng.uniform(-self.jitter_s, self.jitter_s))
            visual.append(feats[j] if feats is not None else np.asarray(clip.frames[int(moments[j])]))
            windows.append(_one_window(audio, t, int(moments[j]), shift))
        if self.cached is None:
            return _visual(self.model, np.stack(visual)), torch.from_numpy(np.stack(windows))
        return torch.stack(visual), torch.from_numpy(np.stack(windows))


def _cpu(state: dict) -> dict:
    """A state dict with CPU tensors: checkpoints load anywhere and are the same bytes from any device."""
    return {k: v.detach().cpu() for k, v in state.items()}


def train_localizer(clips, out_dir: str, cfg: LocalizerTrainConfig = LocalizerTrainConfig(),
                    log=None, clip_cache=None) -> dict:
    """Train (or resume) on clips with .frames (T, H, W, 3) uint8 and .audio (N,) 16 kHz.

    Writes out_dir/checkpoint.pt every `checkpoint_every` steps, out_dir/localizer.pt (loadable by
    `learned:<path>`) and out_dir/history.json (the loss per step, the training curve). With
    `ensemble` K > 1, member k trains (and resumes) in out_dir/member_k from seed + k, localizer.pt is
    their LearnedEnsemble, and history.json holds the members' mean loss per step and each member's.
    `clip_cache(model)` returns the _ClipCache to train from (the ensemble's members share one).
    """
    if cfg.ensemble > 1:
        return _train_ensemble(clips, out_dir, cfg, log)
    if len(clips) < 2:
        raise ValueError("the learned localiser needs at least 2 clips (the others are the negatives)")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(cfg.seed)
    kwargs = _net_kwargs(cfg)
    device = torch.device(cfg.device)
    model = AVCorrespondenceNet(**kwargs).to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    ckpt_path = os.path.join(out_dir, "checkpoint.pt")
    identity = {k: v for k, v in asdict(cfg).items() if k != "device"}
    start, history = 0, []
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if {k: v for k, v in state.get("config", {}).items() if k != "device"} == identity:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start, history = int(state["step"]), list(state["history"])
    model.eval()  # frozen backbone: BatchNorm statistics stay ImageNet's
    if start >= cfg.steps:
        cache = None
    elif clip_cache is not None:
        cache = clip_cache(model)
    else:
        cache = _ClipCache(clips, model, cfg.frames_per_clip, cfg.audio_jitter_s, cfg.cache_mb, log)
    model.train()
    if model.frozen_visual:
        model.backbone.eval()
    for step in range(start, cfg.steps):
        rng = np.random.default_rng((cfg.seed, step))  # the batch is a function of (seed, step): exact resume
        visual, windows = cache.batch(rng, cfg.batch_size)
        visual, windows = visual.to(device), windows.to(device)
        if model.frozen_visual:
            loss = model.loss(None, windows, features=visual)
        else:
            loss = model.loss(visual, windows)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(round(float(loss.detach()), 5))
        if log and (step + 1) % 25 == 0:
            log(f"learned localiser: step {step + 1}/{cfg.steps} loss {np.mean(history[-25:]):.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            atomic_torch_save({"model": _cpu(model.state_dict()), "optimizer": opt.state_dict(), "step": step + 1,
                                "history": history, "config": identity}, ckpt_path)
    model.eval()
    final = os.path.join(out_dir, "localizer.pt")
    atomic_torch_save({"arch": f"{__name__}:AVCorrespondenceNet", "kwargs": kwargs,
                        "state_dict": _cpu(model.state_dict())}, final)
    atomic_write_text(os.path.join(out_dir, "history.json"),
                      json.dumps({"loss": history, "chance_loss": float(np.log(min(cfg.batch_size, len(clips))))}))
    return {"model": final, "history": history, "steps": cfg.steps}


def _member_line(log, k: int, members: int, steps: int, line: str) -> None:
    """A member's progress line as the ensemble's: its step counted over all members' steps."""
    def overall(m):
        return f"step {k * steps + int(m.group(1))}/{members * steps}"

    log(re.sub(r"step (\d+)/\d+", overall, line) + f" (member {k + 1}/{members})")


def _train_ensemble(clips, out_dir: str, cfg: LocalizerTrainConfig, log=None) -> dict:
    """train_localizer for ensemble > 1: the members one after the other, then one file of all of them."""
    from dataclasses import replace

    os.makedirs(out_dir, exist_ok=True)
    shared = []

    def clip_cache(model):
        """One cache for every member that trains: its moments, and a frozen backbone's features (the
        same ImageNet weights in every member), do not depend on the seed."""
        if not shared:
            shared.append(_ClipCache(clips, model, cfg.frames_per_clip, cfg.audio_jitter_s, cfg.cache_mb, log))
        return shared[0]

    members = []
    for k in range(cfg.ensemble):
        say = functools.partial(_member_line, log, k, cfg.ensemble, cfg.steps) if log else None
        members.append(train_localizer(clips, os.path.join(out_dir, f"member_{k}"),
                                       replace(cfg, seed=cfg.seed + k, ensemble=1), log=say, clip_cache=clip_cache))
    kwargs = {"members": cfg.ensemble, **_net_kwargs(cfg)}
    state = {}
    for k, m in enumerate(members):
        member = torch.load(m["model"], map_location="cpu", weights_only=True)["state_dict"]
        for name, value in member.items():
            first = state.get(f"members.0.{name}")
            if k and name.startswith("backbone.") and frozen_backbone(cfg.visual):
                if not torch.equal(first, value):  # the frozen backbone is the same weights in every member
                    raise RuntimeError(f"ensemble member {k}'s frozen backbone differs from member 0's at {name}")
                value = first  # stored once in the file (torch.save writes a shared tensor once)
            state[f"members.{k}.{name}"] = value
    final = os.path.join(out_dir, "localizer.pt")
    atomic_torch_save({"arch": f"{__name__}:LearnedEnsemble", "kwargs": kwargs, "state_dict": state}, final)
    losses = [m["history"] for m in members]
    mean = [round(float(np.mean(step)), 5) for step in zip(*losses)]
    atomic_write_text(os.path.join(out_dir, "history.json"), json.dumps(
        {"loss": mean, "members": losses, "chance_loss": float(np.log(min(cfg.batch_size, len(clips))))}))
    return {"model": final, "history": mean, "steps": cfg.steps, "members": [m["model"] for m in members]}
