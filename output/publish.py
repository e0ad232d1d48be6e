"""publish: the dataset's HTML report (OUT/report/) and card (OUT/README.md), a run-level step.

The runner calls `publish(out)` once per build, after stats.json (the funnel) and the shards are
written, so both quote the final counts and sizes. It reads only what the stages left in the run
folder: validate's manifests (per-clip metrics and downmix scores), their artefact paths (for the
few clips whose ILD traces the report shows), config.yaml, stats.json and shards/sizes.json. It
measures nothing over the dataset; rerunning it re-renders the same pages.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa
import yaml

from binauralizer import metrics as M
from binauralizer.constants import SAMPLE_RATE
from manifests import artifacts as A
from manifests.io import atomic_path, atomic_write_text, read_rows, write_table
from manifests.schema import DOWNMIX_SCORES, rows_to_table
from output.card import dataset_date, write_card
from output.report import build_table, write_report

CLIP_METRICS = ("clip_id", "label", "split", "iacc", "ild_db", "itd_ms", "isd_db", "ipd_rad", "lateral_agree",
                "ild_broadband_db", "itd_broadband_ms", "lateral_segments", "az_mean_deg")


def _read_json(path: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _read_yaml(path: str) -> dict:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def validated_rows(out: str) -> list[dict] | None:
    """Kept rows of validate's manifests sorted by clip id; None when validate never ran here."""
    files = sorted(glob.glob(os.path.join(out, "manifests", "validate", "chunk-*.parquet")))
    if not files:
        return None
    rows = [r for f in files for r in read_rows(f) if r.get("status") == "kept"]
    return sorted(rows, key=lambda r: str(r["clip_id"]))


def downmix_record(rows: list[dict], resolved: dict) -> dict:
    """What the summary table needs: {"backend", "scores"} or {"backend", "skipped"}."""
    backend = resolved.get("downmix_backend", "none")
    if resolved.get("downmix_skipped"):
        return {"backend": backend, "skipped": resolved["downmix_skipped"]}
    scores = [{k: r[f"downmix_{k}"] for k in DOWNMIX_SCORES if r.get(f"downmix_{k}") is not None} for r in rows]
    scores = [s for s in scores if s]
    if not scores:
        return {"backend": backend, "skipped": "no clips" if not rows else "no downmix scores in the rows"}
    return {"backend": backend, "scores": scores}


def report_selection(rows: list[dict], count: int) -> list[dict]:
    """The clips with the most visual motion (then the most off-centre), ties by id."""
    def motion(r: dict) -> tuple:
        start, end, mean = (r.get(k) for k in ("az_start_deg", "az_end_deg", "az_mean_deg"))
        moved = abs(end - start) if isinstance(start, (int, float)) and isinstance(end, (int, float)) else -1.0
        side = abs(mean) if isinstance(mean, (int, float)) else -1.0
        return (-moved, -side, str(r["clip_id"]))

    return sorted(rows, key=motion)[:count]


def trace(out: str, row: dict, segment_s: float = M.SEGMENT_S) -> dict:
    """ILD over time against the trajectory, and both ears' spectrograms, of one clip."""
    binaural = np.load(A.row_file(out, row, "binaural_path"), allow_pickle=False)
    traj_file = A.row_file(out, row, "traj_path")
    traj = np.load(traj_file, allow_pickle=False) if traj_file and os.path.exists(traj_file) else None
    seg = M.segments(binaural, SAMPLE_RATE, segment_s)
    spec_db = 20 * np.log10(np.abs(M.stft(binaural)) + 1e-8)
    fps = float(row.get("frame_fps") or 8.0)
    traj_az = traj[:, 0].astype(float) if traj is not None and traj.ndim == 2 and traj.shape[0] else np.zeros(0)
    return {"clip_id": str(row["clip_id"]), "label": row.get("label"), "times": seg.times_s,
            "ild_db": np.where(seg.active, seg.ild_db, np.nan), "traj_t": np.arange(traj_az.size) / fps,
            "traj_az": traj_az, "duration_s": binaural.shape[1] / SAMPLE_RATE, "lateral_agree": row.get("lateral_agree"),
            "spec_l_db": spec_db[0], "spec_r_db": spec_db[1]}


