"""Audiobox Aesthetics loading, windowing and scoring, checked against the package's own predictor.

The real weights cannot be fetched here, so a checkpoint with the real architecture and seeded
random weights is written once per session in checkpoint.pt's exact format. The package's
predictor imports torchaudio (unimportable here): the comparison runs it with a minimal
torchaudio stand-in (soundfile + scipy) that exists only inside the fixture.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from audioquality import AXES
from audioquality.audiobox import (
    REPO_ID,
    AudioboxScorer,
    CheckpointNotFound,
    find_checkpoint,
    inspect_checkpoint,
    load_model,
    make_windows,
    write_random_checkpoint,
)

SR = 16000




@pytest.fixture(scope="module")
def scorer(random_checkpoint) -> AudioboxScorer:
    return AudioboxScorer(random_checkpoint, device="cpu", precision="fp32", batch_size=2, num_threads=2)




@pytest.fixture
def package_infer(monkeypatch):
    """`audiobox_aesthetics.infer` imported with a torchaudio stand-in confined to this test."""
    ta = types.ModuleType("torchaudio")
    functional = types.ModuleType("torchaudio.functional")

    def load(path, frame_offset=0, num_frames=-1):
        data, sr = sf.read(path, dtype="float32", always_2d=True, start=int(frame_offset), frames=int(num_frames))
        return torch.from_numpy(np.ascontiguousarray(data.T)), sr

    def info(path):
        return types.SimpleNamespace(sample_rate=sf.info(path).samplerate)

    def resample(waveform, orig_freq, new_freq):
        if orig_freq == new_freq:  # torchaudio returns the input unchanged too
            return waveform
        g = math.gcd(int(orig_freq), int(new_freq))
        out = resample_poly(waveform.numpy(), int(new_freq) // g, int(orig_freq) // g, axis=-1)
        return torch.from_numpy(out.astype(np.float32))

    ta.load, ta.info, ta.functional = load, info, functional
    functional.resample = resample
    monkeypatch.setitem(sys.modules, "torchaudio", ta)
    monkeypatch.setitem(sys.modules, "torchaudio.functional", functional)
    monkeypatch.delitem(sys.modules, "audiobox_aesthetics.infer", raising=False)
    infer = importlib.import_module("audiobox_aesthetics.infer")
    yield infer
    sys.modules.pop("audiobox_aesthetics.infer", None)
    import audiobox_aesthetics

    if hasattr(audiobox_aesthetics, "infer"):
        delattr(audiobox_aesthetics, "infer")


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(int(4.0 * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.01 * rng.standard_normal(t.size)
    noise = 0.2 * rng.standard_normal(int(12.5 * SR))  # two windows: weights 1 and 0.25
    return [tone.astype(np.float32), noise.astype(np.float32)]


# -- equivalence with the package ------------------------------------------------------------------


def test_scores_match_the_package_predictor(random_checkpoint, package_infer, scorer, tmp_path):
    clips = _clips()
    paths = []
    for i, clip in enumerate(clips):
        paths.append(str(tmp_path / f"clip{i}.wav"))
        sf.write(paths[-1], clip, SR, subtype="FLOAT")  # lossless: both sides see the same samples

    predictor = package_infer.AesPredictor(checkpoint_pth=random_checkpoint, data_col="path")
    theirs = predictor.forward([{"path": p} for p in paths])  # all 3 windows in one forward
    ours = scorer.score(clips)  # 2 windows per forward

    assert [set(r) for r in theirs] == [set(AXES)] * 2
    for t, o in zip(theirs, ours):
        for axis in AXES:
            assert abs(t[axis] - o[axis]) < 1e-4, (axis, t[axis], o[axis])
    # The two clips score differently, so the comparison above could have failed.
    assert max(abs(ours[0][a] - ours[1][a]) for a in AXES) > 1e-3


@pytest.mark.parametrize("seconds", [0.5, 10.0, 10.0 + 1 / SR, 25.3])
def test_windows_match_the_package(package_infer, seconds):
    wav = np.random.default_rng(1).standard_normal(int(round(seconds * SR))).astype(np.float32)
    windows, valid, weights, owner = make_windows([wav, wav[: SR]])
    p_wavs, p_masks, p_weights, p_bids = package_infer.make_inference_batch(
        [torch.from_numpy(wav)[None], torch.from_numpy(wav[:SR])[None]], 10, 10, sample_rate=SR
    )
    assert windows.shape[0] == len(p_wavs)
    np.testing.assert_array_equal(windows, torch.stack(p_wavs).squeeze(1).numpy())
    np.testing.assert_array_equal(valid, torch.stack(p_masks).squeeze(1).numpy())
    np.testing.assert_allclose(weights, p_weights, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(owner, p_bids)


# -- precision ---------------------------------------------------------------------------------------


def test_bf16_setting_really_autocasts(scorer):
    """The package's own bf16 flag is a no-op; ours must change the dtype the encoder computes in.
    One second of one window (the scorer pads every clip to 10 s, and bf16 matmuls are emulated,
    slowly, on most CPUs): the same forward path score() takes, on a tenth of the work."""
    seen = []
    linear = scorer.model.wavlm_model.encoder.layers[0].fc1
    handle = linear.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    window = _clips()[0][None, :SR].astype(np.float32)
    valid = np.ones_like(window, dtype=bool)
    try:
        fp32 = scorer.predict_windows(window, valid, 1)[0]
        scorer.precision = "bf16"
        bf16 = scorer.predict_windows(window, valid, 1)[0]
    finally:
        scorer.precision = "fp32"
        handle.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert np.isfinite(bf16).all()
    assert np.abs(bf16 - fp32).max() < 0.05  # normalised outputs: bf16 keeps ~3 significant digits


# -- finding and loading checkpoints ---------------------------------------------------------------


def test_explicit_checkpoint_file_or_directory(random_checkpoint):
    for given in (random_checkpoint, os.path.dirname(random_checkpoint)):
        source = find_checkpoint(given, allow_download=False)
        assert (source.path, source.layout, source.origin) == (random_checkpoint, "checkpoint", "config")


def test_pretrained_layout_loads_the_same_weights(scorer, tmp_path):
    scorer.model.save_pretrained(str(tmp_path / "pretrained"))  # the package's hub layout
    source = find_checkpoint(str(tmp_path / "pretrained"), allow_download=False)
    assert source.layout == "pretrained"
    model = load_model(source)
    assert not model.training
    assert model.target_transform == scorer.model.target_transform
    ours, theirs = model.state_dict(), scorer.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_hugging_face_cache_is_found(random_checkpoint, offline):
    snapshot = offline / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (offline / f"models--{REPO_ID.replace('/', '--')}" / "refs").mkdir()
    (offline / f"models--{REPO_ID.replace('/', '--')}" / "refs" / "main").write_text("0123abcd")
    os.symlink(random_checkpoint, snapshot / "checkpoint.pt")
    source = find_checkpoint(None)  # cache from HF_HUB_CACHE, read at call time
    assert source.origin == "hf-cache" and source.layout == "checkpoint"
    assert os.path.samefile(source.path, random_checkpoint)


def test_missing_checkpoint_says_where_it_looked(offline):
    with pytest.raises(CheckpointNotFound) as err:
        find_checkpoint(None, allow_download=True)
    text = str(err.value)
    assert "quality.checkpoint: not set" in text
    assert f"Hugging Face cache {offline}" in text
    assert "HF_HUB_OFFLINE=1" in text  # and so no download was attempted
    assert "hf download facebook/audiobox-aesthetics checkpoint.pt" in text
    assert "quality.backend: dsp" in text

    with pytest.raises(CheckpointNotFound, match="no such file or directory"):
        find_checkpoint(str(offline / "nowhere" / "checkpoint.pt"))
    with pytest.raises(CheckpointNotFound, match="neither checkpoint.pt nor config.json"):
        find_checkpoint(str(offline))


def test_foreign_file_is_rejected_before_loading(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {}, "epoch": 3}, path)
    with pytest.raises(ValueError, match=r"not an Audiobox Aesthetics checkpoint: missing \['model_cfg'"):
        inspect_checkpoint(find_checkpoint(str(path), allow_download=False))
    (tmp_path / "junk.pt").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read"):
        inspect_checkpoint(find_checkpoint(str(tmp_path / "junk.pt"), allow_download=False))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_autocast_agrees_with_cpu(random_checkpoint, scorer):
    clips = _clips()
    gpu = AudioboxScorer(random_checkpoint, device="cuda", precision="auto", batch_size=4)
    assert gpu.model.wavlm_model.encoder.layers[0].fc1.weight.is_cuda
    for g, c in zip(gpu.score(clips), scorer.score(clips)):
        assert all(abs(g[a] - c[a]) < 0.05 for a in AXES)  # bf16/fp16 vs fp32
    assert gpu.model.enable_autocast  # auto means half precision on a GPU
