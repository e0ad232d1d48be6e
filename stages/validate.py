"""validate: binaural metrics per clip, then the report (OUT/report/) and the card (OUT/README.md).

Per clip (from the row's binaural_path, written by render or convert, else
work/convert/<clip>/binaural.npy; and work/localize/<clip>/traj.npy, the latter may
be absent -> lateral_agree null): iacc, ild_db, itd_ms, isd_db, ipd_rad, lateral_agree (definitions
in binauralizer/metrics.py). The full per-clip metrics, including signed broadband ILD/ITD, go to
OUT/report/clip_metrics.parquet.

Quality of the binaural downmix ((L+R)/2) for the summary table uses the backend that scored the
source ('auto'), so the two rows compare like with like: the dsp scorer (audioquality.dsp), or
Audiobox Aesthetics with the quality stage's checkpoint. When that is impossible the table says why.
A caller may also set `stage.downmix_scorer` to a callable (list of 16 kHz mono arrays -> list of
score dicts with aes_ce/aes_cu/aes_pq or dsp_score) and `stage.downmix_backend` to its name.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from binauralizer import metrics as M
from manifests.io import atomic_write_text, write_table
from manifests.schema import rows_to_table
from output.card import write_card
from output.report import build_table, quality_backend, write_report
from stages.base import settings, ConfigError, Params, Stage, StageError
from stages.clipdata import artifact, read_artifact

COLUMNS = ("iacc", "ild_db", "itd_ms", "isd_db", "ipd_rad", "lateral_agree")
DOWNMIX_MODES = ("auto", "dsp", "audiobox", "off")


@settings
class ValidateParams(Params):
    report_clips: int = 4
    licence: str = ""  # empty: dataset.licence from the run's config
    segment_s: float = M.SEGMENT_S
    centre_deg: float = M.CENTRE_DEG
    downmix_quality: str = "auto"  # auto | dsp | audiobox | off
    downmix_max_clips: int = 0  # 0 = all; else the first N clips by id (bounds Audiobox time)
    num_workers: int = 2

    def validate(self) -> None:
        if self.report_clips < 0:
            raise ConfigError("stages.validate.report_clips: must be >= 0")
        if not 0.05 <= self.segment_s <= 5:
            raise ConfigError("stages.validate.segment_s: must be in [0.05, 5]")
        if not 0 <= self.centre_deg < 90:
            raise ConfigError("stages.validate.centre_deg: must be in [0, 90)")
        if self.downmix_quality not in DOWNMIX_MODES:
            raise ConfigError(
                f"stages.validate.downmix_quality: {self.downmix_quality!r} is not one of {DOWNMIX_MODES}"
            )
        if self.downmix_max_clips < 0 or self.num_workers < 1:
            raise ConfigError("stages.validate: downmix_max_clips must be >= 0 and num_workers >= 1")


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


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


class ValidateStage(Stage):
    name = "validate"
    version = "1"
    Params = ValidateParams
    kind = "global"
    data_deps = ("localize", "convert")
    reads = ("clip_id", "label", "split", "window_samples", "frame_fps", "quality_backend", "binaural_path", "traj_path")
    writes = COLUMNS

    downmix_scorer: Callable[[list[np.ndarray]], list[dict]] | None = None
    downmix_backend: str = ""

    # -- per clip ---------------------------------------------------------------------------------------
    def _load(self, row: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """The row's binaural audio (binaural_path, from convert) and trajectory (traj_path, may be absent)."""
        binaural = np.load(artifact(self.ctx, row, "binaural_path", "convert"), allow_pickle=False)
        return binaural, read_artifact(self.ctx, row, "traj_path")

    def clip_metrics(self, row: dict) -> dict:
        binaural, traj = self._load(row)
        try:
            return M.clip_metrics(binaural, self.ctx.sample_rate, traj=traj,
                                  traj_fps=float(row.get("frame_fps") or 8.0),
                                  segment_s=self.params.segment_s, centre_deg=self.params.centre_deg)
        except ValueError as exc:
            raise StageError(str(exc)) from None

    # -- the global call ----------------------------------------------------------------------------------
    def run_global(self, rows: list[dict]) -> list[dict]:
        def one(row: dict) -> dict:
            try:
                return self.clip_metrics(row)
            except (StageError, OSError, ValueError) as exc:
                return {"_error": f"validate: {exc}"}

        with ThreadPoolExecutor(max_workers=self.params.num_workers) as pool:
            full = list(pool.map(one, rows))
        out = []
        merged = []
        for row, m in zip(rows, full):
            if "_error" in m:
                out.append(m)
                continue
            out.append({c: _finite_or_none(m[c]) for c in COLUMNS})
            merged.append({**row, **{k: _finite_or_none(v) if k != "lateral_segments" else v
                                     for k, v in m.items()}})
        self.write_outputs(merged)
        return out

    def write_outputs(self, merged: list[dict], downmix: dict | None = None) -> None:
        """Report, card and clip_metrics.parquet; also what `refresh` needs to redo them later."""
        out_dir = self.ctx.out
        stats = _read_json(os.path.join(out_dir, "stats.json"))
        config = _read_yaml(os.path.join(out_dir, "config.yaml"))
        preflight = stats.get("preflight") if isinstance(stats.get("preflight"), dict) else {}
        merged = sorted(merged, key=lambda r: str(r["clip_id"]))
        if downmix is None:
            downmix = self.downmix_quality(merged, preflight, config)
        table = build_table(merged, downmix, preflight)
        traces = [self.trace(r) for r in self.report_selection(merged)]
        title = str((config.get("dataset") or {}).get("name") or "Binaural dataset")
        write_report(out_dir, merged, table, stats=stats, config=config, preflight=preflight,
                     traces=traces, title=title)
        write_card(out_dir, merged, table, stats=stats, config=config, preflight=preflight,
                   licence=self.params.licence,
                   sizes=_read_json(os.path.join(out_dir, "shards", "sizes.json")) or None)
        self.write_clip_metrics(merged)
        report = os.path.join(out_dir, "report")
        write_table(os.path.join(report, "rows.parquet"), rows_to_table(merged))
        atomic_write_text(os.path.join(report, "downmix.json"), json.dumps(downmix, default=_finite_or_none))

    def finalize(self) -> None:
        """The funnel and shard sizes exist only after the whole run: re-render with them."""
        self.refresh()

    def refresh(self) -> bool:
        """Re-render report and card from the last validate run without recomputing anything.

        For the runner to call once OUT/stats.json (the funnel) and shards/sizes.json exist, which
        happens after this stage ran. False when validate has not run in this folder yet.
        """
        report = os.path.join(self.ctx.out, "report")
        rows_path = os.path.join(report, "rows.parquet")
        if not os.path.exists(rows_path):
            return False
        merged = pq.read_table(rows_path).to_pylist()
        downmix = _read_json(os.path.join(report, "downmix.json")) or {"skipped": "no downmix record"}
        self.write_outputs(merged, downmix)
        return True

    def write_clip_metrics(self, merged: list[dict]) -> None:
        keys = ["clip_id", "label", "split", *COLUMNS, "ild_broadband_db", "itd_broadband_ms",
                "lateral_segments", "az_mean_deg"]
        table = pa.table({k: pa.array([r.get(k) for r in merged],
                                      pa.string() if k in ("clip_id", "label", "split") else pa.float64())
                          for k in keys})
        write_table(os.path.join(self.ctx.out, "report", "clip_metrics.parquet"), table)

    # -- report helpers ------------------------------------------------------------------------------------
    def report_selection(self, merged: list[dict]) -> list[dict]:
        """The clips with the most visual motion (then the most off-centre), ties by id."""
        def motion(r: dict) -> tuple:
            start, end, mean = (r.get(k) for k in ("az_start_deg", "az_end_deg", "az_mean_deg"))
            moved = abs(end - start) if isinstance(start, (int, float)) and isinstance(end, (int, float)) else -1.0
            side = abs(mean) if isinstance(mean, (int, float)) else -1.0
            return (-moved, -side, str(r["clip_id"]))

        return sorted(merged, key=motion)[: self.params.report_clips]

    def trace(self, row: dict) -> dict:
        binaural, traj = self._load(row)
        sr = self.ctx.sample_rate
        seg = M.segments(binaural, sr, self.params.segment_s)
        spec = M.stft(binaural)
        spec_db = 20 * np.log10(np.abs(spec) + 1e-8)
        fps = float(row.get("frame_fps") or 8.0)
        traj_az = traj[:, 0].astype(float) if traj is not None and traj.ndim == 2 and traj.shape[0] else np.zeros(0)
        return {"clip_id": str(row["clip_id"]), "label": row.get("label"), "times": seg.times_s,
                "ild_db": np.where(seg.active, seg.ild_db, np.nan), "traj_t": np.arange(traj_az.size) / fps,
                "traj_az": traj_az, "duration_s": binaural.shape[1] / sr, "lateral_agree": row.get("lateral_agree"),
                "spec_l_db": spec_db[0], "spec_r_db": spec_db[1]}

    # -- downmix quality ----------------------------------------------------------------------------------
    def downmix_quality(self, merged: list[dict], preflight: dict, config: dict) -> dict:
        mode = self.params.downmix_quality
        backend = self.downmix_backend or (quality_backend(merged, preflight) if mode == "auto" else mode)
        if mode == "off":
            return {"backend": backend, "skipped": "downmix_quality is off"}
        chosen = merged[: self.params.downmix_max_clips] if self.params.downmix_max_clips else merged
        if not chosen:
            return {"backend": backend, "skipped": "no clips"}
        scorer = self.downmix_scorer
        if scorer is None:
            try:
                scorer = self._builtin_scorer(backend, config)
            except Exception as exc:  # noqa: BLE001 - any loading problem is reported, never fatal
                return {"backend": backend, "skipped": f"{backend} scorer unavailable: {type(exc).__name__}: {exc}"}
        scores = []
        for start in range(0, len(chosen), 16):  # bounded memory: 16 clips of audio at a time
            wavs = []
            for row in chosen[start : start + 16]:
                binaural, _ = self._load(row)
                wavs.append(binaural.astype(np.float32).mean(axis=0))
            scores.extend(scorer(wavs))
        return {"backend": backend, "scores": scores}

    @staticmethod
    def _builtin_scorer(backend: str, config: dict) -> Callable[[list[np.ndarray]], list[dict]]:
        if backend == "dsp":
            from audioquality.dsp import dsp_scores

            return lambda wavs: [dsp_scores(w) for w in wavs]
        if backend == "audiobox":
            from audioquality.audiobox import AudioboxScorer, find_checkpoint

            quality = ((config.get("stages") or {}).get("quality") or {})
            source = find_checkpoint(quality.get("checkpoint") or None, allow_download=False)
            model = AudioboxScorer(source, num_threads=2)
            return lambda wavs: [{f"aes_{k.lower()}": v for k, v in s.items()} for s in model.score(wavs)]
        raise ValueError(f"no scorer for backend {backend!r}")
