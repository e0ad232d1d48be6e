"""Every kind of bad input ends as one row with a readable reason; good clips are all kept; the run
completes; nothing is written outside OUT."""

from __future__ import annotations

import glob
import os
import tarfile

import pyarrow.parquet as pq
import pytest

from corpus import make_corpus
from runhelpers import SAMPLE_CONFIG

STAGES = ["ingest", "duration", "silence", "convert", "shard"]
TINY = {"run.stages": STAGES, "run.chunk_size": 8, "stages.duration.min_seconds": 1.0,
        "stages.duration.window_seconds": 1.0, "stages.convert.mode": "mono", "stages.shard.video": "encode",
        "stages.shard.num_workers": 1, "stages.shard.video_threads": 1}


def snapshot(folder: str) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def terminal_rows(out: str) -> list[dict]:
    """The row where each clip's story ends: rejected, dropped or failed somewhere, or kept at the end."""
    rows = pq.read_table(os.path.join(out, "manifests", "_input", "rejected.parquet")).to_pylist()
    for stage in STAGES:
        for path in sorted(glob.glob(os.path.join(out, "manifests", stage, "*.parquet"))):
            for row in pq.read_table(path).to_pylist():
                if row["status"] != "kept" or stage == STAGES[-1]:
                    rows.append({**row, "stage": stage})
    return rows


@pytest.mark.slow
def test_bad_input_corpus(tmp_path):
    from pipeline.config import load_config
    from pipeline.runner import BuildRequest, build

    manifest, expect = make_corpus(str(tmp_path / "data"), str(tmp_path / "data" / "outside"))
    before = snapshot(str(tmp_path / "data"))
    out = str(tmp_path / "run")
    request = BuildRequest(config=load_config(SAMPLE_CONFIG, TINY), input=manifest, out=out,
                           media_root=str(tmp_path / "data" / "media"), executor="local", progress=False)
    stats = build(request)

    rows = terminal_rows(out)
    assert len(rows) == 21  # one row per manifest line, nothing lost or duplicated
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["clip_id"], []).append(row)
    for clip_id, outcome in expect.items():
        ends = by_id[clip_id]
        kind, _, reason = outcome.partition(":")
        if clip_id == "good_plain":  # the first line is kept, the duplicate line rejected
            assert sorted(r["status"] for r in ends) == ["failed", "kept"]
            assert [r["reason"] for r in ends if r["status"] == "failed"] == ["rejected: duplicate clip_id (first seen on line 2)"]
            continue
        assert len(ends) == 1, (clip_id, ends)
        row = ends[0]
        if kind == "kept":
            assert row["status"] == "kept" and row["stage"] == "shard", (clip_id, row["reason"])
        elif kind == "failed":
            assert row["status"] == "failed" and row["reason"].startswith(reason), (clip_id, row["reason"])
        else:
            assert row["reason"].startswith(f"rejected: {reason}"), (clip_id, row["reason"])
    assert stats["stages"]["shard"]["kept"] == 11

    ingest = {r["clip_id"]: r for f in glob.glob(os.path.join(out, "manifests", "ingest", "*.parquet"))
              for r in pq.read_table(f).to_pylist()}
    assert ingest["huge_header"]["duration_s"] == pytest.approx(2.0, abs=0.1)  # decoded, not the header's claim
    assert ingest["surround51"]["audio_channels_in"] == 6 and ingest["rate96k"]["audio_sr_in"] == 96000
    assert ingest["rate8k"]["audio_sr_in"] == 8000 and ingest["vfr"]["vfr"] is True
    assert (ingest["frame4k"]["width"], ingest["frame4k"]["frame_h"]) == (3840, 224)

    keys = set()
    for tar in glob.glob(os.path.join(out, "shards", "**", "*.tar"), recursive=True):
        with tarfile.open(tar) as fh:
            keys |= {m.name.split(".", 1)[0] for m in fh.getmembers()}
    assert keys == {c for c, o in expect.items() if o == "kept"}
    # nothing written outside OUT: the media folder (and the folder outside it) is exactly as it was
    assert snapshot(str(tmp_path / "data")) == before
    assert sorted(os.listdir(tmp_path)) == ["data", "run"]
