"""The dataset card, OUT/README.md, written with huggingface_hub's DatasetCardData / DatasetCard.

Its YAML front matter is what the Hub and `datasets` read: licence, task and size categories, source
datasets, one `configs` entry with `data_files` per split, and `dataset_info.features` declaring every
tar member (from output/sample_schema.py), so `datasets.load_dataset(OUT)` works on a machine without
this project. The text says what the members mean, how the audio was made, what it is and is not
good for, and how to cite. No local paths: settings that name files show only the file name.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections import Counter

from binauralizer.constants import SAMPLE_RATE
from output import sample_schema as S
from output.about import TOOL, tool_version
from output.report import SummaryTable, class_rows, funnel_rows, lateral_share, quality_backend

# Licence ids the Hub knows that a config's `dataset.licence` may start with (case and spaces ignored).
HUB_LICENCES = ("cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0",
                "cc-by-3.0", "cc-by-sa-3.0", "apache-2.0", "mit", "odc-by", "odbl", "cdla-permissive-2.0")
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"))

HRIR_SETS = {
    "kemar": ("the MIT KEMAR dummy head (normal pinna), 710 measured directions", "gardner1995kemar"),
    "sonicom-1": ("a measured human head from the SONICOM HRTF dataset (set 1 shipped with spatialaudiometrics)",
                  "engel2023sonicom"),
    "sonicom-2": ("a measured human head from the SONICOM HRTF dataset (set 2 shipped with spatialaudiometrics)",
                  "engel2023sonicom"),
}

BIBTEX = {
    "spatialv2a": """@article{wang2026spatialv2a,
  title   = {SpatialV2A: Visual-Guided High-fidelity Spatial Audio Generation},
  author  = {Wang, Yanan and Ren, Linjie and Li, Zihao and Wang, Junyi and Gan, Tian},
  journal = {arXiv preprint arXiv:2601.15017},
  year    = {2026}
}""",
    "vggsound": """@inproceedings{chen2020vggsound,
  title     = {VGGSound: A Large-scale Audio-Visual Dataset},
  author    = {Chen, Honglie and Xie, Weidi and Vedaldi, Andrea and Zisserman, Andrew},
  booktitle = {IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  pages     = {721--725},
  year      = {2020}
}""",
    "pseudobinaural": """@inproceedings{xu2021pseudobinaural,
  title     = {Visually Informed Binaural Audio Generation without Binaural Audios},
  author    = {Xu, Xudong and Zhou, Hang and Liu, Ziwei and Dai, Bo and Wang, Xiaogang and Lin, Dahua},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {15485--15494},
  year      = {2021}
}""",
    "gardner1995kemar": """@article{gardner1995kemar,
  title   = {HRTF Measurements of a KEMAR},
  author  = {Gardner, William G. and Martin, Keith D.},
  journal = {The Journal of the Acoustical Society of America},
  volume  = {97},
  number  = {6},
  pages   = {3907--3908},
  year    = {1995}
}""",
    "engel2023sonicom": """@article{engel2023sonicom,
  title   = {The SONICOM HRTF Dataset},
  author  = {Engel, Isaac and Daugintis, Rapolas and Vicente, Thibault and Hogg, Aidan O. T. and Pauwels, Johan and
             Tournier, Arnaud J. and Picinali, Lorenzo},
  journal = {Journal of the Audio Engineering Society},
  volume  = {71},
  number  = {5},
  pages   = {241--253},
  year    = {2023}
}""",
}


def licence_metadata(text: str) -> dict:
    """{license: <hub id>} when the text is a Hub licence id (optionally with a note in parentheses),
    else {license: other, license_name: <id-like name>}: the full text goes into the card's Licence section."""
    text = (text or "").strip()
    normal = re.sub(r"\s+", "-", text.lower())
    for hub_id in HUB_LICENCES:
        rest = normal[len(hub_id):]
        if normal.startswith(hub_id) and (not rest or re.fullmatch(r"-?\([^;]*\)", rest)):
            return {"license": hub_id}
    words = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())[:6] or ["unspecified"]
    return {"license": "other", "license_name": "-".join(words)}


def size_category(n: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "n>10M")


