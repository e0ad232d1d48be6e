"""Companion feature shards: what training streams instead of decoding audio and video every step.

`python -m trainer featurize --shards OUT/shards --codec codec.pt` writes OUT/features/ with
`output.shards.ShardWriter` (same layout, determinism and per-shard resume as the dataset):

    lat.npy      (2, F, D) float16  per-ear codec latents (row 0 = left), not normalised
    vis.npy      (T8, 320) float16  visual features at 8 fps
    sync.npy     (T24, 64) float16  sync features at 24 fps
    text.npy     (0|1, 384) float16 caption embedding (0 rows: no caption -> null embedding)
    spatial.npy  (T, 5) float32     S_sound at the trajectory's fps (copied)
    traj.npy     (T, 3) float32     azimuth/elevation/distance (copied, for evaluation)
    json         key, caption, label, split, spatial_fps, n_samples

Encoding runs on one torch thread so the bytes do not depend on the machine's cores (on a GPU
they may differ in the last bit between devices). Plus `features.json`: codec, encoders, rates and ONE latent mean/std per dimension shared by both
ears (from the train split). Input shards are processed by a Ray actor each (GPU actors when
`num_gpus > 0`) or in-process; each input shard's members are staged under `.staging/` with a
marker, so a rerun redoes only unfinished shards, and the writer skips completed output shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time

import numpy as np

from trainer import encoders as enc
from trainer.stream import join_url, read_bytes, shard_list, tar_samples
from binauralizer.constants import SAMPLE_RATE

log = logging.getLogger(__name__)

VERSION = "1"
MAX_CLIP_BYTES = 500_000  # 0.5 MB


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_sample(raw: dict, codec, encoders: "enc.Encoders") -> dict:
    """Arrays of one sample's features (float32; the shard stores float16)."""
    meta = raw["meta"]
    vis, sync = encoders.video(raw.get("mp4"))
    return {"key": raw["key"], "lat": codec.encode(raw["audio"]).numpy(), "vis": vis, "sync": sync,
            "text": encoders.text(meta.get("caption")), "spatial": raw["spatial"], "traj": raw["traj"],
            "meta": {"key": raw["key"], "caption": meta.get("caption"), "label": meta.get("label"),
                     "split": meta.get("split"), "spatial_fps": enc.spatial_fps(meta),
                     "n_samples": int(raw["audio"].shape[1])}}


def member_bytes(feat: dict, limit: int | None = MAX_CLIP_BYTES) -> dict[str, bytes]:
    """The shard members of one sample; over `limit` bytes is an error (None: the paper's encoders,
    whose 768-d Synchformer tokens at 24 fps alone take ~370 KB per 10 s clip)."""
    members = {
        "lat.npy": npy_bytes(feat["lat"].astype(np.float16)),
        "vis.npy": npy_bytes(feat["vis"].astype(np.float16)),
        "sync.npy": npy_bytes(feat["sync"].astype(np.float16)),
        "text.npy": npy_bytes(feat["text"].astype(np.float16)),
        "spatial.npy": npy_bytes(feat["spatial"].astype(np.float32)),
        "traj.npy": npy_bytes(feat["traj"].astype(np.float32)),
        "json": json.dumps(feat["meta"], sort_keys=True, separators=(",", ":")).encode(),
    }
    size = sum(len(v) for v in members.values())
    if limit is not None and size > limit:
        raise ValueError(f"features of {feat['key']!r} take {size} bytes > {limit}: lower the codec's "
                         "--dim or the clip length")
    return members


def decode_members(sample: dict) -> dict:
    """A feature-shard sample back to float32 arrays (the inverse of member_bytes)."""
    meta = json.loads(sample["json"])
    return {"key": sample["__key__"], "lat": enc.read_npy(sample["lat.npy"], 0).astype(np.float32),
            "vis": enc.read_npy(sample.get("vis.npy"), enc.VISUAL_DIM),
            "sync": enc.read_npy(sample.get("sync.npy"), enc.SYNC_DIM),
            "text": enc.read_npy(sample.get("text.npy"), enc.TEXT_DIM),
            "spatial": enc.read_npy(sample.get("spatial.npy"), enc.SPATIAL_DIM),
            "traj": enc.read_npy(sample.get("traj.npy"), 3), "meta": meta}


# -- one input shard ---------------------------------------------------------------------------


def _marker(staging: str) -> str:
    return os.path.join(staging, "done.json")


def featurize_shard(url: str, staging: str, fingerprints: dict[str, str], codec_spec: str, visual_size: int,
                    device: str = "cpu", state: dict | None = None, paper: dict | None = None) -> dict:
    """Encode every sample of one input shard into `staging/`; returns (and writes last) the marker."""
    import torch

    from trainer.codec import load_codec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same bytes whatever the caller's thread count (reductions change order)
    try:
        return _featurize_shard(url, staging, fingerprints, codec_spec, visual_size, device, state, load_codec,
                                paper or {})
    finally:
        torch.set_num_threads(threads)