# Filter stages whose kept and dropped clips the report plots: (stage, column, threshold setting, x label).
FILTERS = (("duration", "duration_s", "min_seconds", "source duration (s)"),
           ("silence", "silent_fraction", "max_silent_fraction", "silent fraction"),
           ("quality", "aes_pq", "min_pq", "Audiobox PQ"),
           ("quality", "dsp_score", None, "dsp score (no threshold)"))


def filter_views(out: str, config: dict) -> list[dict]:
    """Kept and dropped values of each filter stage that ran, with its threshold (for the report)."""
    views = []
    for stage, column, key, label in FILTERS:
        files = sorted(glob.glob(os.path.join(out, "manifests", stage, "chunk-*.parquet")))
        rows = [r for f in files for r in read_rows(f)]
        values = {status: [float(r[column]) for r in rows if r.get("status") == status
                           and isinstance(r.get(column), (int, float)) and np.isfinite(r[column])]
                  for status in ("kept", "dropped")}
        if not values["kept"] and not values["dropped"]:
            continue
        threshold = ((config.get("stages") or {}).get(stage) or {}).get(key) if key else None
        views.append({"stage": stage, "column": column, "label": label, **values,
                      "threshold": float(threshold) if isinstance(threshold, (int, float)) else None})
    return views


def clip_audio(out: str, row: dict) -> dict:
    """report/audio/<clip>.binaural.flac and .mono.flac (16-bit FLAC: same audio, same bytes)."""
    import soundfile as sf

    folder = os.path.join(out, "report", "audio")
    os.makedirs(folder, exist_ok=True)
    binaural = np.load(A.row_file(out, row, "binaural_path"), allow_pickle=False)
    source = np.load(A.resolve(out, A.ingest_file(str(row.get("source_id") or row["clip_id"]), A.AUDIO)),
                     mmap_mode="r")
    start = int(row.get("window_start") or 0)
    mono = np.zeros(binaural.shape[1], np.float32)
    part = np.asarray(source[start : start + mono.size], np.float32)
    mono[: part.size] = part
    names = {}
    for kind, audio in (("binaural", binaural.T), ("mono", mono)):
        name = f"{row['clip_id']}.{kind}.flac"
        with atomic_path(os.path.join(folder, name)) as tmp:
            sf.write(tmp, np.clip(audio, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        names[kind] = f"audio/{name}"
    return names


def loss_history(out: str) -> list[dict]:
    path = os.path.join(os.path.dirname(A.resolve(out, A.model())), "loss_curve.json")
    return _read_json(path).get("history") or []


def publish(out: str) -> dict | None:
    """Write the report and the card for the run folder `out`; None when validate has not run there."""
    rows = validated_rows(out)
    if rows is None:
        return None
    stats = _read_json(os.path.join(out, "stats.json"))
    config = _read_yaml(os.path.join(out, "config.yaml"))
    preflight = stats.get("preflight") if isinstance(stats.get("preflight"), dict) else {}
    settings = ((config.get("stages") or {}).get("validate") or {})
    downmix = downmix_record(rows, preflight.get("validate") or {})
    table = build_table(rows, downmix, preflight)
    selected = report_selection(rows, int(settings.get("report_clips", 4)))
    traces = [{**trace(out, r, float(settings.get("segment_s") or M.SEGMENT_S)), "audio": clip_audio(out, r)}
              for r in selected]
    title = str((config.get("dataset") or {}).get("name") or "Binaural dataset")
    report = write_report(out, rows, table, stats=stats, config=config, preflight=preflight, traces=traces, title=title,
                          filters=filter_views(out, config), loss=loss_history(out), date=dataset_date(out),
                          sizes=_read_json(os.path.join(out, "shards", "sizes.json")) or None)
    card = write_card(out, rows, table, stats=stats, config=config, preflight=preflight,
                      licence=str(settings.get("licence") or ""),
                      sizes=_read_json(os.path.join(out, "shards", "sizes.json")) or None)
    metrics = pa.table({k: pa.array([r.get(k) for r in rows], pa.string() if k in ("clip_id", "label", "split")
                                    else pa.float64()) for k in CLIP_METRICS})
    write_table(os.path.join(out, "report", "clip_metrics.parquet"), metrics)
    write_table(os.path.join(out, "report", "rows.parquet"), rows_to_table(rows))
    atomic_write_text(os.path.join(out, "report", "downmix.json"), json.dumps(downmix, default=str))
    return {"report": report, "card": card, "clips": len(rows)}
