"""SpatialV2A's dual-branch flow network (paper §4), written after MMAudio's MM-DiT.

    latents (B, 2, N, D) --proj + ear embedding-->
    N1 joint blocks: ONE attention over [left; right; visual; text] tokens (QK RMSNorm, RoPE on
       time for audio and visual tokens, adaLN-Zero; audio tokens modulated per frame by
       C_f + C_s, visual/text tokens by C_g)
    N2 single-stream blocks per ear, separate weights, per-frame condition C_f + C_s
    final adaLN + conv per ear -> velocities (B, 2, N, D)

C_g = e(t) + MLP(mean visual + mean text); C_f = C_g + upsampled sync features;
C_s = LayerNorm(ConvMLP(UpSample(S_sound))). Learned null embeddings stand in for missing or
dropped text, video (visual and sync together) and spatial conditions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class ModelConfig:
    latent_dim: int = 304
    hidden: int = 448
    heads: int = 7
    n_joint: int = 6
    n_single: int = 12
    mlp_ratio: float = 4.0
    visual_dim: int = 320
    sync_dim: int = 64
    text_dim: int = 384
    spatial_dim: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


# -- building blocks ---------------------------------------------------------------------------


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """(N,) float positions -> (N, head_dim/2) rotation angles."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    return positions.float()[:, None] * inv[None, :]


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (B, H, N, hd) by angles (N, hd/2)."""
    x2 = x.float().unflatten(-1, (-1, 2))
    cos, sin = angles.cos(), angles.sin()
    a, b = x2[..., 0], x2[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).type_as(x)


class ChannelLastConv1d(nn.Conv1d):
    def forward(self, x):  # (B, N, C)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvMLP(nn.Module):
    """SwiGLU over time: w2(silu(w1 x) * w3 x), kernel 3 convolutions (MMAudio's ConvMLP)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, kernel: int = 3):
        super().__init__()
        self.w1 = ChannelLastConv1d(dim, hidden, kernel, padding=kernel // 2, bias=False)
        self.w3 = ChannelLastConv1d(dim, hidden, kernel, padding=kernel // 2, bias=False)
        self.w2 = ChannelLastConv1d(hidden, out or dim, kernel, padding=kernel // 2, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """One token stream of an MM-DiT block: adaLN-Zero modulated attention inputs and FFN."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, conv: bool, pre_only: bool = False):
        super().__init__()
        self.heads, self.pre_only = heads, pre_only
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm, self.k_norm = nn.RMSNorm(dim // heads), nn.RMSNorm(dim // heads)
        self.ada = nn.Linear(dim, (2 if pre_only else 6) * dim)
        if not pre_only:
            self.proj = ChannelLastConv1d(dim, dim, 3, padding=1) if conv else nn.Linear(dim, dim)
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
            hidden = int(dim * mlp_ratio)
            self.ffn = ConvMLP(dim, hidden) if conv else MLP(dim, hidden)

    def pre_attention(self, x, c, angles):
        mods = self.ada(F.silu(c)).chunk(2 if self.pre_only else 6, dim=-1)
        h = modulate(self.norm1(x), mods[0], mods[1])
        q, k, v = self.qkv(h).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # (B, H, N, hd) each
        q, k = self.q_norm(q), self.k_norm(k)
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        return (q, k, v), mods[2:]

    def post_attention(self, x, attn, mods):
        if self.pre_only:
            return x
        gate_a, shift_f, scale_f, gate_f = mods
        x = x + self.proj(attn) * gate_a
        return x + self.ffn(modulate(self.norm2(x), shift_f, scale_f)) * gate_f

    def forward(self, x, c, angles):
        qkv, mods = self.pre_attention(x, c, angles)
        attn = F.scaled_dot_product_attention(*qkv).transpose(1, 2).flatten(2)
        return self.post_attention(x, attn, mods)


class JointBlock(nn.Module):
    """Both ears' latents, visual and text tokens in one attention; separate weights per modality."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, pre_only: bool):
        super().__init__()
        self.latent = Block(dim, heads, mlp_ratio, conv=True)
        self.visual = Block(dim, heads, mlp_ratio, conv=True, pre_only=pre_only)
        self.text = Block(dim, heads, mlp_ratio, conv=False, pre_only=pre_only)

    def forward(self, lat, vis, txt, c_frame, c_global, lat_angles, vis_angles):
        b2, n, d = lat.shape  # lat: (2B, N, D), ears stacked along the batch (convs never mix ears)
        (lq, lk, lv), lm = self.latent.pre_attention(lat, c_frame, lat_angles)
        (vq, vk, vv), vm = self.visual.pre_attention(vis, c_global, vis_angles)
        (tq, tk, tv), tm = self.text.pre_attention(txt, c_global, None)

        def both_ears(t):  # (2B, H, N, hd) -> (B, H, 2N, hd)
            return t.unflatten(0, (2, -1)).permute(1, 2, 0, 3, 4).flatten(2, 3)

        q = torch.cat([both_ears(lq), vq, tq], dim=2)
        k = torch.cat([both_ears(lk), vk, tk], dim=2)
        v = torch.cat([both_ears(lv), vv, tv], dim=2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)  # (B, 2N+V+T, D)
        la = out[:, : 2 * n].unflatten(1, (2, n)).transpose(0, 1).flatten(0, 1)  # back to (2B, N, D)
        va, ta = out[:, 2 * n : 2 * n + vis.shape[1]], out[:, 2 * n + vis.shape[1] :]
        return (self.latent.post_attention(lat, la, lm), self.visual.post_attention(vis, va, vm),
                self.text.post_attention(txt, ta, tm))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.ada = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.conv = ChannelLastConv1d(dim, out, 7, padding=3)

    def forward(self, x, c):
        shift, scale = self.ada(F.silu(c)).chunk(2, dim=-1)
        return self.conv(modulate(self.norm(x), shift, scale))


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = 1000.0 * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


def spatial_inputs(s: torch.Tensor) -> torch.Tensor:
    """S_sound (.., 5) = [S_h, S_area, S_var, S_LR, S_shape] -> centred, bounded inputs.

    S_h about the centre and S_LR keep their sign (mirroring the picture flips both); the
    anisotropy ratio S_shape spans decades, so its log is used.
    """
    h, area, var, lr, shape = s.unbind(-1)
    shape = torch.log(shape.clamp(1e-3, 1e3)) / math.log(1e3)
    return torch.stack([2 * (h - 0.5), area, var.clamp(0, 1) * 4, lr, shape], dim=-1)


def resample_time(x: torch.Tensor, n: int, mode: str = "nearest-exact") -> torch.Tensor:
    """(B, T, C) -> (B, n, C) along time."""
    if x.shape[1] == n:
        return x
    kwargs = {"align_corners": False} if mode == "linear" else {}
    return F.interpolate(x.transpose(1, 2), size=n, mode=mode, **kwargs).transpose(1, 2)


# -- the network -------------------------------------------------------------------------------


class SpatialV2A(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        d = c.hidden
        self.audio_in = nn.Sequential(ChannelLastConv1d(c.latent_dim, d, 7, padding=3), nn.SELU(),
                                      ConvMLP(d, int(d * c.mlp_ratio), kernel=7))
        self.ear_embed = nn.Parameter(torch.zeros(2, d))
        self.visual_in = nn.Sequential(nn.Linear(c.visual_dim, d), ConvMLP(d, int(d * c.mlp_ratio)))
        self.sync_in = nn.Sequential(ChannelLastConv1d(c.sync_dim, d, 7, padding=3), nn.SELU(),
                                     ConvMLP(d, int(d * c.mlp_ratio)))
        self.text_in = nn.Sequential(nn.Linear(c.text_dim, d), MLP(d, int(d * c.mlp_ratio)))
        self.spatial_in = nn.Sequential(ChannelLastConv1d(c.spatial_dim, d, 3, padding=1), nn.SiLU(),
                                        ChannelLastConv1d(d, d, 3, padding=1))
        self.spatial_norm = nn.LayerNorm(d)
        self.visual_cond, self.text_cond = nn.Linear(d, d), nn.Linear(d, d)
        self.global_mlp = MLP(d, int(d * c.mlp_ratio))
        self.t_embed = TimestepEmbedder(d)
        self.joint = nn.ModuleList(JointBlock(d, c.heads, c.mlp_ratio, pre_only=(i == c.n_joint - 1))
                                   for i in range(c.n_joint))
        self.single = nn.ModuleList(nn.ModuleList(Block(d, c.heads, c.mlp_ratio, conv=True) for _ in range(c.n_single))
                                    for _ in range(2))
        self.final = nn.ModuleList(FinalLayer(d, c.latent_dim) for _ in range(2))
        # Learned nulls: missing or dropped (p = 0.1 in training) conditions.
        self.null_text = nn.Parameter(torch.zeros(c.text_dim))
        self.null_visual = nn.Parameter(torch.zeros(c.visual_dim))
        self.null_sync = nn.Parameter(torch.zeros(c.sync_dim))
        self.null_spatial = nn.Parameter(torch.zeros(d))
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        nn.init.normal_(self.ear_embed, std=0.02)
        for m in self.modules():  # adaLN-Zero: every block starts as the identity
            if isinstance(m, (Block, FinalLayer)):
                nn.init.zeros_(m.ada.weight)
                nn.init.zeros_(m.ada.bias)
        for f in self.final:
            nn.init.zeros_(f.conv.weight)
            nn.init.zeros_(f.conv.bias)

    @staticmethod
    def _pick(mask, value, null):
        """value where mask (B,) is true, else the null embedding."""
        return torch.where(mask.view(-1, *([1] * (value.dim() - 1))), value, null.to(value.dtype).expand_as(value))

    def conditions(self, cond: dict, n: int) -> dict:
        """Everything that does not depend on the noisy latent (computed once per sampling run)."""
        vis_mask, text_mask, sp_mask = cond["visual_mask"], cond["text_mask"], cond["spatial_mask"]
        vis = self.visual_in(self._pick(vis_mask, cond["visual"], self.null_visual))
        sync = self.sync_in(self._pick(vis_mask, cond["sync"], self.null_sync))
        txt = self.text_in(self._pick(text_mask, cond["text"], self.null_text))
        sync = resample_time(sync, n)
        spatial = resample_time(spatial_inputs(cond["spatial"]), n, mode="linear")
        c_s = self.spatial_norm(self.spatial_in(spatial))
        c_s = self._pick(sp_mask, c_s, self.null_spatial)
        c_vt = self.global_mlp(self.visual_cond(vis.mean(1)) + self.text_cond(txt.mean(1)))
        return {"vis": vis, "txt": txt, "sync": sync, "c_s": c_s, "c_vt": c_vt}

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict, pre: dict | None = None) -> torch.Tensor:
        """x (B, 2, N, D) noisy latents, t (B,) in [0, 1] -> velocities (B, 2, N, D)."""
        b, _, n, _ = x.shape
        pre = pre or self.conditions(cond, n)
        c_g = (self.t_embed(t) + pre["c_vt"]).unsqueeze(1)  # (B, 1, d)
        c_frame = c_g + pre["sync"] + pre["c_s"]  # C_f + C_s: (B, N, d)
        lat = self.audio_in(x.transpose(0, 1).flatten(0, 1))  # (2B, N, d), left ears first
        lat = lat + self.ear_embed.repeat_interleave(b, dim=0)[:, None, :]
        c_frame2 = c_frame.repeat(2, 1, 1)
        lat_angles = rope_angles(torch.arange(n, device=x.device), lat.shape[-1] // self.config.heads)
        nv = pre["vis"].shape[1]
        vis_pos = (torch.arange(nv, device=x.device) + 0.5) * (n / max(nv, 1)) - 0.5  # same clock as latents
        vis_angles = rope_angles(vis_pos, lat.shape[-1] // self.config.heads)
        vis, txt = pre["vis"], pre["txt"]
        for block in self.joint:
            lat, vis, txt = block(lat, vis, txt, c_frame2, c_g, lat_angles, vis_angles)
        ears = lat.unflatten(0, (2, b))
        out = []
        for e in range(2):
            h = ears[e]
            for block in self.single[e]:
                h = block(h, c_frame, lat_angles)
            out.append(self.final[e](h, c_frame))
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def sample(self, cond: dict, n: int, steps: int = 25, cfg: float = 4.5, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Euler integration from noise (t=0) to data (t=1) with classifier-free guidance."""
        b = cond["visual"].shape[0]
        device = cond["visual"].device
        x = torch.randn((b, 2, n, self.config.latent_dim), generator=generator).to(device)
        pre = self.conditions(cond, n)
        empty = {**cond, "visual_mask": torch.zeros_like(cond["visual_mask"]),
                 "text_mask": torch.zeros_like(cond["text_mask"]), "spatial_mask": torch.zeros_like(cond["spatial_mask"])}
        pre_null = self.conditions(empty, n) if cfg != 1.0 else None
        for i in range(steps):
            t = torch.full((b,), i / steps, device=device)
            v = self(x, t, cond, pre)
            if pre_null is not None:
                v = cfg * v + (1 - cfg) * self(x, t, empty, pre_null)
            x = x + v / steps
        return x


def cfm_loss(net, x1: torch.Tensor, cond: dict, generator: torch.Generator) -> tuple[torch.Tensor, list[float]]:
    """Eq. 3: the sum over ears of each ear's flow-matching MSE; x_t = (1-t) x0 + t x1, t = sigmoid(N(0, 1)).

    `net` is the model or its DDP wrapper (DDP's gradient hooks need the wrapper's forward).
    """
    b = x1.shape[0]
    x0 = torch.randn(x1.shape, generator=generator).to(x1.device, x1.dtype)
    t = torch.sigmoid(torch.randn(b, generator=generator)).to(x1.device)
    tt = t.view(b, 1, 1, 1).to(x1.dtype)
    pred = net((1 - tt) * x0 + tt * x1, t, cond)
    per_ear = ((pred.float() - (x1 - x0).float()) ** 2).mean(dim=(0, 2, 3))
    return per_ear.sum(), [float(v) for v in per_ear.detach()]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
