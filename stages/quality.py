"""Quality stage: Audiobox Aesthetics scores per clip, thresholds decided separately.

SpatialV2A (§3.1) filters VGGSound with Meta's Audiobox Aesthetics toolkit but publishes no
threshold, so every axis has its own optional minimum. Scores are measurements; thresholds are
decision keys, so changing one re-decides without rescoring.

Backends: `audiobox` (the model; needs a checkpoint, see audioquality.audiobox.find_checkpoint),
`dsp` (signal measurements, see audioquality.dsp) and `auto` (audiobox when a checkpoint is
found, else dsp). `QualityStage.preflight` resolves the backend before the run starts, so a
missing checkpoint stops `backend: audiobox` before any work and `auto` records why it fell back.
Every measured row carries `quality_backend`; dsp results live only in dsp_* columns.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from audioquality import AES_COLUMNS, AXES, DSP_COLUMNS, SAMPLE_RATE, audio_problem
from stages.base import settings, DROPPED, FAILED, KEPT, ConfigError, Params, Stage, StageError
from stages.clipdata import load_audio

log = logging.getLogger(__name__)

BACKENDS = ("auto", "audiobox", "dsp")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
AXIS_THRESHOLDS = {axis: f"min_{axis.lower()}" for axis in AXES}


@settings
class QualityParams(Params):
    backend: str = "auto"
    checkpoint: str | None = None  # checkpoint.pt, or a directory holding it / config.json + model.safetensors
    min_ce: float | None = None
    min_cu: float | None = None
    min_pc: float | None = None
    min_pq: float | None = None
    min_dsp_score: float | None = None  # applies to the dsp backend only
    batch_size: int = 8  # 10 s windows per forward pass
    num_gpus: float = 0.0  # per actor; fractional packs several actors on one GPU
    num_cpus: float = 1.0
    precision: str = "auto"  # auto: bf16 (fp16 without bf16 support) on GPU, fp32 on CPU
    allow_download: bool = False  # true: fetch checkpoint.pt from the Hugging Face hub when none is local

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"stages.quality.backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"stages.quality.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            raise ConfigError(f"stages.quality.checkpoint: expected a path, got {self.checkpoint!r}")
        for key in (*AXIS_THRESHOLDS.values(), "min_dsp_score"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"stages.quality.{key}: expected a number or null, got {value!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"stages.quality.batch_size: expected an integer >= 1, got {self.batch_size!r}")


class QualityStage(Stage):
    name = "quality"
    version = "1"
    Params = QualityParams
    kind = "actor"
    decision_keys = (*AXIS_THRESHOLDS.values(), "min_dsp_score")
    data_deps = ("ingest", "duration")
    reads = ("clip_id", "source_id", "window_start", "window_samples")
    writes = (*AES_COLUMNS.values(), "quality_backend", *DSP_COLUMNS)

    # -- before the run -------------------------------------------------------------------------
    @classmethod
    def preflight(cls, params: QualityParams, spatial=None, resolved=None) -> dict:
        """Resolve the backend; the runner records the returned dict in stats.json.

        Raises ConfigError when `backend: audiobox` has no checkpoint, when a given
        `checkpoint` does not exist (for `auto` too: a typo must not become a silent fallback),
        or when the checkpoint file is not in the model's format.
        """
        if params.backend == "dsp":
            return {"backend": "dsp", "why": "quality.backend is dsp", **_ignored(params, "dsp")}
        from audioquality.audiobox import CheckpointNotFound, find_checkpoint, inspect_checkpoint

        try:
            source = find_checkpoint(params.checkpoint, allow_download=params.allow_download)
            inspect_checkpoint(source)
        except CheckpointNotFound as exc:
            if params.backend == "audiobox" or params.checkpoint:
                raise ConfigError(f"stages.quality: {exc}") from exc
            why = f"{exc} -> fell back to the signal-based dsp scorer (dsp_* columns; no aes_* scores)"
            return {"backend": "dsp", "why": why, **_ignored(params, "dsp")}
        except ValueError as exc:
            raise ConfigError(f"stages.quality.checkpoint: {exc}") from exc
        why = f"Audiobox Aesthetics checkpoint from {source.origin}: {source.path}"
        return {
            "backend": "audiobox",
            "checkpoint": source.path,
            "checkpoint_origin": source.origin,
            "why": why,
            **_ignored(params, "audiobox"),
        }

    def measure_settings(self) -> dict:
        """Whether a download was allowed changes nothing by itself: the resolved checkpoint is fingerprinted."""
        settings = super().measure_settings()
        settings.pop("allow_download", None)
        return settings

    # -- per actor ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Use the backend the driver resolved before the run (same on every node); load it once."""
        self.resolved = (self.ctx.extra.get("preflight") or {}).get(self.name) or self.preflight(self.params)
        self.backend = self.resolved["backend"]
        self.scorer = None
        self._batch_size = int(self.params.batch_size)
        if self.backend == "audiobox":
            import torch

            from audioquality.audiobox import AudioboxScorer

            from binauralizer.devices import pick_device

            device = str(pick_device(self.params.num_gpus, self.name))
            self.scorer = AudioboxScorer(
                self.resolved["checkpoint"],
                device=device,
                precision=self.params.precision,
                batch_size=self._batch_size,
                num_threads=max(1, int(self.params.num_cpus)),
            )

    def measure(self, rows: list[dict]) -> list[dict]:
        """Every declared column on every scored row (null for the other backend's): one schema per run."""
        return [m if "_error" in m else {**dict.fromkeys(self.writes), **m} for m in self._measure(rows)]

    def _measure(self, rows: list[dict]) -> list[dict]:
        if not hasattr(self, "backend"):
            self.setup()
        results: list[dict | None] = [None] * len(rows)
        wavs, where = [], []
        for i, row in enumerate(rows):
            try:
                wav = load_audio(self.ctx, row)
            except StageError as exc:
                results[i] = {"_error": str(exc)}
                continue
            problem = audio_problem(wav, self.ctx.sample_rate)
            if problem:
                results[i] = {"_error": f"quality: {problem}"}
                continue
            wavs.append(wav)
            where.append(i)

        if self.backend == "dsp":
            from audioquality.dsp import dsp_scores

            for i, wav in zip(where, wavs):
                results[i] = {"quality_backend": "dsp", **dsp_scores(wav, self.ctx.sample_rate)}
            return results

        if self.ctx.sample_rate != SAMPLE_RATE:  # the model is trained on 16 kHz
            from scipy.signal import resample_poly

            wavs = [resample_poly(w, SAMPLE_RATE, self.ctx.sample_rate).astype(np.float32) for w in wavs]
        for i, scores in zip(where, self._score_with_retry(wavs, self._batch_size)):
            results[i] = _audiobox_columns(scores)
        return results

    def _score_with_retry(self, wavs: list[np.ndarray], batch_size: int) -> list[dict | str]:
        """Scores per clip; on GPU out-of-memory halve the batch, then fail only clips that still OOM."""
        import torch

        try:
            scores = self.scorer.score(wavs, batch_size=batch_size)
            self._batch_size = min(self._batch_size, batch_size)  # keep the size that fits
            return scores
        except torch.cuda.OutOfMemoryError:
            from audioquality.audiobox import window_count

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            tried = min(batch_size, window_count(wavs))  # a forward never held more than this
            if tried > 1:
                log.warning("quality: GPU out of memory at %d windows per forward; retrying at %d", tried, tried // 2)
                return self._score_with_retry(wavs, tried // 2)
            if len(wavs) > 1:
                return [r for wav in wavs for r in self._score_with_retry([wav], 1)]
            return ["quality: GPU out of memory even for one 10 s window at a time"]

    # -- decision -------------------------------------------------------------------------------
    def decide(self, row: dict) -> tuple[str, str]:
        p = self.params
        backend = row.get("quality_backend")
        if backend == "audiobox":
            checks = [(axis, AES_COLUMNS[axis], getattr(p, key)) for axis, key in AXIS_THRESHOLDS.items()]
        elif backend == "dsp":
            checks = [("dsp_score", "dsp_score", p.min_dsp_score)]
        else:
            return FAILED, f"quality: row has no quality_backend ({backend!r}); rerun the quality stage"
        below = []
        for label, column, threshold in checks:
            if threshold is None:
                continue
            value = row.get(column)
            if value is None or not math.isfinite(float(value)):
                return FAILED, f"quality: no {label} score to compare with {threshold:g}"
            if value < threshold:
                below.append(f"{label} {value:.2f} < {threshold:g}")
        if below:
            return DROPPED, "quality: " + "; ".join(below)
        return KEPT, ""


def _audiobox_columns(scores: dict | str) -> dict:
    if isinstance(scores, str):
        return {"_error": scores}
    if not all(math.isfinite(v) for v in scores.values()):
        return {"_error": f"quality: the model returned non-finite scores {scores}"}
    # Rounded so the last float bits, which depend on batch composition, never reach the manifest.
    return {"quality_backend": "audiobox", **{AES_COLUMNS[a]: round(scores[a], 4) for a in AXES}}


def _ignored(params: QualityParams, backend: str) -> dict:
    """Thresholds that do not apply to the resolved backend, named so the stats say so."""
    if backend == "dsp":
        keys = [k for k in AXIS_THRESHOLDS.values() if getattr(params, k) is not None]
    else:
        keys = ["min_dsp_score"] if params.min_dsp_score is not None else []
    return {"ignored_thresholds": keys} if keys else {}