def _featurize_shard(url, staging, fingerprints, codec_spec, visual_size, device, state, load_codec, paper) -> dict:
    state = state if state is not None else {}
    if "encoders" not in state:
        state["codec"] = load_codec(codec_spec, device)
        state["encoders"] = enc.Encoders(device, visual_size, **paper)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    dim = state["codec"].dim
    total, squares, frames, sizes = np.zeros(dim), np.zeros(dim), 0, {}
    for sample in tar_samples(iter([url])):
        feat = encode_sample(enc.raw_sample(sample), state["codec"], state["encoders"])
        members = member_bytes(feat, None if any(paper.values()) else MAX_CLIP_BYTES)
        for suffix, data in members.items():
            with open(os.path.join(staging, f"{feat['key']}.{suffix}"), "wb") as fh:
                fh.write(data)
        lat = feat["lat"].astype(np.float16).astype(np.float64).reshape(-1, dim)  # what training reads
        total += lat.sum(0)
        squares += (lat**2).sum(0)
        frames += lat.shape[0]
        sizes[feat["key"]] = {"bytes": sum(len(v) for v in members.values()), "split": feat["meta"]["split"],
                              "suffixes": sorted(members)}
    marker = {"url": url, "fingerprints": fingerprints, "sum": total.tolist(), "sumsq": squares.tolist(),
              "frames": frames, "samples": sizes, "encoders": state["encoders"].describe()}
    tmp = _marker(staging) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(marker, fh)
    os.replace(tmp, _marker(staging))
    return marker


def _actor_class():
    import ray

    @ray.remote
    class FeatureActor:
        """Loads the codec and encoders once; one input shard per call."""

        def __init__(self, codec_spec: str, visual_size: int, use_gpu: bool, paper: dict):
            import torch

            self.args = (codec_spec, visual_size, "cuda" if use_gpu and torch.cuda.is_available() else "cpu")
            self.paper = paper
            self.state: dict = {}

        def run(self, url: str, staging: str, fingerprints: dict) -> dict:
            codec_spec, visual_size, device = self.args
            return featurize_shard(url, staging, fingerprints, codec_spec, visual_size, device, self.state, self.paper)

    return FeatureActor


# -- the command -------------------------------------------------------------------------------


def _settings_digest(codec_spec: str, visual_size: int, paper: dict | None = None) -> str:
    h = hashlib.sha256(f"{VERSION}/{visual_size}".encode())
    for name, spec in sorted((paper or {}).items()):  # the paper's encoders change every vis/sync feature
        if spec:
            h.update(f"/{name}={spec}".encode())
    if os.path.isfile(codec_spec):
        h.update(open(codec_spec, "rb").read())
    else:
        h.update(codec_spec.encode())
    return h.hexdigest()[:16]


def input_fingerprints(shards_root: str, name: str) -> dict[str, str]:
    """key -> the dataset's own fingerprint of the sample, from the shard's stats.json."""
    stats = json.loads(read_bytes(join_url(shards_root, name.removesuffix(".tar") + ".stats.json")))
    return {s["key"]: s["fingerprint"] for s in stats["samples"]}


