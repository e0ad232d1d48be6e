"""The visual encoders: torchvision-exact layouts, real ImageNet weights, strict loading."""

import numpy as np
import pytest
import torch

from binauralizer.pseudobinaural import backbones


@pytest.fixture(scope="module")
def mobilenet():
    return backbones.mobilenet_v2(pretrained=True)


def test_mobilenet_weights_match_every_key(mobilenet):
    state = torch.load(backbones.mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
    ours = mobilenet.state_dict()
    assert set(state) == set(ours) and len(ours) == 314
    assert all(torch.equal(state[k], ours[k]) for k in state)


def test_real_cat_photo_is_classified_as_a_cat(mobilenet):
    import skimage.data  # pinned test dependency: scikit-image==0.26.0

    top5 = backbones.classify(mobilenet, skimage.data.chelsea(), top=5)[0]
    assert any(idx in backbones.IMAGENET_CAT_CLASSES for idx, _, _ in top5), top5
    assert top5[0][0] in backbones.IMAGENET_CAT_CLASSES and top5[0][2] > 0.3


def test_class_names_are_imagenet_order():
    names = backbones.imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"
    assert backbones.IMAGENET_CLASSES is names


def test_feature_maps_for_the_unet_frame(mobilenet):
    frame = np.zeros((224, 448, 3), np.uint8)
    x = backbones.to_imagenet_tensor(frame)
    assert x.shape == (1, 3, 224, 448)
    with torch.no_grad():
        assert mobilenet.feature_map(x).shape == (1, 1280, 7, 14)
        assert backbones.resnet18().feature_map(x).shape == (1, 512, 7, 14)


def test_resnet18_loads_strictly_and_rejects_foreign_checkpoints(tmp_path):
    source = backbones.resnet18()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = backbones.resnet18(checkpoint=str(path))
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(RuntimeError, match="Missing key"):
        backbones.resnet18(checkpoint=backbones.mobilenet_v2_weights_path())


def test_unknown_backbone_is_a_readable_error():
    with pytest.raises(ValueError, match="unknown visual backbone"):
        backbones.build_backbone("vgg16")
