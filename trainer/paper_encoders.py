"""The paper's condition encoders (CLIP image embedding at 8 fps, Synchformer at 24 fps), from local files.

Used instead of the offline defaults (MobileNetV2, frame differences) when `featurize` gets
`--clip ARCH:PATH` and/or `--synchformer PATH`. Nothing is downloaded: the files must exist,
and the packages that define the networks must be installed; each failure says which is missing.

- CLIP: an open_clip model name and its state dict, e.g. `ViT-B-16:/models/open_clip_vit_b16.bin`
  (MMAudio uses DFN5B `ViT-H-14-378-quickgelu`); `encode_image` of CLIP-normalised frames.
- Synchformer: MMAudio's `synchformer_state_dict.pth` into `mmaudio.ext.synchformer.Synchformer`;
  16-frame segments with stride 8 at 224 x 224, 8 tokens of 768 per segment (as MMAudio does).
"""

from __future__ import annotations

import os

import numpy as np
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SYNC_SIZE = 224
SYNC_SEGMENT, SYNC_STRIDE, SYNC_DIM = 16, 8, 768


class EncoderError(RuntimeError):
    pass


def _load_state(path: str, what: str, flag: str) -> dict:
    if not os.path.isfile(path):
        raise EncoderError(f"{flag} {path!r}: file not found. {what} weights are loaded only from a local file "
                           f"(nothing is downloaded); omit {flag} to use the offline default encoder")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def parse_clip_spec(spec: str) -> tuple[str, str]:
    arch, sep, path = spec.partition(":")
    if not sep or not arch or not path:
        raise EncoderError(f"--clip {spec!r}: expected ARCH:PATH, an open_clip model name and a local state dict, "
                           "e.g. ViT-B-16:/models/open_clip_vit_b16.bin")
    return arch, path


class ClipVisual:
    """frames (T, H, W, 3) uint8 -> (T, D) CLIP image embeddings."""

    def __init__(self, spec: str, device: torch.device):
        arch, path = parse_clip_spec(spec)
        state = _load_state(path, "CLIP", "--clip")
        try:
            import open_clip
        except Exception as exc:  # ImportError, or torchvision failing to import beside this torch
            raise EncoderError(f"--clip needs the open_clip package (pip install open_clip_torch), which could not be "
                               f"imported: {exc}") from exc
        try:
            model = open_clip.create_model(arch, pretrained=None)
        except RuntimeError as exc:
            raise EncoderError(f"--clip {spec!r}: open_clip has no model {arch!r} ({exc})") from exc
        model.load_state_dict(state)
        self.model = model.visual.to(device).eval()
        size = self.model.image_size
        self.size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.dim = int(self.model.output_dim)
        self.device = device

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, batch: int = 32) -> np.ndarray:
        mean = torch.tensor(CLIP_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=self.device)[:, None, None]
        out = []
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).to(self.device).permute(0, 3, 1, 2)
            x = torch.nn.functional.interpolate(x.float() / 255.0, size=(self.size, self.size), mode="bicubic",
                                                align_corners=False).clamp(0, 1)
            out.append(self.model((x - mean) / std).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class SynchformerSync:
    """frames (T, 224, 224, 3) uint8 at 24 fps -> (8 x segments, 768) Synchformer visual tokens."""

    dim = SYNC_DIM
    size = SYNC_SIZE

    def __init__(self, path: str, device: torch.device):
        state = _load_state(path, "Synchformer", "--synchformer")
        try:
            from mmaudio.ext.synchformer import Synchformer
        except Exception as exc:
            raise EncoderError("--synchformer needs MMAudio's Synchformer code (pip install "
                               f"git+https://github.com/hkchengrex/MMAudio), which could not be imported: {exc}") from exc
        model = Synchformer()
        model.load_state_dict(state)
        self.model = model.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) < SYNC_SEGMENT:
            return np.zeros((0, SYNC_DIM), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        x = (x - 0.5) / 0.5  # Synchformer's normalisation
        segments = x.unfold(0, SYNC_SEGMENT, SYNC_STRIDE).permute(0, 4, 1, 2, 3)  # (S, 16, C, H, W)
        tokens = self.model(segments[None])  # (1, S, 8, 768)
        return tokens.reshape(-1, SYNC_DIM).float().cpu().numpy()
