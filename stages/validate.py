"""validate: binaural metrics per clip, a task stage the executor spreads over the cluster.

`itd_within_head` checks the clip's broadband ITD against the largest one the run's head (`spatial.hrir`)
produces (at +-90 degrees): an ITD beyond it cannot come from a source in front of that listener.

Per clip (the row's binaural_path from convert and its traj_path from localize, which may be absent
-> lateral_agree null): iacc, ild_db, itd_ms, isd_db, ipd_rad, lateral_agree (definitions in
binauralizer/metrics.py), the signed broadband ILD / ITD and the number of lateral segments, and the
quality of the binaural downmix ((L+R)/2) as `downmix_*` columns.

The downmix is scored by the backend that scored the source (`downmix_quality: auto`), so the report
compares like with like: the dsp scorer (audioquality.dsp) or Audiobox Aesthetics with the checkpoint
the quality stage resolved. The preflight decides the backend before any work and records why when
it cannot score (`downmix_skipped`); the report and card (output/publish.py, a run-level step after
the funnel) are built from these rows.
"""

from __future__ import annotations

import numpy as np

from binauralizer import metrics as M
from manifests.schema import DOWNMIX_SCORES
from stages.base import ConfigError, Params, Stage, StageError, settings
from stages.clipdata import artifact, read_artifact

COLUMNS = ("iacc", "ild_db", "itd_ms", "isd_db", "ipd_rad", "lateral_agree")
DETAIL_COLUMNS = ("ild_broadband_db", "itd_broadband_ms", "lateral_segments", "itd_within_head")
DOWNMIX_COLUMNS = tuple(f"downmix_{k}" for k in DOWNMIX_SCORES)
DOWNMIX_MODES = ("auto", "dsp", "audiobox", "off")


@settings
class ValidateParams(Params):
    report_clips: int = 4  # clips whose ILD traces the report shows
    licence: str = ""  # empty: dataset.licence from the run's config
    segment_s: float = M.SEGMENT_S
    centre_deg: float = M.CENTRE_DEG
    downmix_quality: str = "auto"  # auto | dsp | audiobox | off

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


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


class ValidateStage(Stage):
    name = "validate"
    version = "2"
    Params = ValidateParams
    kind = "task"
    data_deps = ("localize", "convert")
    spatial_keys = ("hrir",)  # the listener's head bounds the ITD a clip can physically have
    reads = ("clip_id", "frame_fps", "binaural_path", "traj_path")
    writes = COLUMNS + DETAIL_COLUMNS + DOWNMIX_COLUMNS

    @classmethod
    def preflight(cls, params: ValidateParams, spatial=None, resolved: dict | None = None) -> dict:
        """Which backend scores the downmix (the source's, for `auto`), or why nothing will."""
        head = {"head_itd_max_ms": M.head_itd_max_ms(spatial.hrir)} if spatial is not None else {}
        return {**head, **cls._downmix_preflight(params, resolved)}

    @staticmethod
    def _downmix_preflight(params: ValidateParams, resolved: dict | None) -> dict:
        mode = params.downmix_quality
        quality = (resolved or {}).get("quality") or {}
        backend = str(quality.get("backend") or "none") if mode == "auto" else mode
        if mode == "off":
            return {"downmix_backend": backend, "downmix_skipped": "downmix_quality is off"}
        if backend == "dsp":
            return {"downmix_backend": "dsp"}
        if backend == "audiobox":
            checkpoint = quality.get("checkpoint")
            if not checkpoint:
                try:
                    from audioquality.audiobox import find_checkpoint

                    checkpoint = str(find_checkpoint(None, allow_download=False))
                except Exception as exc:  # noqa: BLE001 - reported in the table, never fatal
                    return {"downmix_backend": "audiobox",
                            "downmix_skipped": f"audiobox scorer unavailable: {type(exc).__name__}: {exc}"}
            return {"downmix_backend": "audiobox", "downmix_checkpoint": str(checkpoint)}
        return {"downmix_backend": backend, "downmix_skipped": f"no scorer for backend {backend!r}"}

    def setup(self) -> None:
        resolved = (self.ctx.extra.get("preflight") or {}).get(self.name) or {}
        self.downmix_backend = resolved.get("downmix_backend", "none")
        self.scorer = None
        if resolved.get("downmix_skipped"):
            return
        if self.downmix_backend == "dsp":
            from audioquality.dsp import dsp_scores

            self.scorer = dsp_scores
        elif self.downmix_backend == "audiobox":
            from audioquality.audiobox import AudioboxScorer

            model = AudioboxScorer(resolved["downmix_checkpoint"], num_threads=1)
            self.scorer = lambda wav: {f"aes_{k.lower()}": v for k, v in model.score([wav])[0].items()}

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

    def measure_one(self, row: dict) -> dict:
        try:
            full = self.clip_metrics(row)
        except (StageError, OSError, ValueError) as exc:
            raise StageError(f"validate: {exc}") from None
        out = {c: _finite_or_none(full.get(c)) for c in COLUMNS + DETAIL_COLUMNS}
        head_max = ((self.ctx.extra.get("preflight") or {}).get(self.name) or {}).get("head_itd_max_ms")
        itd = out["itd_broadband_ms"]
        # one sample of slack: GCC-PHAT peaks are integer lags at the pipeline rate
        out["itd_within_head"] = None if head_max is None or itd is None else bool(
            abs(itd) <= head_max + 1000.0 / self.ctx.sample_rate)
        scores = {}
        if getattr(self, "scorer", None) is not None:
            binaural, _ = self._load(row)
            scores = self.scorer(binaural.astype(np.float32).mean(axis=0))
        out.update({f"downmix_{k}": _finite_or_none(scores.get(k)) for k in DOWNMIX_SCORES})
        return out
