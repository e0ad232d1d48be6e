"""The stage contract: what every stage declares and the two calls the runner makes.

A stage never knows which executor runs it. The runner hands it batches of manifest rows
(plain dicts); the stage *measures* (expensive, cached by a fingerprint of only the settings
that change the measurement) and then *decides* (cheap, re-run whenever a threshold changes).
Splitting the two is what lets `--only silence` with a new threshold re-decide without decoding.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

log = logging.getLogger("pipeline.stages")

KEPT, DROPPED, FAILED = "kept", "dropped", "failed"
STATUSES = (KEPT, DROPPED, FAILED)


@dataclass(frozen=True)
class Resources:
    """What one worker of this stage needs; the executor turns this into Ray options."""

    cpus: float = 1.0
    gpus: float = 0.0  # fractional allowed: 0.25 packs four actors on one GPU
    memory_gb: float = 0.0  # 0 = no reservation


class StageError(Exception):
    """A per-clip problem that becomes a `failed` row with this message as its reason."""


class ConfigError(ValueError):
    """Malformed configuration: raised before any work starts."""


@dataclass
class Params:
    """Base for a stage's settings. Subclass as a dataclass; fields are the YAML keys."""

    def validate(self) -> None:  # override to check ranges; raise ConfigError naming the key
        return None


class Stage:
    """One step of the pipeline.

    Class attributes a stage sets:
      name           -- the YAML section and folder name
      version        -- bump when code changes results; part of the fingerprint
      Params         -- dataclass of settings (defaults live here)
      decision_keys  -- settings that only affect `decide` (changing them never re-measures)
      data_deps      -- stages whose *work files* this stage reads (their measure fingerprints
                        key this stage's measurement cache)
      reads, writes  -- manifest columns consumed and produced (documentation + checks)
      kind           -- "task" (CPU, a chunk per Ray task), "actor" (model loaded once per
                        actor, batches across chunks) or "global" (sees all kept rows at once)
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type] = Params
    decision_keys: ClassVar[tuple[str, ...]] = ()
    data_deps: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = "task"
    # Set by the runner while a global stage runs: progress(done, total, unit, **values), e.g. training steps.
    progress: Any = None

    def __init__(self, params: Params, ctx: "RunContext"):
        self.params = params
        self.ctx = ctx

    # -- resources -------------------------------------------------------------------------
    def resources(self) -> Resources:
        """Default: one CPU. Model stages read `num_gpus` / `num_cpus` from their params."""
        p = self.params
        return Resources(
            cpus=float(getattr(p, "num_cpus", 1.0)),
            gpus=float(getattr(p, "num_gpus", 0.0)),
        )

    def batch_size(self) -> int:
        return int(getattr(self.params, "batch_size", 0) or 0)

    # -- lifecycle --------------------------------------------------------------------------
    def setup(self) -> None:
        """Load models once per worker (actor). Called before the first `measure`."""

    def measure(self, rows: list[dict]) -> list[dict]:
        """Return one dict of measurement columns per input row, in order.

        A row that cannot be measured returns `{"_error": "readable reason"}`. The default calls
        `measure_one` per row and turns its exceptions into reasons; batch stages (models) override.
        """
        return [self._measure_guarded(row) for row in rows]

    def measure_one(self, row: dict) -> dict:
        """One row's measurement columns; raise StageError("readable reason") for bad input."""
        return {}

    def _measure_guarded(self, row: dict) -> dict:
        try:
            return self.measure_one(row)
        except (StageError, ValueError, OSError) as exc:  # bad or missing input: its own words
            return {"_error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one clip must not fail the batch
            log.exception("%s: clip %s failed", self.name, row.get("clip_id"))
            return {"_error": f"{type(exc).__name__}: {exc}"}

    def decide(self, row: dict) -> tuple[str, str]:
        """(status, reason) from a row that already holds this stage's measurements."""
        return KEPT, ""

    def expand(self, row: dict) -> list[dict]:
        """Kept rows may become several (duration windows). Default: unchanged."""
        return [row]

    # -- global stages ------------------------------------------------------------------------
    def run_global(self, rows: list[dict]) -> list[dict]:
        """For kind == "global": all kept rows in, one measurement dict per row out."""
        raise NotImplementedError

    def finalize(self) -> None:
        """Called after the run's stats.json (the funnel) is written: reports that quote it."""

    # -- helpers ------------------------------------------------------------------------------
    @classmethod
    def params_from(cls, section: dict | None) -> Params:
        """Build and validate Params from a YAML section; unknown keys are errors."""
        section = dict(section or {})
        known = {f.name for f in dataclasses.fields(cls.Params)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(
                f"stages.{cls.name}: unknown setting(s) {unknown}; known: {sorted(known)}"
            )
        try:
            params = cls.Params(**section)
        except TypeError as exc:  # pragma: no cover - dataclass signature errors
            raise ConfigError(f"stages.{cls.name}: {exc}") from exc
        _check_types(cls.name, params)
        _check_resources(cls.name, params)
        params.validate()
        return params

    def measure_settings(self) -> dict[str, Any]:
        """The settings that change measurements: all but decision keys and resources."""
        skip = set(self.decision_keys) | RESOURCE_KEYS  # a stage whose results depend on one overrides this
        return {k: v for k, v in dataclasses.asdict(self.params).items() if k not in skip}

    def decision_settings(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.params)
        return {k: d[k] for k in self.decision_keys if k in d}


# Settings that change where/how fast a stage runs, never its results: excluded from fingerprints.
RESOURCE_KEYS = {"num_cpus", "num_gpus", "batch_size", "num_actors", "num_workers"}


def _check_types(stage: str, params: Params) -> None:
    """Reject obviously wrong YAML types (a string where a number belongs) before any work."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise ConfigError(
                f"stages.{stage}.{f.name}: expected {type(default).__name__}, "
                f"got {type(value).__name__} {value!r}"
            )


def _check_resources(stage: str, params: Params) -> None:
    """The resource settings every stage may have, checked once here for all of them."""
    bounds = {"num_gpus": (0, ">= 0"), "num_cpus": (1e-9, "> 0"), "batch_size": (1, ">= 1"), "num_actors": (0, ">= 0")}
    for key, (low, text) in bounds.items():
        value = getattr(params, key, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
            raise ConfigError(f"stages.{stage}.{key}: must be {text}, got {value!r}")


@dataclass
class RunContext:
    """What a stage may know about the run: folders and global settings. Picklable."""

    out: str
    media_root: str = ""
    sample_rate: int = 16000
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def work(self) -> str:
        return f"{self.out}/work"

    def work_dir(self, stage: str, clip_id: str | None = None) -> str:
        import os

        path = os.path.join(self.work, stage) if clip_id is None else os.path.join(
            self.work, stage, clip_id
        )
        os.makedirs(path, exist_ok=True)
        return path
