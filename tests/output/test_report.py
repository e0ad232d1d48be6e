"""The validation report and dataset card of a real run folder (real ffmpeg media, KEMAR renderings, shards):
the page's tables and files, the page in headless Chromium, the card's YAML, and `load_dataset(OUT)` in a
fresh virtual environment with only `datasets` installed."""

from __future__ import annotations

import json
import os
import outputruns
from html.parser import HTMLParser

import numpy as np
import pytest

from output.card import card_text
from output.report import PAPER_ROWS, TABLE_COLUMNS, build_table, write_report




class Page(HTMLParser):
    """Tables (by id) as lists of rows of cell text, image sources, and all visible text."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.text: list[str] = []
        self.scripts = 0
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"t{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    from output.publish import publish

    ctx, rows = outputruns.build_run(str(tmp_path_factory.mktemp("run")))
    out = outputruns.validate_run(ctx, rows, report_clips=2)
    packed = outputruns.pack(ctx, [{**r, **m} for r, m in zip(rows, out)], max_shard_bytes=1 << 20)
    assert all("shard" in p for p in packed), packed
    publish(ctx.out)  # again, as the runner does after the shards: the card and report see them
    page = Page()
    with open(os.path.join(ctx.out, "report", "index.html"), encoding="utf-8") as fh:
        page.feed(fh.read())
    return ctx, rows, out, page


def test_report_table_has_the_shape_of_table_2(validated):
    _, rows, out, page = validated
    table = page.tables["table2"]
    assert table[0] == list(TABLE_COLUMNS)
    assert [r[0] for r in table[1:3]] == [p[0] for p in PAPER_ROWS]
    source, binaural = table[3], table[4]
    assert source[:6] == ["Source mono (this dataset, 4 clips)", "dsp", "n/a", "n/a", "n/a", "7.50"]
    assert binaural[1] == "dsp" and float(binaural[5]) > 1  # the downmix scored by the same backend
    iacc = np.mean([o["iacc"] for o in out])
    ild = np.mean([o["ild_db"] for o in out])
    assert binaural[6] == f"{iacc:.3f}" and binaural[7] == f"{ild:.2f}"
    assert binaural[11] == "100% of 3 clips"  # three localised off-centre clips, all on the right side


def test_report_is_static_and_its_images_exist(validated):
    ctx, _, _, page = validated
    assert page.scripts == 0
    report = os.path.join(ctx.out, "report")
    names = {os.path.basename(src) for src in page.images}
    assert {"funnel.png", "classes.png", "durations.png", "silence.png", "quality.png", "spatial.png",
            "azimuth.png", "clip_0.png", "clip_1.png"} <= names
    for src in page.images:
        path = os.path.join(report, src)
        with open(path, "rb") as fh:
            head = fh.read(8)
        no_data = src in ("plots/filters.png", "plots/loss_curve.png")  # this folder has no filter stage, no training
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > (1000 if no_data else 5000), src


def test_report_says_which_backend_scored_and_shows_the_funnel(validated):
    _, _, _, page = validated
    text = " ".join(page.text)
    assert "QUALITY SCORES COME FROM THE 'DSP' BACKEND, NOT FROM AUDIOBOX AESTHETICS." in text
    assert "no Audiobox checkpoint found offline" in text
    funnel = page.tables["funnel"]
    assert funnel[1][:5] == ["ingest", "6", "5", "0", "1"]
    assert funnel[2][5] == "too_short: 1"
    classes = page.tables["classes"]
    assert classes[1] == ["dog barking", "2", f"{20 / 3600:.3f}"]


def test_clip_metrics_file_and_card(validated):
    import pyarrow.parquet as pq

    ctx, _, _, _ = validated
    metrics = pq.read_table(os.path.join(ctx.out, "report", "clip_metrics.parquet")).to_pylist()
    by_id = {m["clip_id"]: m for m in metrics}
    assert by_id["clipA_w0"]["ild_broadband_db"] > 3 and by_id["clipA_w1"]["ild_broadband_db"] < -3
    card = open(os.path.join(ctx.out, "README.md"), encoding="utf-8").read()
    assert card.startswith("---\nlicense: cc-by-4.0\n") and "\npretty_name: tiny-binaural\n" in card
    for needle in ("CC BY 4.0 (test).", "| test | 2 | 0.01 | 2 |", "| train | 2 | 0.01 | 2 |", "wds.WebDataset",
                   'ds = load_dataset("path/to/this/folder")', "| Binaural (this dataset", '"report_clips": 2',
                   "`<key>.traj.npy`", "| 3: `S_LR` |", "NO audio track", "@article{wang2026spatialv2a",
                   "@inproceedings{chen2020vggsound", "@inproceedings{xu2021pseudobinaural", "@article{gardner1995kemar",
                   "## Uses", "## Out-of-scope uses", "## Personal and sensitive information",
                   "the MIT KEMAR dummy head", "lateral consistency: 100 % of the 3 clips", "binauralize 0.1.0 on 20"):
        assert needle in card, needle
    assert card.count("not** by Audiobox Aesthetics") == 1 and card.count("checkpoint") == 1  # said once
    assert ctx.out not in card and "/tmp" not in card and "/root" not in card and "/home" not in card
    assert json.load(open(os.path.join(ctx.out, "report", "table.json")))["columns"] == list(TABLE_COLUMNS)


def test_report_without_stats_or_config(tmp_path):
    rows = [{"clip_id": "a", "label": "x", "window_samples": 160000, "quality_backend": "audiobox",
             "aes_ce": 4.0, "aes_cu": 5.0, "aes_pq": 6.0, "iacc": 0.9, "ild_db": 3.0, "itd_ms": 0.2,
             "isd_db": 1.0, "ipd_rad": 0.3, "lateral_agree": None}]
    table = build_table(rows, {"backend": "audiobox", "scores": [{"aes_ce": 3.0, "aes_cu": 4.0, "aes_pq": 5.0}]})
    assert table.rows[2][1:5] == ("audiobox", "4.00", "5.00", "6.00")
    assert table.rows[3][2:5] == ("3.00", "4.00", "5.00") and table.rows[3][-1] == "- (no off-centre clips)"
    path = write_report(str(tmp_path), rows, table)
    page = Page()
    page.feed(open(path, encoding="utf-8").read())
    assert "funnel" not in page.tables and "No OUT/stats.json: the funnel is unknown." in " ".join(page.text)
    assert "Quality scores: Audiobox Aesthetics (audiobox backend)." in " ".join(page.text)
    assert card_text(rows, table).count("Audiobox") >= 1
    empty = write_report(str(tmp_path / "empty"), [], build_table([], None))
    assert os.path.getsize(empty) > 0


def test_card_yaml_is_what_the_hub_and_datasets_read(validated):
    from datasets import Features
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    from output.sample_schema import feature_list, hf_features

    ctx, _, _, _ = validated
    card = DatasetCard.load(os.path.join(ctx.out, "README.md"))
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["task_categories"] == ["audio-to-audio"]
    assert data["size_categories"] == ["n<1K"] and data["source_datasets"] == ["original"]
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert configs["default"]["data_files"] == [{"split": "test", "path": "shards/test-*.tar"},
                                                {"split": "train", "path": "shards/train-*.tar"}]
    info = DatasetInfosDict.from_dataset_card_data(card.data)["default"]
    assert info.features == hf_features() and Features._from_yaml_list(feature_list()) == info.features
    assert {s.name: s.num_examples for s in info.splits.values()} == {"test": 2, "train": 2}
    assert card.text.count("## Citation") == 1 and card.text.count("## Licence") == 1


@pytest.mark.parametrize("text, expected", [
    ("CC0-1.0 (synthetic clips generated by the project)", {"license": "cc0-1.0"}),
    ("cc-by-4.0", {"license": "cc-by-4.0"}),
    ("CC BY 4.0 (VGGSound annotations); audio and video inherit the licences of the YouTube sources",
     {"license": "other", "license_name": "cc-by-4.0-vggsound-annotations-audio"}),
    ("", {"license": "other", "license_name": "unspecified"}),
])
def test_licence_text_to_hub_metadata(text, expected):
    from output.card import licence_metadata

    assert licence_metadata(text) == expected


def test_report_in_headless_chromium(validated):
    """Every image and audio player loads, and nothing sticks out of a 1024 px wide page."""
    from browser import open_page

    ctx, _, _, _ = validated
    found = open_page(os.path.join(ctx.out, "report", "index.html"), width=1024)
    assert len(found["images"]) == 11 and all(i["ok"] for i in found["images"]), found["images"]
    assert len(found["audios"]) == 4, found["audios"]  # 2 clips: binaural and mono
    assert all(a["ok"] and abs(a["duration"] - 10.0) < 0.01 for a in found["audios"]), found["audios"]
    assert found["scroll_width"] <= found["client_width"] and found["sticking_out"] == [], found
    assert {"../README.md", "../shards/"} <= set(found["links"])


def test_filter_views_show_kept_and_dropped_with_the_threshold(tmp_path):
    from manifests.io import write_rows
    from output.publish import filter_views
    from output.report import plot_filters

    out = str(tmp_path)
    write_rows(os.path.join(out, "manifests", "silence", "chunk-00000.parquet"), [
        {"clip_id": c, "status": s, "reason": "", "silent_fraction": f}
        for c, s, f in (("a", "kept", 0.1), ("b", "kept", 0.5), ("c", "dropped", 0.9), ("d", "failed", None))])
    views = filter_views(out, {"stages": {"silence": {"max_silent_fraction": 0.8}}})
    assert views == [{"stage": "silence", "column": "silent_fraction", "label": "silent fraction",
                      "kept": [0.1, 0.5], "dropped": [0.9], "threshold": 0.8}]
    path = os.path.join(out, "filters.png")
    plot_filters(views, path)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_load_dataset_reads_every_split_in_a_fresh_environment(validated, tmp_path):
    """A machine without this project: a new venv with only `datasets`, then load_dataset(OUT)."""
    import subprocess
    import sys

    ctx, rows, _, _ = validated
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "--disable-pip-version-check",
                          "datasets==5.2.0"], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    script = (
        "import json, sys\n"
        "from datasets import load_dataset\n"
        "ds = load_dataset(sys.argv[1], cache_dir=sys.argv[2])\n"
        "out = {}\n"
        "for split, d in ds.items():\n"
        "    s = d[0]\n"
        "    out[split] = {'rows': d.num_rows, 'keys': sorted(d['__key__']), 'flac': s['flac'][:4].decode('latin1'),\n"
        "                  'mp4': s['mp4'][4:8].decode('latin1'), 'traj': [len(s['traj.npy']), len(s['traj.npy'][0]) if s['traj.npy'] else 0],\n"
        "                  'spatial_cols': len(s['spatial.npy'][0]) if s['spatial.npy'] else 0,\n"
        "                  'json': s['json']}\n"
        "print(json.dumps(out))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([str(venv / "bin" / "python"), "-c", script, ctx.out, str(tmp_path / "cache")],
                            capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert {s: f["keys"] for s, f in found.items()} == {"test": ["clipB_w0", "clipB_w1"], "train": ["clipA_w0", "clipA_w1"]}
    for split, f in found.items():
        assert f["flac"] == "fLaC" and f["mp4"] == "ftyp"
        assert f["json"]["split"] == split and f["json"]["sample_rate"] == 16000
    assert found["test"]["traj"] == [80, 3] and found["test"]["spatial_cols"] == 5
    assert found["test"]["json"]["spatial_caption"] == "on the left, moving to the right"
