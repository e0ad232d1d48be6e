"""The validation report and dataset card: rendered from a real run folder, checked without a browser."""

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
    ctx, rows = outputruns.build_run(str(tmp_path_factory.mktemp("run")))
    out = outputruns.validate_run(ctx, rows, report_clips=2)
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
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000, src


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
    assert card.startswith("---\npretty_name: \"tiny-binaural\"")
    for needle in ("CC BY 4.0 (test)", "4 clips", "test 2, train 2", "wds.WebDataset", "load_dataset(\"webdataset\"",
                   "**Scored by the `dsp` backend, NOT by Audiobox Aesthetics.**", "| Binaural (this dataset",
                   "report_clips=2", "<key>.traj.npy"):
        assert needle in card, needle
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