def featurize(shards_root: str, out_dir: str, codec_spec: str, executor: str = "local", num_gpus: float = 0.0,
              num_actors: int = 1, visual_size: int = 224, max_shard_bytes: int = 1 << 30,
              progress=None, clip: str | None = None, synchformer: str | None = None) -> dict:
    """Write OUT/features (see the module docstring); returns a summary. `clip` (ARCH:PATH) and
    `synchformer` (PATH): the paper's encoders from local files instead of the offline defaults."""
    from trainer.codec import load_codec
    from trainer.deps import Entry, ShardWriter, torchtrain

    started = time.time()
    src = shard_list(shards_root, "all")
    paper = {"clip": clip, "synchformer": synchformer}
    if clip or synchformer:  # fail before any work when a file or package is missing
        enc.Encoders("cpu", visual_size, **paper)
    settings = _settings_digest(codec_spec, visual_size, paper)
    staging_root = os.path.join(out_dir, ".staging")
    writer = ShardWriter(out_dir, max_shard_bytes=max_shard_bytes)
    known = writer.completed_samples()
    plan = []  # (input shard, its fingerprints, staging dir, output fingerprints)
    for name in src.names:
        fps = input_fingerprints(shards_root, name)
        out_fps = {k: hashlib.sha256(f"{v}/{settings}".encode()).hexdigest()[:20] for k, v in fps.items()}
        plan.append((name, fps, os.path.join(staging_root, name.removesuffix(".tar")), out_fps))

    def staged(staging: str, fps: dict) -> dict | None:
        try:
            with open(_marker(staging)) as fh:
                marker = json.load(fh)
        except (OSError, ValueError):
            return None
        return marker if marker.get("fingerprints") == fps else None

    def ready(staging: str, fps: dict, out_fps: dict) -> bool:
        """Staged and either already in complete output shards or with its member files at hand."""
        marker = staged(staging, fps)
        if marker is None:
            return False
        if all(known.get(k, ("",))[0] == fp for k, fp in out_fps.items()):
            return True
        return all(os.path.exists(os.path.join(staging, f"{k}.{sfx}"))
                   for k, v in marker["samples"].items() for sfx in v["suffixes"])

    todo = [(n, f, s) for n, f, s, o in plan if not ready(s, f, o)]
    if todo:
        urls = {n: join_url(shards_root, n) for n, _, _ in todo}
        if executor == "ray":
            import ray

            if not ray.is_initialized():
                ray.init(num_cpus=max(1, os.cpu_count() or 1), log_to_driver=False)
            actor = _actor_class().options(num_gpus=num_gpus, num_cpus=1)
            actors = [actor.remote(codec_spec, visual_size, num_gpus > 0, paper) for _ in range(max(1, num_actors))]
            pool = ray.util.ActorPool(actors)
            for done in pool.map_unordered(lambda a, t: a.run.remote(urls[t[0]], t[2], t[1]), todo):
                if progress:
                    progress(done["url"])
        else:
            import torch

            state: dict = {}
            device = "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"
            for name, fps, staging in todo:
                featurize_shard(urls[name], staging, fps, codec_spec, visual_size, device, state, paper)
                if progress:
                    progress(urls[name])

    markers = [staged(s, f) for _, f, s, _ in plan]
    entries = []
    for (name, fps, staging, out_fps), marker in zip(plan, markers):
        for key, info in sorted(marker["samples"].items()):
            def build(k=key, st=staging, suffixes=tuple(info["suffixes"])):
                return [(sfx, os.path.join(st, f"{k}.{sfx}")) for sfx in suffixes]
            entries.append(Entry(key, info["split"] or "unsplit", out_fps[key], build))
    result = writer.write(entries)

    codec = load_codec(codec_spec)
    train = [m for m in markers if any(v["split"] == "train" for v in m["samples"].values())] or markers
    frames = sum(m["frames"] for m in train)
    mean = np.sum([m["sum"] for m in train], axis=0) / max(frames, 1)
    var = np.sum([m["sumsq"] for m in train], axis=0) / max(frames, 1) - mean**2
    std = np.sqrt(np.maximum(var, 1e-12))
    clip_bytes = [v["bytes"] for m in markers for v in m["samples"].values()]
    info = {
        "version": VERSION, "codec": {**codec.describe(), "spec": os.path.abspath(codec_spec)
                                      if os.path.isfile(codec_spec) else codec_spec},
        "latent_dim": codec.dim, "latent_rate": codec.rate, "sample_rate": SAMPLE_RATE,
        "latent_mean": [float(v) for v in mean], "latent_std": [float(v) for v in std],
        "latent_stats_from": "train split, both ears" if train is not markers else "all splits, both ears",
        "encoders": next((m["encoders"] for m in markers if m.get("encoders")), enc.describe(visual_size)),
        "source": {"shards": shards_root, "digest": src.digest, "samples": src.samples},
        "bytes_per_clip": {"max": max(clip_bytes, default=0), "mean": float(np.mean(clip_bytes)) if clip_bytes else 0,
                           "limit": MAX_CLIP_BYTES},
    }
    torchtrain.atomic_write_text(os.path.join(out_dir, "features.json"), json.dumps(info, indent=1, sort_keys=True) + "\n")
    for _, _, staging, _ in plan:  # member files are in the tars now; keep only the small markers
        for fname in os.listdir(staging):
            if fname != "done.json":
                os.unlink(os.path.join(staging, fname))
    return {"shards_written": result.written, "shards_skipped": result.skipped, "input_shards_encoded": len(todo),
            "samples": len(entries), "seconds": time.time() - started, "bytes_per_clip": info["bytes_per_clip"]}


def load_features_info(features_root: str) -> dict:
    try:
        return json.loads(read_bytes(join_url(features_root, "features.json")))
    except OSError:
        raise FileNotFoundError(f"{features_root}/features.json not found: --data must be a feature folder written by "
                                "`python -m trainer featurize --shards OUT/shards --codec codec.pt --out OUT/features`; "
                                "to train on dataset shards directly use --mode raw --codec codec.pt") from None
