"""The dataset card, OUT/README.md: what the dataset is, how it was built, how to load it."""

from __future__ import annotations

import json
import os
from collections import Counter

from output.report import SummaryTable, class_rows, funnel_rows, quality_backend

MEMBERS = (
    ("mp4", "the clip's exact window of the source video (stream-copied when it starts on a keyframe, "
            "else re-encoded with H.264)"),
    ("flac", "binaural audio, 2 channels (left first), 16 kHz"),
    ("mono.flac", "the source (mono) audio of the same window, 16 kHz"),
    ("json", "label, caption, spatial_caption, split, source_id, window, duration_s, silent_fraction, "
             "quality (scores + backend), conversion_mode, spatial_metrics, trajectory summary, media"),
    ("spatial.npy", "float32 (T, 5): per-frame S_h, S_area, S_var, S_LR, S_shape of the localised source"),
    ("traj.npy", "float32 (T, 3): azimuth (deg, + = left), elevation (deg, + = up), distance (m) per frame"),
)

LOAD_WEBDATASET = '''```python
import io, json, numpy as np, soundfile as sf, webdataset as wds

ds = wds.WebDataset("shards/train-{000000..%(last)s}.tar", shardshuffle=False)
for sample in ds:
    binaural, sr = sf.read(io.BytesIO(sample["flac"]), dtype="float32")   # (N, 2), 16 kHz
    meta = json.loads(sample["json"])
    traj = np.load(io.BytesIO(sample["traj.npy"]))                          # (T, 3)
    video_bytes = sample["mp4"]
```'''

LOAD_DATASETS = '''```python
import io, soundfile as sf
from datasets import load_dataset
from output.card import hf_features   # or spell the Features out: media Value("binary"), .npy nested float32

ds = load_dataset("webdataset", data_files={"train": "shards/train-*.tar"}, split="train",
                  features=hf_features())
binaural, sr = sf.read(io.BytesIO(ds[0]["flac"]))       # (N, 2)
print(ds[0]["json"]["caption"], ds[0]["json"]["spatial_caption"])
```
Media members are given as binary on purpose: `datasets` would otherwise decode audio and video with
torchcodec; decode the FLAC with soundfile instead.'''


def _settings_lines(config: dict) -> list[str]:
    stages = (config or {}).get("stages") or {}
    lines = []
    for name, settings in stages.items():
        if isinstance(settings, dict) and settings:
            shown = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in settings.items())
            lines.append(f"- **{name}**: {shown}")
        else:
            lines.append(f"- **{name}**: defaults")
    return lines or ["- (no OUT/config.yaml found)"]


