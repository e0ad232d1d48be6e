"""Plug-in interface: the registry, and learned localisers loaded from local checkpoint files."""

import textwrap

import numpy as np
import pytest
import torch

from binauralizer.localize import Localiser, available, build_localiser, register, trajectory_from_heatmaps
from binauralizer.localize.base import LearnedLocaliser, combine, normalise_clip

PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn

    class RednessNet(nn.Module):
        """Scores how red each 4 x 4 block is: a stand-in for a trained audio-visual model."""

        def __init__(self, pool: int = 4):
            super().__init__()
            self.mix = nn.Conv2d(3, 1, 1, bias=False)
            self.pool = nn.AvgPool2d(pool)

        def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
            return self.pool(self.mix(frames)) * (audio.abs().mean() > 0)
''')


def red_square_frames(x0: int, t: int = 6) -> np.ndarray:
    frames = np.full((t, 64, 96, 3), 100, np.uint8)
    frames[:, 24:40, x0 : x0 + 16] = (240, 20, 20)
    return frames


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_localiser.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("my_localiser")
    net = module.RednessNet()
    with torch.no_grad():
        net.mix.weight[:] = torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1)
    return net


def test_state_dict_checkpoint_with_its_architecture(tmp_path, plugin):
    path = tmp_path / "redness.pt"
    torch.save({"arch": "my_localiser:RednessNet", "kwargs": {"pool": 4}, "state_dict": plugin.state_dict()}, path)
    loc = build_localiser(f"learned:{path}")
    assert isinstance(loc, Localiser)
    heat = loc.heatmaps(red_square_frames(8), np.full(16000, 0.1, np.float32))
    assert heat.shape == (6, 16, 24) and heat.max() == 1.0 and heat.min() >= 0.0
    traj = trajectory_from_heatmaps(heat, fov_deg=120.0)
    np.testing.assert_allclose(traj[:, 0], (0.5 - 16 / 96) * 120.0, atol=1.0)  # square centre x = 16 px: left


def test_torch_export_program(tmp_path, plugin):
    path = tmp_path / "redness.pt2"
    example = (torch.zeros(6, 3, 64, 96), torch.full((16000,), 0.1))
    torch.export.save(torch.export.export(plugin.eval(), example), str(path))
    heat = build_localiser(f"learned:{path}").heatmaps(red_square_frames(40), np.full(16000, 0.1, np.float32))
    np.testing.assert_allclose(trajectory_from_heatmaps(heat)[:, 0], (0.5 - 48 / 96) * 120.0, atol=1.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch deprecates TorchScript; users still have such files
def test_torchscript_checkpoint(tmp_path, plugin):
    path = tmp_path / "redness.ts"
    torch.jit.script(plugin).save(str(path))
    heat = build_localiser(f"learned:{path}").heatmaps(red_square_frames(72), np.full(8000, 0.1, np.float32))
    traj = trajectory_from_heatmaps(heat)
    np.testing.assert_allclose(traj[:, 0], (0.5 - 80 / 96) * 120.0, atol=1.0)  # right half: negative azimuth


def test_bad_checkpoints_fail_with_readable_messages(tmp_path, plugin):
    with pytest.raises(FileNotFoundError, match="not found"):
        build_localiser(f"learned:{tmp_path / 'missing.pt'}")
    torch.save({"weights": plugin.state_dict()}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="not a dict with 'arch' and 'state_dict'"):
        LearnedLocaliser(str(tmp_path / "bare.pt"))
    torch.save({"arch": "my_localiser:RednessNet", "state_dict": {}}, tmp_path / "empty.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        LearnedLocaliser(str(tmp_path / "empty.pt"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_learned_output_of_the_wrong_shape_is_rejected(tmp_path):
    class Flat(torch.nn.Module):
        def forward(self, frames, audio):
            return frames.mean(dim=(1, 2, 3))

    path = tmp_path / "flat.ts"
    torch.jit.script(Flat()).save(str(path))
    with pytest.raises(ValueError, match="expected"):
        build_localiser(f"learned:{path}").heatmaps(red_square_frames(8), np.ones(100, np.float32))


def test_registry_names_and_custom_registration():
    assert {"motion", "semantic", "semantic+motion", "learned:<path>"} <= set(available())
    with pytest.raises(ValueError, match="unknown localiser 'nope'"):
        build_localiser("nope")

    @register("test-centre")
    class Centre:
        def heatmaps(self, frames, audio):
            out = np.zeros((len(frames), 3, 3), np.float32)
            out[:, 1, 1] = 1.0
            return out

    heat = build_localiser("test-centre").heatmaps(red_square_frames(8), np.ones(10, np.float32))
    np.testing.assert_allclose(trajectory_from_heatmaps(heat)[:, :2], 0.0)


def test_normalise_and_combine():
    np.testing.assert_allclose(normalise_clip(np.array([[[-1.0, 2.0]], [[np.nan, 4.0]]])), [[[0, 0.5]], [[0, 1.0]]])
    assert normalise_clip(np.zeros((2, 2, 2))).max() == 0.0
    maps = np.ones((1, 4, 4), np.float32)
    gate = np.zeros((1, 2, 2), np.float32)
    gate[0, 0, 0] = 1.0
    out = combine(maps, gate)
    assert out.shape == (1, 4, 4) and out.max() <= 1.0 and out.min() >= 0.5  # the gate never erases
    assert out[0, 0, 0] == 1.0 and out[0, 3, 3] == 0.5