def dataset_date(out: str) -> str:
    """When the shards were written (a rerun that rewrites nothing keeps the card's bytes);
    SOURCE_DATE_EPOCH, the reproducible-builds convention, overrides it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        stamp = float(epoch)
    else:
        marks = glob.glob(os.path.join(out, "shards", "*.stats.json")) or [os.path.join(out, "stats.json")]
        stamp = max((os.path.getmtime(p) for p in marks if os.path.exists(p)), default=0.0)
    return time.strftime("%Y-%m-%d", time.gmtime(stamp))


def _no_paths(value):
    """Settings as shown in the card: a local file becomes its name (no home folders, no mounts)."""
    if isinstance(value, dict):
        return {k: _no_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~", "./", "../")) or re.match(r"^[A-Za-z]:\\", value)):
        return f"<local file {os.path.basename(value.rstrip('/'))}>"
    return value


def _split_counts(rows: list[dict], sizes: dict | None) -> dict[str, dict]:
    hours = Counter()
    for r in rows:
        samples = r.get("window_samples")
        hours[str(r.get("split") or "train")] += (float(samples) if isinstance(samples, (int, float)) else 0.0) / SAMPLE_RATE / 3600
    splits = ((sizes or {}).get("splits") or {})
    if not splits:  # no shards yet: count the validated rows
        splits = {s: {"samples": n, "shards": 0, "bytes": 0}
                  for s, n in Counter(str(r.get("split") or "train") for r in rows).items()}
    return {s: {**v, "hours": hours.get(s, 0.0)} for s, v in sorted(splits.items())}


def _mean(rows: list[dict], column: str) -> float | None:
    values = [float(r[column]) for r in rows if isinstance(r.get(column), (int, float)) and r[column] == r[column]]
    return sum(values) / len(values) if values else None


def card_data(rows: list[dict], *, config: dict, inputs: dict, sizes: dict | None, licence: str):
    """The YAML front matter as huggingface_hub.DatasetCardData."""
    from huggingface_hub import DatasetCardData

    dataset = config.get("dataset") or {}
    package = ((config.get("stages") or {}).get("package") or {})
    with_video = package.get("video", "copy_or_encode") != "none"
    splits = _split_counts(rows, sizes)
    total = sum(int(v.get("samples") or 0) for v in splits.values())
    source = ["extended|vggsound"] if str(inputs.get("format", "")).lower() == "vggsound" else ["original"]
    return DatasetCardData(
        pretty_name=str(dataset.get("name") or "binaural-dataset"),
        **licence_metadata(licence),
        task_categories=["audio-to-audio"],
        tags=["binaural", "spatial-audio", "audio-visual", "video-to-audio", "webdataset"],
        size_categories=[size_category(total)],
        source_datasets=source,
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"shards/{s}-*.tar"} for s in splits]}],
        dataset_info={"features": S.feature_list(with_video),
                      "splits": [{"name": s, "num_examples": int(v.get("samples") or 0)} for s, v in splits.items()]},
    )


def _cell(text) -> str:
    """Text inside a markdown table cell: a literal | would end the cell."""
    return str(text).replace("|", "\\|")


def _members_section(with_video: bool, mp4_audio: bool) -> list[str]:
    lines = ["| member | content |", "|---|---|"]
    for m in S.members(with_video):
        doc = m.doc
        if m.suffix == "mp4" and mp4_audio:
            doc = doc.replace("NO audio track (the sound is in the flac members)", "with the source's audio track")
        lines.append(f"| `<key>.{m.suffix}` | {_cell(doc)} |")
    for m in S.MEMBERS:
        if m.columns:
            lines += ["", f"Columns of `{m.suffix}` (one row per video frame at the json's `trajectory.fps`):", "",
                      "| column | meaning |", "|---|---|", *[f"| {i}: `{n}` | {_cell(d)} |" for i, (n, d) in enumerate(m.columns)]]
    lines += ["", "Fields of the `json` member (null where a stage gave no value):", "",
              "| field | type | meaning |", "|---|---|---|",
              *[f"| `{n}` | {t} | {_cell(d)} |" for n, t, d in S.field_rows()]]
    return lines


def card_text(rows: list[dict], table: SummaryTable, *, stats: dict | None = None, config: dict | None = None,
              preflight: dict | None = None, licence: str = "", sizes: dict | None = None,
              inputs: dict | None = None, date: str = "") -> str:
    """The card as text: YAML front matter (DatasetCardData) + markdown sections."""
    from huggingface_hub import DatasetCard

    config, inputs = config or {}, inputs or {}
    dataset = config.get("dataset") or {}
    name = str(dataset.get("name") or "binaural-dataset")
    licence = licence or str(dataset.get("licence") or "unspecified")
    package = ((config.get("stages") or {}).get("package") or {})
    with_video = package.get("video", "copy_or_encode") != "none"
    mp4_audio = bool(package.get("mp4_audio", False))
    spatial = config.get("spatial") or {}
    hrir_key = str(spatial.get("hrir") or "kemar")
    head, head_cite = HRIR_SETS.get(hrir_key.lower(), (f"a custom SOFA HRIR set ({os.path.basename(hrir_key)})", None))
    splits = _split_counts(rows, sizes)
    backend = quality_backend(rows, preflight)
    modes = Counter(str(r.get("conversion_mode")) for r in rows if r.get("conversion_mode"))
    localisers = Counter(str(r.get("loc_method")) for r in rows if r.get("loc_method"))
    share, eligible = lateral_share(rows)
    classes = class_rows(rows)
    is_vgg = str(inputs.get("format", "")).lower() == "vggsound"
    fidelity = ", ".join(f"{label} {value:.{digits}f}{unit}" for label, column, digits, unit in (
        ("IACC", "iacc", 3, ""), ("mean |ILD|", "ild_db", 2, " dB"), ("mean |ITD|", "itd_ms", 3, " ms"),
        ("mean |IPD|", "ipd_rad", 2, " rad")) if (value := _mean(rows, column)) is not None)
    lateral = (f"{100 * share:.0f} % of the {eligible} clips with an off-centre picture source have their "
               "louder ear on the picture's side" if share is not None else "no clip had an off-centre picture source")

    body = [
        f"# {name}", "",
        str(dataset.get("description") or "Videos paired with binaural (two-ear) audio made from their mono "
            "soundtracks, following the BinauralVGGSound recipe of SpatialV2A: the sounding object is localised "
            "in the picture and the mono audio is rendered binaurally at that position."), "",
        "## Dataset structure", "",
        "| split | clips | hours | shards |", "|---|---|---|---|",
        *[f"| {s} | {v.get('samples', 0)} | {v['hours']:.2f} | {v.get('shards', 0)} |" for s, v in splits.items()],
        "",
        *([f"Shards: {int(total.get('shards') or 0)} tar files, {int(total.get('bytes') or 0) / 2**30:.2f} GiB in all.",
           ""] if (total := (sizes or {}).get("total") or {}) else []),
        f"{len(classes)} classes. Conversion: " + (", ".join(f"{m} ({n} clips)" for m, n in sorted(modes.items())) or
                                                   "unknown") + "; localiser: " +
        (", ".join(f"{m} ({n} clips)" for m, n in sorted(localisers.items())) or "none") + ".", "",
        "WebDataset tar shards `shards/{split}-{000000}.tar`, one sample per clip, key = clip id. Each tar has a "
        "`.parquet` index (key, byte offset, size, members) and a `.stats.json`; `shards/sizes.json` and "
        "`shards/index.parquet` cover the whole set. Same inputs and settings give byte-identical tars.", "",
        *_members_section(with_video, mp4_audio), "",
        "## Loading", "",
        "With Hugging Face `datasets` (the features above are declared in this card, nothing else is needed):", "",
        "```python", "import io, soundfile as sf", "from datasets import load_dataset", "",
        'ds = load_dataset("path/to/this/folder")          # or the Hub repo id', 'sample = ds["' +
        (next(iter(splits), "train")) + '"][0]',
        'binaural, sr = sf.read(io.BytesIO(sample["flac"]))   # (N, 2), left first',
        'print(sample["json"]["caption"], "/", sample["json"]["spatial_caption"])', "```", "",
        "Media members are declared as binary so that `datasets` does not try to decode them; decode the FLAC with "
        "soundfile and the mp4 with any video reader. With webdataset: `wds.WebDataset(sorted(glob.glob("
        "\"shards/train-*.tar\")))` (members as bytes); with Ray Data: `ray.data.read_webdataset(\"shards/\")`.", "",
        "## How it was made", "",
        ("Source: VGGSound clips (YouTube videos with a class label). " if is_vgg else "") +
        "Clips shorter than 10 s are dropped and cut to 10 s windows; clips more than the configured share silent "
        "are dropped (WebRTC VAD with an energy gate); audio quality is scored; the sounding object is localised in "
        "every frame and its position becomes a direction (picture x through the camera's field of view, "
        f"{spatial.get('fov_deg', 120)} degrees); the mono audio is made binaural with {head}, resampled to "
        "16 kHz, by the conversion mode listed above (`unet`: PseudoBinaural's visually guided U-Net trained on "
        "pseudo-binaural pairs rendered from the kept clips; `sh` / `direct`: rendered along the trajectory).", "",
    ]
    funnel = funnel_rows(stats)
    if funnel:
        body += ["| stage | in | kept | dropped | failed |", "|---|---|---|---|---|",
                 *[f"| {f['stage']} | {f['in']} | {f['kept']} | {f['dropped']} | {f['failed']} |" for f in funnel], ""]
    settings = {k: _no_paths(v) for k, v in ((config.get("stages") or {}).items()) if v}
    body += ["Settings (from the build's config.yaml; local files by name only):", "", "```json",
             json.dumps({"spatial": _no_paths(spatial), "stages": settings}, indent=1, sort_keys=True, default=str),
             "```", "",
             "## Quality scores", "",
             ("Scored by **Meta Audiobox Aesthetics** (CE, CU, PC, PQ, 1 to 10)." if backend == "audiobox" else
              f"Scored by the signal-based `{backend}` scorer, **not** by Audiobox Aesthetics (no Audiobox "
              "checkpoint was available to the build): `quality.aes_*` are null and the scores are not comparable "
              "with published Audiobox numbers."), "",
             "## Spatial fidelity (measured on this dataset)", "",
             f"{fidelity or 'no clip was measured'}; lateral consistency: {lateral}. The table has the shape of "
             "SpatialV2A's Table 2; the notes under it say where our definitions differ from the paper's.", "",
             table.markdown(), "", *[f"- {n}" for n in table.notes], "",
             "## Uses", "",
             "- Training and evaluating video-to-binaural-audio and mono-to-binaural models (SpatialV2A, "
             "PseudoBinaural-style models) where real binaural recordings are not available at scale.",
             "- Pre-training before fine-tuning on real binaural recordings; studying audio-visual localisation.", "",
             "## Out-of-scope uses", "",
             "- As ground truth for real binaural acoustics: the audio is rendered, not recorded (see Limitations).",
             "- Judging a model's spatial accuracy against these labels alone; evaluate on real binaural recordings.",
             "- Identifying, tracking or profiling the people who appear or speak in the clips.", "",
             "## Limitations", "",
             "- **Pseudo-binaural**: every clip's binaural audio is computed from its mono soundtrack and a position "
             "estimated from the picture. There is no room reverberation beyond what the source already had, one "
             "source direction per frame, and the localiser can pick the wrong object.",
             f"- **One head**: the spatial cues are those of {head}; listeners whose own heads differ hear less "
             "precise directions, and the interaural time differences cannot exceed that head's (about 0.7 to "
             "0.8 ms at 90 degrees).",
             f"- **Measured fidelity**: {fidelity or 'not measured'}; {lateral}.",
             *(["- **Quality scores** come from a fallback scorer, not Audiobox Aesthetics (see above)."]
               if backend != "audiobox" else []),
             "- Inherited from the source: class imbalance, label noise and the sources' own audio quality.", "",
             "## Personal and sensitive information", "",
             ("The clips come from public YouTube videos (VGGSound): they can show faces and contain voices and "
              "speech of people who did not consent to this dataset. Nothing was added to identify them; do not use "
              "the data to identify people, and honour removal requests for the source videos." if is_vgg else
              "The clips come from the input videos: if those show people, faces and voices are in this dataset "
              "too. Nothing was added to identify anyone; do not use it to identify people."), "",
             "## Licence", "",
             f"{licence}. The audio and video of each clip keep the terms of its source video.", "",
             "## Citation", "",
             "```bibtex", "\n\n".join(BIBTEX[k] for k in ("spatialv2a", "vggsound", "pseudobinaural",
                                                           *([head_cite] if head_cite else []))), "```", "",
             "## About this card", "",
             f"Written by {TOOL} {tool_version()} on {date or 'an unknown date'} (the date its shards were written). "
             "The validation report with plots and audio examples is in `report/index.html`.", ""]
    data = card_data(rows, config=config, inputs=inputs, sizes=sizes, licence=licence)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
    return str(card)


def write_card(out_dir: str, rows: list[dict], table: SummaryTable, **kwargs) -> str:
    from manifests.io import atomic_write_text

    inputs = {}
    try:
        with open(os.path.join(out_dir, "input.json")) as fh:
            inputs = json.load(fh)
    except (OSError, ValueError):
        pass
    path = os.path.join(out_dir, "README.md")
    atomic_write_text(path, card_text(rows, table, inputs={"format": inputs.get("format")},
                                      date=dataset_date(out_dir), **kwargs))
    return path
