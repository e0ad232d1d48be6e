"""PseudoBinaural's audio-visual U-Net (Sep-Stereo layout) with an optional APNet branch.

The network sees the complex STFT of a mono mixture and one video frame and predicts a complex
mask M (real and imaginary parts in [-mask_range, mask_range]; the paper's 1 clips large ILDs)
whose product with the mixture is the left-minus-right difference:
diff = M * mix, L = (mix + diff) / 2, R = (mix - diff) / 2. Visual features enter at the
bottleneck: backbone feature map -> 1x1 conv to 8 channels -> flattened -> tiled over the 8 x 2
bottleneck, so the position of what is seen reaches every audio unit. With `heatmap` on, the
localiser's heatmap of the frame (pooled to a 4 x 16 grid, peak-normalised) is flattened and tiled
there too, and the visual and heatmap vector modulates every decoder level (FiLM: x * (1 + g) + b
per channel, after the level's normalisation): the network is told where the sounding thing is
instead of guessing it from texture. Why FiLM: a feature tiled over space is a per-channel
constant, which the next InstanceNorm subtracts again, so tiling alone barely reaches the mask.

`width` scales every audio channel count (1.0 = the paper's 64-128-256-512-512); a tiny width
and a small frame size make a model that trains in about a minute on two CPU cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from binauralizer.pseudobinaural.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from binauralizer.torchtrain import atomic_torch_save

from binauralizer.constants import SAMPLE_RATE  # noqa: E402
N_FFT, HOP, WIN = 512, 160, 400
WINDOW_SAMPLES = 10080  # 0.63 s: 64 STFT frames
LEVELS = (64, 128, 256, 512, 512)
HEAT_GRID = (4, 16)  # the heatmap's resolution at the bottleneck: 16 columns = 7.5 degrees at 120 degrees FOV
IPD_MAX_HZ = 1500.0  # the cue loss's phase term: where interaural phase carries the ITD


# ---------------------------------------------------------------------------------------------
# STFT helpers (same transform for the model, the losses and the metrics)
# ---------------------------------------------------------------------------------------------


def stft(x: torch.Tensor) -> torch.Tensor:
    """(..., N) float -> (..., 257, frames) complex; centred Hann-400 window, hop 160."""
    shape = x.shape
    window = torch.hann_window(WIN, device=x.device, dtype=x.dtype)
    spec = torch.stft(x.reshape(-1, shape[-1]), N_FFT, HOP, WIN, window, center=True, return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of `stft` for (..., 257, frames) complex; the top bin may be absent (zero-filled)."""
    if spec.shape[-2] == N_FFT // 2:
        spec = torch.cat([spec, torch.zeros_like(spec[..., :1, :])], dim=-2)
    shape = spec.shape
    window = torch.hann_window(WIN, device=spec.device, dtype=spec.real.dtype)
    x = torch.istft(spec.reshape(-1, *shape[-2:]), N_FFT, HOP, WIN, window, center=True, length=length)
    return x.reshape(*shape[:-2], length)


