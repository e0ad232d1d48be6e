"""Audiobox Aesthetics scores (CE, CU, PC, PQ) without the package's torchaudio-bound `infer`.

This replicates `audiobox_aesthetics.infer.AesPredictor` on top of the package's model class
`AesMultiOutput`: the same checkpoint format (Lightning-style `model.` keys, `model_cfg`,
per-axis `target_transform` mean/std), the same 10 s windows (hop 10 s; the last window is
zero-padded, masked, and weighted by the fraction of it that holds audio) and the same
de-normalisation. The package's `infer` imports torchaudio, whose PyPI build cannot be imported
here; tests prove equivalence against the package's own predictor.

What it adds: windows of many clips batched into one forward, a working fp16/bf16 autocast (the
package's `precision` flag never enables it), and offline-first checkpoint resolution.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import warnings
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import torch
from audiobox_aesthetics.model.aes import AesMultiOutput

from audioquality import AXES, SAMPLE_RATE

REPO_ID = "facebook/audiobox-aesthetics"
CHECKPOINT_NAME = "checkpoint.pt"
PRETRAINED_FILES = ("config.json", "model.safetensors")  # the hub's `from_pretrained` layout
WINDOW_SECONDS = 10
HOP_SECONDS = 10
# The constructor arguments infer.AesPredictor takes from a checkpoint's model_cfg.
MODEL_CFG_KEYS = (
    "proj_num_layer", "proj_ln", "proj_act_fn", "proj_dropout", "nth_layer",
    "use_weighted_layer_sum", "precision", "normalize_embed", "output_dim",
)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")

HOW_TO_PROVIDE = (
    "Provide one: on a machine with internet run `hf download facebook/audiobox-aesthetics "
    "checkpoint.pt` (fills the Hugging Face cache) or fetch checkpoint.pt from "
    "https://huggingface.co/facebook/audiobox-aesthetics, then set `quality.checkpoint: "
    "/path/to/checkpoint.pt` (a directory holding checkpoint.pt, or config.json + "
    "model.safetensors, works too). Or set `quality.backend: dsp` (or `auto`) to use the "
    "signal-based fallback scorer instead."
)


class CheckpointNotFound(FileNotFoundError):
    """No usable checkpoint; the message lists every place looked and how to provide one."""


@dataclass(frozen=True)
class CheckpointSource:
    path: str  # a checkpoint.pt file, or a directory in the pretrained layout
    layout: str  # "checkpoint" | "pretrained"
    origin: str  # "config" | "hf-cache" | "download"


# -- finding a checkpoint -----------------------------------------------------------------------


def hf_cache_dir() -> str:
    """The hub cache as huggingface_hub resolves it, read at call time (env may change after import)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def hub_offline() -> bool:
    """True when the user forbade hub access (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in flags)


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable(timeout: float = 2.0) -> bool:
    """One TCP connect to the hub endpoint, bounded by `timeout` including DNS (run in a thread)."""
    import socket

    url = urlparse(hub_endpoint())
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _local_source(path: str, origin: str) -> CheckpointSource | None:
    if os.path.isfile(path):
        return CheckpointSource(os.path.abspath(path), "checkpoint", origin)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, CHECKPOINT_NAME)):
            return CheckpointSource(os.path.abspath(os.path.join(path, CHECKPOINT_NAME)), "checkpoint", origin)
        if all(os.path.isfile(os.path.join(path, f)) for f in PRETRAINED_FILES):
            return CheckpointSource(os.path.abspath(path), "pretrained", origin)
    return None


def _from_hf_cache(cache_dir: str) -> CheckpointSource | None:
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> str | None:
        hit = try_to_load_from_cache(REPO_ID, name, cache_dir=cache_dir)
        return hit if isinstance(hit, str) and os.path.isfile(hit) else None

    if (hit := cached(CHECKPOINT_NAME)) is not None:
        return CheckpointSource(hit, "checkpoint", "hf-cache")
    files = [cached(name) for name in PRETRAINED_FILES]
    if all(files) and len({os.path.dirname(f) for f in files}) == 1:
        return CheckpointSource(os.path.dirname(files[0]), "pretrained", "hf-cache")
    return None


def find_checkpoint(
    checkpoint: str | None = None, *, cache_dir: str | None = None, allow_download: bool = False
) -> CheckpointSource:
    """Where the weights are: `checkpoint` if given, else the HF cache, else a download.

    A given checkpoint that does not exist is an error (a typo must not silently become a
    fallback). A download is tried only when no checkpoint was given, `allow_download` is set,
    HF_HUB_OFFLINE is not set and the hub answers a quick connect; it fetches checkpoint.pt with
    hf_hub_download into the HF cache, as the package's own `load_model` does.
    """
    if checkpoint:
        path = os.path.abspath(os.path.expanduser(os.path.expandvars(str(checkpoint))))
        source = _local_source(path, "config")
        if source is not None:
            return source
        what = (
            "directory holds neither checkpoint.pt nor config.json + model.safetensors"
            if os.path.isdir(path)
            else "no such file or directory"
        )
        raise CheckpointNotFound(
            f"No Audiobox Aesthetics checkpoint at quality.checkpoint = {path}: {what}. {HOW_TO_PROVIDE}"
        )

    cache = cache_dir or hf_cache_dir()
    source = _from_hf_cache(cache)
    if source is not None:
        return source
    looked = [
        "quality.checkpoint: not set",
        f"Hugging Face cache {cache}: no {REPO_ID} checkpoint.pt (nor config.json + model.safetensors)",
    ]
    if not allow_download:
        looked.append("download: not allowed (set stages.quality.allow_download: true to fetch it from the hub)")
    else:
        if hub_offline():
            looked.append("download: skipped because HF_HUB_OFFLINE=1")
        elif not hub_reachable():
            looked.append(f"download: skipped, {hub_endpoint()} is unreachable (no network)")
        else:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(REPO_ID, CHECKPOINT_NAME, cache_dir=cache)
            return CheckpointSource(path, "checkpoint", "download")
    raise CheckpointNotFound(
        "No Audiobox Aesthetics checkpoint found. Looked at: " + "; ".join(looked) + ". " + HOW_TO_PROVIDE
    )


# -- loading ------------------------------------------------------------------------------------


def _read_checkpoint(path: str) -> dict:
    """torch.load without unpickling code; memory-mapped when the file allows (no second copy)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) files cannot be mapped; junk fails again below
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"cannot read {path} as a torch checkpoint: {exc}") from exc


