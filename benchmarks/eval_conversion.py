"""Honest evaluation of the three conversion modes on held-out synthetic scenes.

The U-Net trains on pseudo pairs rendered with MIT KEMAR; here the ground truth is rendered
with a DIFFERENT head (a SONICOM set shipped by the PyPI package spatialaudiometrics) and with
sounds the model never heard (another seed of the synthetic pool), one source per scene so the
"true side" is defined. Each method gets what a converter gets in practice: the mono downmix
(L + R of the truth, the 2.5D Visual Sound / Sep-Stereo convention) and, for the U-Net, the
picture with the source's patch at its position; `sh` renders the downmix with KEMAR at the
true direction (an oracle-position baseline); `mono` is L = R.

Figures (mean over scenes; lower is better except side agreement): STFT distance and envelope
distance (2.5D Visual Sound, peak-normalised), dILD (dB), dIPD (rad), dITD (us) against the
truth, and side agreement: the fraction of sources more than 15 degrees off centre whose
broadband ILD has the sign of their azimuth.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from binauralizer import metrics  # noqa: E402
from binauralizer.pseudobinaural.conversion import ClipInput, UNetConverter, convert_mono, convert_sh  # noqa: E402
from binauralizer.hrir import load_hrirs  # noqa: E402
from binauralizer.pseudobinaural.pseudo_pairs import PairConfig, PseudoPairGenerator  # noqa: E402
from binauralizer.testing import synthetic_pool  # noqa: E402

OFF_CENTRE_DEG = 15.0
HELD_OUT_HRIR = "sonicom-1"
HELD_OUT_POOL_SEED = 7
HELD_OUT_SCENE_SEED = 900_000


def held_out_scenes(n: int = 48, hrir: str = HELD_OUT_HRIR, seed: int = HELD_OUT_SCENE_SEED):
    gen = PseudoPairGenerator(synthetic_pool(12, seed=HELD_OUT_POOL_SEED), load_hrirs(hrir), seed=seed,
                              config=PairConfig(source_count_probs=(1.0,)))
    return [gen[i] for i in range(n)]


def predictions(scenes, model_path: str | None) -> dict[str, list[np.ndarray]]:
    out = {"mono": [convert_mono(s.mixture) for s in scenes]}
    kemar = load_hrirs("kemar")
    out["sh"] = [convert_sh(s.mixture, np.array([[s.az_deg[0], s.el_deg[0], 1.0]] * 2), 1.0, kemar) for s in scenes]
    if model_path:
        conv = UNetConverter.from_file(model_path)
        out["unet"] = conv.convert([ClipInput(s.mixture, s.frame[None], fps=1.0) for s in scenes])
    return out


def score(scenes, preds: list[np.ndarray]) -> dict:
    rows = [metrics.reference_errors(p, s.binaural) for p, s in zip(preds, scenes)]
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
    side = [np.sign(metrics.broadband_ild_db(p)) == np.sign(s.az_deg[0])
            for p, s in zip(preds, scenes) if abs(s.az_deg[0]) > OFF_CENTRE_DEG]
    summary["side_agreement"] = float(np.mean(side)) if side else float("nan")
    summary["n_scenes"] = len(scenes)
    summary["n_off_centre"] = len(side)
    return summary


def evaluate(model_path: str | None, n_scenes: int = 48) -> dict:
    scenes = held_out_scenes(n_scenes)
    return {mode: score(scenes, preds) for mode, preds in predictions(scenes, model_path).items()}


def run(model_path: str | None = None) -> dict:
    """Train (or reuse) the tiny model and evaluate unet / sh / mono on held-out scenes."""
    if model_path is None:
        from binauralizer.testing import tiny_model_path

        model_path = tiny_model_path()
    result = evaluate(model_path)
    result["markdown"] = markdown(result)
    result["setup"] = {"train_hrir": "kemar", "test_hrir": HELD_OUT_HRIR, "train_config": "tiny",
                       "scenes": "1 source each, synthetic pool seed 7 (training uses seed 0)"}
    return result


def markdown(result: dict) -> str:
    cols = ["stft_distance", "envelope_distance", "d_ild_db", "d_ipd_rad", "d_itd_us", "side_agreement"]
    lines = ["| mode | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for mode in ("unet", "sh", "mono"):
        if mode in result:
            lines.append(f"| {mode} | " + " | ".join(f"{result[mode][c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    res = run(sys.argv[1] if len(sys.argv) > 1 else None)
    print(json.dumps({k: v for k, v in res.items() if k != "markdown"}, indent=1))
    print(res["markdown"])
