"""The U-Net: shapes, mask range, the STFT it is defined on, APNet, and that it can learn."""

import pytest
import torch

from binauralizer.pseudobinaural import unet
from binauralizer.pseudobinaural.unet import UNetConfig

TINY = dict(width=0.0625, frame_size=(64, 128))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two threads on a shared 2-core machine spin against other work: one is faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, unet.WINDOW_SAMPLES, generator=g) * 0.1
    frames = torch.randint(0, 256, (batch, 360, 640, 3), generator=g, dtype=torch.uint8)
    return audio, frames


def test_stft_layout_matches_the_paper():
    audio, _ = _inputs()
    spec = unet.stft(audio)
    assert spec.shape == (2, 257, 64) and spec.is_complex()
    assert unet.complex_to_channels(spec).shape == (2, 2, 256, 64)
    back = unet.istft(spec, unet.WINDOW_SAMPLES)
    assert torch.allclose(back, audio, atol=1e-5)


def test_paper_scale_shapes_and_mask_range():
    torch.manual_seed(0)
    model = unet.build_model(UNetConfig(width=1.0, frame_size=(224, 448), pretrained=False)).eval()
    audio, frames = _inputs()
    mix = unet.complex_to_channels(unet.stft(audio))
    with torch.no_grad():
        out = model(mix, frames)
    assert out["mask"].shape == (2, 2, 256, 64) and out["diff"].shape == (2, 2, 256, 64)
    assert out["mask"].min() >= -1 and out["mask"].max() <= 1
    assert model.visual_positions == 7 * 14  # 224 x 448 frame -> 7 x 14 -> 784 visual values
    assert model.up[0][0].in_channels == 512 + 8 * 98


def test_visual_input_changes_the_prediction():
    torch.manual_seed(0)
    model = unet.build_model(UNetConfig(**TINY)).eval()
    audio, frames = _inputs()
    mix = unet.complex_to_channels(unet.stft(audio))
    frames[1] = frames[0]
    mix[1] = mix[0]
    other = frames.clone()
    other[1] = 255 - other[1]
    with torch.no_grad():
        a, b = model(mix, frames)["mask"], model(mix, other)["mask"]
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_apnet_branch_and_its_losses():
    torch.manual_seed(0)
    model = unet.build_model(UNetConfig(apnet=True, **TINY))
    audio, frames = _inputs()
    mix = unet.complex_to_channels(unet.stft(audio))
    out = model(mix, frames)
    assert out["pred_left"].shape == out["pred_right"].shape == (2, 2, 256, 64)
    parts = unet.losses(out, mix, mix * 0.3)
    assert set(parts) == {"diff", "apnet_left", "apnet_right", "total"}
    assert torch.isclose(parts["total"], parts["diff"] + parts["apnet_left"] + parts["apnet_right"])
    groups = model.parameter_groups()
    assert groups["visual"] == [] and len(groups["fusion"]) > 4  # frozen encoder; APNet is fusion


def test_overfitting_one_pair_drives_the_loss_near_zero():
    torch.manual_seed(0)
    model = unet.build_model(UNetConfig(**TINY))
    audio, _ = _inputs(batch=1)
    frames = torch.randint(0, 256, (1, 64, 128, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    mix = unet.complex_to_channels(unet.stft(audio))
    # target: a left-leaning binaural pair of the same mixture (|mask| <= 1 so it is reachable)
    diff = unet.apply_mask(torch.stack([torch.full_like(mix[:, 0], 0.5), torch.full_like(mix[:, 0], -0.2)], 1), mix)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for _ in range(80):
        loss = unet.losses(model(mix, frames), mix, diff)["total"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first, (first, loss.item())


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = unet.build_model(UNetConfig(**TINY))
    path = tmp_path / "model.pt"
    unet.save_model(model, str(path))
    loaded = unet.load_model(str(path))
    assert loaded.config.width == TINY["width"] and loaded.config.frame_size == TINY["frame_size"]
    audio, frames = _inputs()
    mix = unet.complex_to_channels(unet.stft(audio))
    with torch.no_grad():
        assert torch.equal(model.eval()(mix, frames)["mask"], loaded(mix, frames)["mask"])


def test_a_checkpoint_from_before_heatmaps_loads_as_it_was_trained(tmp_path):
    """Configs written before `heatmap` / `mask_range` existed rebuild the unconditioned [-1, 1] model."""
    torch.manual_seed(0)
    model = unet.build_model(UNetConfig(**TINY))
    path = tmp_path / "old.pt"
    state = {"config": {k: v for k, v in model.config.to_dict().items()
                        if k not in ("heatmap", "heatmap_grid", "mask_range")}, "state_dict": model.state_dict()}
    torch.save(state, path)
    loaded = unet.load_model(str(path))
    assert not loaded.config.heatmap and loaded.config.mask_range == 1.0 and loaded.film is None
    audio, frames = _inputs()
    mix = unet.complex_to_channels(unet.stft(audio))
    with torch.no_grad():
        assert torch.equal(model.eval()(mix, frames)["mask"], loaded(mix, frames)["mask"])


def test_the_heatmap_steers_a_conditioned_model_and_flat_means_no_evidence():
    torch.manual_seed(0)
    model = unet.build_model(UNetConfig(**TINY, heatmap=True, mask_range=2.0)).eval()
    for layer in model.film:  # trained FiLM layers are not zero
        torch.nn.init.normal_(layer.weight, std=0.5)
    audio, frames = _inputs()
    mix = unet.complex_to_channels(unet.stft(audio))
    left, right = torch.zeros(2, 20, 40), torch.zeros(2, 20, 40)
    left[:, 8:12, 2:8], right[:, 8:12, 32:38] = 1.0, 1.0
    with torch.no_grad():
        a, b = model(mix, frames, left)["mask"], model(mix, frames, right)["mask"]
        flat, none = model(mix, frames, torch.full((2, 20, 40), 0.3))["mask"], model(mix, frames)["mask"]
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(flat, none)  # a flat map and no map are the same input: no evidence
    assert a.abs().max() <= 2.0
    grid = unet.pool_heat(left, unet.HEAT_GRID)
    assert grid.shape == (2, 4, 16) and float(grid.max()) == 1.0 and torch.equal(unet.pool_heat(grid, unet.HEAT_GRID), grid)