def card_text(
    rows: list[dict],
    table: SummaryTable,
    *,
    stats: dict | None = None,
    config: dict | None = None,
    preflight: dict | None = None,
    licence: str = "",
    sizes: dict | None = None,
) -> str:
    config = config or {}
    dataset = config.get("dataset") or {}
    name = dataset.get("name") or "binaural-dataset"
    licence = licence or dataset.get("licence") or "unspecified"
    splits = Counter(str(r.get("split") or "unsplit") for r in rows)
    classes = class_rows(rows)
    hours = sum(h for _, _, h in classes)
    backend = quality_backend(rows, preflight)
    why = ((preflight or {}).get("quality") or {}).get("why")
    modes = Counter(str(r.get("conversion_mode")) for r in rows if r.get("conversion_mode"))
    localisers = Counter(str(r.get("loc_method")) for r in rows if r.get("loc_method"))
    split_names = sorted(splits) or ["train"]
    lines = [
        "---",
        f"pretty_name: {json.dumps(name)}",
        "license: other",
        f"license_name: {json.dumps(licence)}",
        "tags: [binaural, spatial-audio, audio-visual, webdataset]",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *[f"  - split: {s}\n    path: shards/{s}-*.tar" for s in split_names],
        "---",
        "",
        f"# {name}",
        "",
        (dataset.get("description") or "Videos paired with binaural (two-ear) audio made from their mono "
         "soundtracks, following the BinauralVGGSound recipe of SpatialV2A: the sounding object is "
         "localised in the picture and the mono audio is rendered binaurally at that position."),
        "",
        "## Contents",
        "",
        f"- {len(rows)} clips, {hours:.2f} hours, {len(classes)} classes",
        "- splits: " + (", ".join(f"{s} {n}" for s, n in sorted(splits.items())) or "none"),
        "- conversion modes: " + (", ".join(f"{m} {n}" for m, n in sorted(modes.items())) or "unknown"),
        "- localisers: " + (", ".join(f"{m} {n}" for m, n in sorted(localisers.items())) or "unknown"),
    ]
    if sizes:
        total = sizes.get("total") or {}
        lines.append(f"- shards: {total.get('shards', '?')} tar files, {total.get('bytes', 0) / 2**30:.2f} GiB "
                     "(see shards/sizes.json and shards/index.parquet)")
    lines += [
        f"- licence: {licence}",
        "",
        "## Quality scores",
        "",
        ("Scored by **Audiobox Aesthetics** (CE, CU, PC, PQ)." if backend == "audiobox" else
         f"**Scored by the `{backend}` backend, NOT by Audiobox Aesthetics.** "
         + (f"Why: {why}. " if why else "")
         + "Its scores are not comparable with published Audiobox numbers."),
        "",
        "## Summary (in the shape of SpatialV2A's Table 2)",
        "",
        table.markdown(),
        "",
        *[f"- {n}" for n in table.notes],
        "",
        "## Sample layout",
        "",
        "WebDataset tar shards `shards/{split}-{000000}.tar`, one sample per clip, key = clip id:",
        "",
        *[f"- `<key>.{m}`: {d}" for m, d in MEMBERS],
        "",
        "Each tar has a `.parquet` index (key, byte offset, size, members) and a `.stats.json`. Tars are "
        "deterministic: the same inputs and settings give byte-identical files.",
        "",
        "## Loading",
        "",
        "With webdataset:",
        "",
        LOAD_WEBDATASET % {"last": "%06d" % max(0, int(((sizes or {}).get("splits") or {})
                                                       .get("train", {}).get("shards", 1)) - 1)},
        "",
        "With Hugging Face datasets:",
        "",
        LOAD_DATASETS,
        "",
        "With Ray Data: `ray.data.read_webdataset(\"shards/\")`.",
        "",
        "## How it was built",
        "",
    ]
    funnel = funnel_rows(stats)
    if funnel:
        lines += ["| stage | in | kept | dropped | failed |", "|---|---|---|---|---|"]
        lines += [f"| {f['stage']} | {f['in']} | {f['kept']} | {f['dropped']} | {f['failed']} |" for f in funnel]
        lines.append("")
    lines += ["Settings per stage (from config.yaml):", "", *_settings_lines(config), ""]
    if preflight:
        lines += ["Backends chosen at preflight:", ""]
        for stage, info in sorted(preflight.items()):
            lines.append(f"- **{stage}**: {json.dumps(info, sort_keys=True, default=str)}")
        lines.append("")
    lines += [
        "The validation report with plots is in `report/index.html`.",
        "",
        "## Licence",
        "",
        f"{licence}. The clips come from their source videos and keep those videos' terms.",
        "",
    ]
    return "\n".join(lines)


def write_card(out_dir: str, rows: list[dict], table: SummaryTable, **kwargs) -> str:
    path = os.path.join(out_dir, "README.md")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(card_text(rows, table, **kwargs))
    os.replace(path + ".tmp", path)
    return path


def hf_features():
    """`datasets.Features` for these shards: media as bytes (decode FLAC with soundfile), arrays as
    nested float32 sequences, json as its struct. Usage:
    `load_dataset("webdataset", data_files=..., features=hf_features())`."""
    from datasets import Features, Sequence, Value

    f64, i64, text = Value("float64"), Value("int64"), Value("string")
    return Features({
        "__key__": text, "__url__": text,
        "mp4": Value("binary"), "flac": Value("binary"), "mono.flac": Value("binary"),
        "spatial.npy": Sequence(Sequence(Value("float32"))),
        "traj.npy": Sequence(Sequence(Value("float32"))),
        "json": {
            "clip_id": text, "label": text, "caption": text, "spatial_caption": text, "split": text,
            "source_id": text, "duration_s": f64, "sample_rate": i64, "silent_fraction": f64,
            "conversion_mode": text,
            "window": {"index": i64, "start_s": f64, "end_s": f64, "start_sample": i64, "padded_samples": i64},
            "quality": {"backend": text, **{c: f64 for c in ("aes_ce", "aes_cu", "aes_pc", "aes_pq", "dsp_clipping",
                                                            "dsp_bandwidth_hz", "dsp_snr_db", "dsp_score")}},
            "spatial_metrics": {c: f64 for c in ("iacc", "ild_db", "itd_ms", "isd_db", "ipd_rad", "lateral_agree")},
            "trajectory": {"az_start_deg": f64, "az_end_deg": f64, "az_mean_deg": f64, "az_min_deg": f64,
                           "az_max_deg": f64, "el_mean_deg": f64, "distance_mean_m": f64, "frames": i64,
                           "fps": f64, "method": text, "confidence": f64, "centre_pull": f64},
            "media": {"video": text, "mp4_audio": Value("bool"), "flac_subtype": text, "clipped_samples": i64,
                      "clipped_samples_mono": i64},
        },
    })