def complex_to_channels(spec: torch.Tensor) -> torch.Tensor:
    """(B, F, T) complex -> (B, 2, F-1, T) real/imag with the top (Nyquist) bin dropped."""
    spec = spec[..., : N_FFT // 2, :]
    return torch.stack([spec.real, spec.imag], dim=1)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    return torch.complex(x[:, 0].float(), x[:, 1].float())


def apply_mask(mask: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Complex product of a (B, 2, F, T) mask with a (B, 2, F, T) spectrogram, as channels."""
    real = mask[:, 0] * mix[:, 0] - mask[:, 1] * mix[:, 1]
    imag = mask[:, 0] * mix[:, 1] + mask[:, 1] * mix[:, 0]
    return torch.stack([real, imag], dim=1)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass
class UNetConfig:
    width: float = 1.0
    visual: str = "mobilenet_v2"  # or "resnet18"
    visual_checkpoint: str | None = None  # resnet18 needs one for ImageNet features
    pretrained: bool = True
    freeze_visual: bool = True
    visual_channels: int = 8
    frame_size: tuple[int, int] = (224, 448)
    apnet: bool = False
    # defaults keep checkpoints written before these fields loading as they were trained
    heatmap: bool = False  # condition on the localiser's heatmap (training.TrainConfig turns it on)
    heatmap_grid: tuple[int, int] = HEAT_GRID
    mask_range: float = 1.0  # |Re M|, |Im M| <= mask_range
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frame_size"] = list(self.frame_size)
        d["heatmap_grid"] = list(self.heatmap_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        d["frame_size"] = tuple(d.get("frame_size", (224, 448)))
        d["heatmap_grid"] = tuple(d.get("heatmap_grid", HEAT_GRID))
        return cls(**d)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2, True))


def _up(cin: int, cout: int, last: bool = False) -> nn.Sequential:
    conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    if last:
        return nn.Sequential(conv)
    return nn.Sequential(conv, nn.InstanceNorm2d(cout, affine=True), nn.ReLU(True))


class APNetBranch(nn.Module):
    """Each visual position's feature becomes a 1x1 kernel over the decoder's audio maps.

    At decoder levels 1-4 the kernels (one per visual position, projected to the level's width)
    correlate with the audio feature map, giving P maps per level; a transposed-conv pyramid
    merges the levels up to the spectrogram size and two heads output complex masks for L and R.
    """

    def __init__(self, visual_dim: int, level_channels: tuple[int, ...], positions: int, hidden: int):
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(visual_dim, c) for c in level_channels)
        pyramid = []
        cin = positions
        for i in range(len(level_channels)):
            extra = positions if i + 1 < len(level_channels) else 0
            pyramid.append(_up(cin, hidden))
            cin = hidden + extra
        self.pyramid = nn.ModuleList(pyramid)
        self.head = nn.Conv2d(hidden, 4, 3, 1, 1)  # L real/imag, R real/imag
        self.scale = visual_dim ** -0.5

    def forward(self, visual_tokens: torch.Tensor, level_maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        fused = []
        for proj, fmap in zip(self.project, level_maps):
            kernels = proj(visual_tokens)  # (B, P, C)
            fused.append(torch.einsum("bpc,bchw->bphw", kernels, fmap) * self.scale)
        x = fused[0]
        for i, up in enumerate(self.pyramid):
            x = up(x)
            if i + 1 < len(fused):
                x = torch.cat([x, fused[i + 1]], dim=1)
        masks = torch.sigmoid(self.head(x)) * 2 - 1
        return masks[:, :2], masks[:, 2:]


class AudioVisualUNet(nn.Module):
    """mix spectrogram (B, 2, 256, 64) + frame (B, 3, h, w) -> complex mask (B, 2, 256, 64)."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        ch = [max(4, int(round(c * cfg.width))) for c in LEVELS]
        self.visual = build_backbone(cfg.visual, checkpoint=cfg.visual_checkpoint, pretrained=cfg.pretrained)
        if cfg.freeze_visual:
            for p in self.visual.parameters():
                p.requires_grad_(False)
        vh, vw = -(-cfg.frame_size[0] // 32), -(-cfg.frame_size[1] // 32)
        self.visual_positions = vh * vw
        self.visual_reduce = nn.Sequential(nn.Conv2d(self.visual.out_channels, cfg.visual_channels, 1), nn.ReLU(True))
        visual_flat = cfg.visual_channels * self.visual_positions
        if cfg.heatmap:
            visual_flat += cfg.heatmap_grid[0] * cfg.heatmap_grid[1]

        self.down = nn.ModuleList(_down(cin, cout) for cin, cout in zip([2] + ch[:-1], ch))
        self.up = nn.ModuleList([
            _up(ch[4] + visual_flat, ch[3]),
            _up(ch[3] * 2, ch[2]),
            _up(ch[2] * 2, ch[1]),
            _up(ch[1] * 2, ch[0]),
            _up(ch[0] * 2, 2, last=True),
        ])
        self.film = None
        if cfg.heatmap:  # zero-initialised: training starts from the unconditioned network
            self.film = nn.ModuleList(nn.Linear(visual_flat, 2 * c) for c in (ch[3], ch[2], ch[1], ch[0]))
            for layer in self.film:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.apnet = None
        if cfg.apnet:
            self.apnet_tokens = nn.Linear(self.visual.out_channels, 2 * ch[0])
            self.apnet = APNetBranch(2 * ch[0], (ch[3], ch[2], ch[1], ch[0]), self.visual_positions, ch[0])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # parameter groups for per-group learning rates (visual / audio / fusion)
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        visual = [p for p in self.visual.parameters() if p.requires_grad]
        audio = [p for m in (self.down, self.up) for p in m.parameters()]
        taken = {id(p) for p in visual + audio} | {id(p) for p in self.visual.parameters()}
        fusion = [p for p in self.parameters() if id(p) not in taken and p.requires_grad]
        return {"visual": visual, "audio": audio, "fusion": fusion}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_visual:  # frozen encoder keeps ImageNet BatchNorm statistics
            self.visual.eval()
        return self

    def visual_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) frames or normalised (B, 3, h, w) tensors -> (B, C, h/32, w/32)."""
        if frames.dtype == torch.uint8:
            x = frames.permute(0, 3, 1, 2).float() / 255.0
            if tuple(x.shape[-2:]) != tuple(self.config.frame_size):
                x = F.interpolate(x, size=self.config.frame_size, mode="bilinear", align_corners=False, antialias=True)
            frames = (x - self.mean) / self.std
        if self.config.freeze_visual:
            with torch.no_grad():
                return self.visual.feature_map(frames)
        return self.visual.feature_map(frames)

    def forward(self, mix: torch.Tensor, frames: torch.Tensor, heat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """mix: (B, 2, 256, T) real/imag; frames: see `visual_features`; heat: (B, h, w) localiser
        heatmaps (any grid; None = no evidence, a flat map). Returns masks and diff."""
        fmap = self.visual_features(frames)
        skips = []
        x = mix
        for block in self.down:
            x = block(x)
            skips.append(x)
        v = self.visual_reduce(fmap).flatten(1)  # (B, 8 * positions)
        if self.config.heatmap:
            if heat is None:
                heat = torch.ones(len(mix), *self.config.heatmap_grid, device=mix.device)
            grid = pool_heat(heat.to(mix.device), self.config.heatmap_grid)
            v = torch.cat([v, grid.flatten(1).to(v.dtype)], 1)
        cond = v
        v = v[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        x = torch.cat([x, v], dim=1)
        level_maps = []
        for i, block in enumerate(self.up):
            x = block(x)
            if i < 4 and self.film is not None:
                gain, bias = self.film[i](cond).chunk(2, dim=1)
                x = x * (1 + gain[:, :, None, None]) + bias[:, :, None, None]
            if i < 4:
                level_maps.append(x)
                x = torch.cat([x, skips[3 - i]], dim=1)
        mask = (torch.sigmoid(x) * 2 - 1) * self.config.mask_range
        out = {"mask": mask, "diff": apply_mask(mask, mix)}
        if self.apnet is not None:
            tokens = self.apnet_tokens(fmap.flatten(2).transpose(1, 2))  # (B, P, C)
            mask_l, mask_r = self.apnet(tokens, level_maps)
            out["pred_left"] = apply_mask(mask_l, mix)
            out["pred_right"] = apply_mask(mask_r, mix)
        return out


def pool_heat(heat: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) heatmaps -> (B, *grid), each peak-normalised to 1 (a flat or empty map becomes all ones:
    no evidence). Idempotent, so callers may pool before batching maps of different grids."""
    heat = torch.nan_to_num(heat.float().clamp(min=0.0), nan=0.0)
    pooled = F.adaptive_avg_pool2d(heat[:, None], tuple(grid))[:, 0]
    peak = pooled.flatten(1).max(1).values[:, None, None]
    flat = (pooled.flatten(1).min(1).values[:, None, None] >= peak) | (peak <= 1e-8)
    return torch.where(flat, torch.ones_like(pooled), pooled / peak.clamp(min=1e-8))


def cue_loss(pred_diff: torch.Tensor, mix: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """Energy-weighted interaural cue error of the ears the masks make, L = (mix + d) / 2, R = (mix - d) / 2.

    L1 on the difference spectrogram is dominated by loud high bins and barely sees phase; this term
    compares each bin's ILD (dB / 20, so 20 dB counts 1) and, below IPD_MAX_HZ, its interaural phase
    (1 - cos of the IPD error), both weighted by the bin's energy in the target ears, so the
    low-frequency phase that carries the ITD counts as much as level.
    """
    def ears(d):
        return (mix[:, 0] + d[:, 0]) / 2, (mix[:, 1] + d[:, 1]) / 2, (mix[:, 0] - d[:, 0]) / 2, (mix[:, 1] - d[:, 1]) / 2

    plr, pli, prr, pri = ears(pred_diff)
    tlr, tli, trr, tri = ears(diff)
    eps = 1e-6
    p_l, p_r = plr**2 + pli**2 + eps, prr**2 + pri**2 + eps
    t_l, t_r = tlr**2 + tli**2 + eps, trr**2 + tri**2 + eps
    weight = (t_l + t_r).detach()
    weight = weight / weight.sum(dim=(1, 2), keepdim=True)
    ild = (torch.log10(p_l / p_r) - torch.log10(t_l / t_r)).abs() * 0.5  # |dILD| dB / 20
    # cross spectra L R*: their angle is the IPD
    pc_r, pc_i = plr * prr + pli * pri, pli * prr - plr * pri
    tc_r, tc_i = tlr * trr + tli * tri, tli * trr - tlr * tri
    cos = (pc_r * tc_r + pc_i * tc_i) / (torch.sqrt(pc_r**2 + pc_i**2 + eps**2) * torch.sqrt(tc_r**2 + tc_i**2 + eps**2))
    bins = torch.arange(mix.shape[2], device=mix.device) * (SAMPLE_RATE / N_FFT)
    low = (bins <= IPD_MAX_HZ).to(mix.dtype)[None, :, None]
    low_weight = weight * low
    low_weight = low_weight / low_weight.sum(dim=(1, 2), keepdim=True).clamp(min=1e-12)
    return (weight * ild).sum(dim=(1, 2)).mean() + (low_weight * (1 - cos)).sum(dim=(1, 2)).mean()


def losses(out: dict[str, torch.Tensor], mix: torch.Tensor, diff: torch.Tensor,
           cue_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """L1 on the difference spectrogram (+ the cue term when weighted, + APNet's two losses when on)."""
    parts = {"diff": F.l1_loss(out["diff"], diff)}
    if cue_weight:
        parts["cues"] = cue_weight * cue_loss(out["diff"], mix, diff)
    if "pred_left" in out:
        parts["apnet_left"] = 0.5 * F.l1_loss(2 * out["pred_left"] - mix, diff)
        parts["apnet_right"] = 0.5 * F.l1_loss(mix - 2 * out["pred_right"], diff)
    parts["total"] = sum(parts.values())
    return parts


def build_model(config: UNetConfig | dict | None = None) -> AudioVisualUNet:
    if isinstance(config, dict):
        config = UNetConfig.from_dict(config)
    return AudioVisualUNet(config)


def save_model(model: AudioVisualUNet, path: str) -> None:
    """Weights + config in one file (atomic, byte-reproducible): what `convert` needs to rebuild the model.

    Serialised to memory first (atomic_torch_save): torch.save names the zip's records after the
    file, so saving to a random temporary name would make identical weights differ in bytes.
    """
    atomic_torch_save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, path)


def load_model(path: str, device: str | torch.device = "cpu") -> AudioVisualUNet:
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = UNetConfig.from_dict(state["config"])
    cfg.pretrained = False  # every weight, the visual encoder's included, comes from the file
    cfg.visual_checkpoint = None
    model = AudioVisualUNet(cfg)
    model.load_state_dict(state["state_dict"], strict=True)
    return model.to(device).eval()
