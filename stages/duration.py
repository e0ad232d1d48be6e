"""duration: drop clips shorter than the minimum; cut longer ones into exact windows.

The decision reads `n_samples` from ingest, so it never decodes. With `windows: first` a clip keeps
its id and its first window; with `windows: all` every full window becomes a clip `{id}_w{k}`.
Windows are exact to the sample (window_seconds * sample_rate samples). A clip short of a window by
at most `tolerance_seconds` (containers often report 9.98 s for a 10 s clip) is kept and zero-padded,
and `padded_samples` says by how much.
"""

from __future__ import annotations


from stages.base import settings, DROPPED, KEPT, ConfigError, Params, Stage


@settings
class DurationParams(Params):
    min_seconds: float = 10.0
    window_seconds: float = 10.0
    windows: str = "first"  # first | all
    tolerance_seconds: float = 0.0

    def validate(self) -> None:
        if self.windows not in ("first", "all"):
            raise ConfigError(f"stages.duration.windows: must be 'first' or 'all', got {self.windows!r}")
        if self.window_seconds <= 0 or self.min_seconds < 0:
            raise ConfigError("stages.duration: window_seconds must be > 0 and min_seconds >= 0")
        if not 0 <= self.tolerance_seconds < self.window_seconds:
            raise ConfigError("stages.duration.tolerance_seconds: must be in [0, window_seconds)")


class DurationStage(Stage):
    name = "duration"
    version = "1"
    Params = DurationParams
    decision_keys = ("min_seconds",)
    data_deps = ("ingest",)
    reads = ("n_samples",)
    writes = ("window_index", "window_start", "window_samples", "padded_samples")
    kind = "task"

    def _samples(self, seconds: float) -> int:
        return int(round(seconds * self.ctx.sample_rate))

    def decide(self, row: dict) -> tuple[str, str]:
        n = int(row.get("n_samples") or 0)
        need = max(self._samples(self.params.min_seconds), self._samples(self.params.window_seconds))
        if n + self._samples(self.params.tolerance_seconds) < need:
            sr = self.ctx.sample_rate
            return DROPPED, f"too short: {n / sr:.2f} s < {need / sr:g} s"
        return KEPT, ""

    def expand(self, row: dict) -> list[dict]:
        n = int(row["n_samples"])
        win = self._samples(self.params.window_seconds)
        count = max(1, n // win)
        if n % win and n % win + self._samples(self.params.tolerance_seconds) >= win:
            count += 1  # the last window is within tolerance of full length
        if self.params.windows == "first":
            count = 1
        out = []
        for k in range(count):
            start = k * win
            clip_id = row["clip_id"] if self.params.windows == "first" else f"{row['source_id']}_w{k}"
            out.append({
                **row,
                "clip_id": clip_id,
                "window_index": k,
                "window_start": start,
                "window_samples": win,
                "padded_samples": max(0, start + win - n),
            })
        return out