def inspect_checkpoint(source: CheckpointSource) -> dict | None:
    """Check the format before any work; returns the (mapped) checkpoint dict. Raises ValueError."""
    if source.layout == "pretrained":
        with open(os.path.join(source.path, "config.json")) as fh:
            json.load(fh)
        return None
    ckpt = _read_checkpoint(source.path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{source.path} is not an Audiobox Aesthetics checkpoint: holds a {type(ckpt).__name__}")
    missing = [k for k in ("state_dict", "model_cfg", "target_transform") if k not in ckpt]
    missing += [f"model_cfg.{k}" for k in MODEL_CFG_KEYS if k not in ckpt.get("model_cfg", {})]
    missing += [f"target_transform.{a}" for a in AXES if a not in ckpt.get("target_transform", {})]
    if missing:
        raise ValueError(f"{source.path} is not an Audiobox Aesthetics checkpoint: missing {missing}")
    return ckpt


def _build(kwargs: dict, state_dict: dict) -> AesMultiOutput:
    """Construct the package's model and load weights strictly (a key mismatch is an error)."""
    with warnings.catch_warnings():  # the package's WavLM uses the deprecated weight_norm
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        model = AesMultiOutput(**kwargs)
    model.load_state_dict(state_dict, strict=True)
    return model


def load_model(source: CheckpointSource | str, device: str | torch.device = "cpu") -> AesMultiOutput:
    """The model in eval mode on `device`, from either layout."""
    if isinstance(source, str):
        found = _local_source(source, "config")
        if found is None:
            raise CheckpointNotFound(f"no checkpoint at {source}")
        source = found
    if source.layout == "checkpoint":
        ckpt = inspect_checkpoint(source)
        # Same renaming and constructor arguments as infer.AesPredictor.setup_model.
        state = {re.sub("^model.", "", k): v for k, v in ckpt["state_dict"].items()}
        kwargs = {k: ckpt["model_cfg"][k] for k in MODEL_CFG_KEYS} | {"target_transform": ckpt["target_transform"]}
    else:
        from safetensors.torch import load_file

        with open(os.path.join(source.path, "config.json")) as fh:
            kwargs = json.load(fh)
        state = load_file(os.path.join(source.path, "model.safetensors"))
    model = _build(kwargs, state)
    return model.to(device).eval()


# -- windowing ----------------------------------------------------------------------------------


def window_count(wavs: list[np.ndarray], sample_rate: int = SAMPLE_RATE) -> int:
    """How many windows make_windows cuts: ceil(length / hop) per clip."""
    hop = HOP_SECONDS * sample_rate
    return sum(-(-wav.shape[-1] // hop) for wav in wavs)


def make_windows(wavs: list[np.ndarray], sample_rate: int = SAMPLE_RATE):
    """Cut clips into windows exactly as infer.make_inference_batch (hop = window = 10 s).

    Returns (windows float32 (W, L), valid bool (W, L), weights float64 (W,), owner int (W,)):
    the last window of a clip is zero-padded and masked, its weight is its valid fraction.
    """
    winlen, hop = WINDOW_SECONDS * sample_rate, HOP_SECONDS * sample_rate
    starts = [(i, s) for i, wav in enumerate(wavs) for s in range(0, wav.shape[-1], hop)]
    windows = np.zeros((len(starts), winlen), np.float32)
    valid = np.zeros((len(starts), winlen), bool)
    weights = np.empty(len(starts), np.float64)
    owner = np.empty(len(starts), np.int64)
    for w, (i, s) in enumerate(starts):
        seg = wavs[i][s : s + winlen]
        windows[w, : seg.shape[0]] = seg
        valid[w, : seg.shape[0]] = True
        weights[w] = seg.shape[0] / winlen
        owner[w] = i
    return windows, valid, weights, owner


# -- scoring ------------------------------------------------------------------------------------


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting; None means plain fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Limit torch's intra-op threads for a block (an actor owns `num_cpus` cores, not the node)."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class AudioboxScorer:
    """The model loaded once; `score` turns clips into {CE, CU, PC, PQ} dicts.

    Scores are not clamped, as in the package (real weights give values within 1..10).
    """

    def __init__(
        self,
        source: CheckpointSource | str,
        device: str | torch.device | None = None,
        precision: str = "auto",
        batch_size: int = 8,
        num_threads: int | None = None,
    ):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = precision
        self.batch_size = int(batch_size)
        self.num_threads = num_threads
        with torch_threads(num_threads):
            self.model = load_model(source, self.device)
        tt = self.model.target_transform
        self.mean = np.array([float(tt[a]["mean"]) for a in AXES])
        self.std = np.array([float(tt[a]["std"]) for a in AXES])
        self.windows_scored = 0  # model work done, for stats and for tests that assert "no rescoring"

    def _set_autocast(self) -> None:
        # AesMultiOutput.forward wraps itself in autocast(enabled=self.enable_autocast,
        # dtype=self.precision), which would also switch off an autocast opened around it; its
        # constructor compares the dtype to strings, so enable_autocast is always False. Setting
        # the two attributes is what makes fp16/bf16 happen.
        dtype = autocast_dtype(self.precision, self.device)
        self.model.precision = dtype or torch.float32
        self.model.enable_autocast = dtype is not None

    def predict_windows(self, windows: np.ndarray, valid: np.ndarray, batch_size: int) -> np.ndarray:
        """Normalised model outputs, (W, 4) in AXES order, `batch_size` windows per forward."""
        self._set_autocast()
        out = np.empty((windows.shape[0], len(AXES)), np.float64)
        with torch.inference_mode(), torch_threads(self.num_threads), warnings.catch_warnings():
            # WavLM passes a bool padding mask with a float attention bias; harmless, once per batch.
            warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask.*")
            for s in range(0, windows.shape[0], batch_size):
                wav = torch.from_numpy(windows[s : s + batch_size]).unsqueeze(1).to(self.device)
                mask = torch.from_numpy(valid[s : s + batch_size]).unsqueeze(1).to(self.device)
                preds = self.model({"wav": wav, "mask": mask})
                for j, axis in enumerate(AXES):
                    out[s : s + wav.shape[0], j] = preds[axis].float().cpu().numpy()
                self.windows_scored += wav.shape[0]
        return out

    def score(self, wavs: list[np.ndarray], batch_size: int | None = None) -> list[dict[str, float]]:
        """One {CE, CU, PC, PQ} dict per clip (16 kHz mono float32; validated by the caller)."""
        if not wavs:
            return []
        windows, valid, weights, owner = make_windows(wavs)
        preds = self.predict_windows(windows, valid, batch_size or self.batch_size)
        preds = preds * self.std + self.mean  # Normalize.inverse, per axis
        scores = []
        for i in range(len(wavs)):
            w = weights[owner == i]
            values = (preds[owner == i] * w[:, None]).sum(axis=0) / w.sum()
            scores.append({axis: float(v) for axis, v in zip(AXES, values)})
        return scores


# -- a stand-in checkpoint for machines without the real weights ---------------------------------

# Illustrative de-normalisation: means are the human-rating means of natural sounds (REFERENCE.md);
# the stds are made up. Only the format is real: scores from this checkpoint mean nothing.
RANDOM_TARGET_TRANSFORM = {
    "CE": {"mean": 3.74, "std": 1.2},
    "CU": {"mean": 5.13, "std": 1.4},
    "PC": {"mean": 3.59, "std": 1.3},
    "PQ": {"mean": 5.73, "std": 1.1},
}
RANDOM_MODEL_CFG = {
    "proj_num_layer": 1, "proj_ln": False, "proj_act_fn": "gelu", "proj_dropout": 0.0,
    "nth_layer": 13, "use_weighted_layer_sum": True, "precision": "32",
    "normalize_embed": True, "output_dim": 1,
}


def write_random_checkpoint(path: str, seed: int = 0) -> str:
    """Save the real architecture with seeded random weights in checkpoint.pt's exact format.

    For tests and benchmarks here, where the real weights cannot be fetched. Layer weights are
    randomised too so a wrong layer mix or axis order would change the scores.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
            model = AesMultiOutput(**RANDOM_MODEL_CFG, target_transform=RANDOM_TARGET_TRANSFORM)
        with torch.no_grad():
            for axis in AXES:
                model.layer_weights[axis].normal_(0.0, 0.5)
    finally:
        torch.random.set_rng_state(generator_state)
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "model_cfg": dict(RANDOM_MODEL_CFG),
        "target_transform": {a: dict(v) for a, v in RANDOM_TARGET_TRANSFORM.items()},
    }
    from manifests.io import atomic_torch_save

    atomic_torch_save(ckpt, path)
    return path
