"""The stage contract: what every stage declares and the two calls the runner makes.

A stage never knows which executor runs it. The runner hands it batches of manifest rows
(plain dicts); the stage *measures* (expensive, cached by a fingerprint of only the settings
that change the measurement) and then *decides* (cheap, re-run whenever a threshold changes).
Splitting the two is what lets `--only silence` with a new threshold re-decide without decoding.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from binauralizer.constants import SAMPLE_RATE

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


# Settings are pydantic models (in dataclass form, so dataclasses.asdict / fields keep working):
# strict types (no "yes" for a bool, no string for a number) and no unknown keys.
SETTINGS_CONFIG = ConfigDict(extra="forbid", strict=True)


def settings(cls):
    """Decorator for a settings class (a stage's Params, a run-level section): a pydantic model."""
    return _pydantic_dataclass(cls, config=SETTINGS_CONFIG)


def closest(name: str, known) -> str:
    """' (did you mean X?)' for a near miss among `known`, else ''."""
    match = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def config_error(exc: ValidationError, where: str, known) -> ConfigError:
    """A pydantic error as a ConfigError naming the YAML path of each problem."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err.get("loc", ()))
        path = f"{where}.{key}" if key else where
        if err.get("type") in ("unexpected_keyword_argument", "extra_forbidden"):
            problems.append(f"{path}: unknown setting{closest(key, known)}; known: {sorted(known)}")
        else:
            value = err.get("input")
            problems.append(f"{path}: {err.get('msg', 'invalid')}, got {type(value).__name__} {value!r}")
    return ConfigError("; ".join(problems))


def build_settings(cls, section, where: str):
    """Settings from a YAML mapping: ConfigError naming `where.<key>` for any problem."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(section).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    try:
        return cls(**section)
    except ValidationError as exc:
        raise config_error(exc, where, known) from None
    except TypeError as exc:  # e.g. a non-string key
        raise ConfigError(f"{where}: {exc}") from None


@settings
class Params:
    """Base for a stage's settings. Subclass with @settings; fields are the YAML keys."""

    def validate(self) -> None:  # override to check ranges; raise ConfigError naming the key
        return None


HRIR_SETS = ("kemar", "sonicom-1", "sonicom-2")
DECODERS = ("lsq", "sampling", "magls")


def hrir_preflight(hrir: str) -> dict:
    """Load the run's HRIR set once before any work: a ConfigError naming spatial.hrir when it cannot."""
    from binauralizer.hrir import load_hrirs, resolve_sofa

    try:
        hrirs = load_hrirs(hrir)
    except FileNotFoundError as exc:
        raise ConfigError(f"spatial.hrir {hrir!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - an unreadable SOFA file is a configuration problem
        raise ConfigError(f"spatial.hrir {hrir!r}: cannot read the HRIR set ({type(exc).__name__}: {exc}); "
                          "point it to a SimpleFreeFieldHRIR .sofa file") from None
    return {"hrir": str(resolve_sofa(hrir)), "directions": int(len(hrirs.az_deg)), "source_fs": hrirs.source_fs}


@settings
class Spatial:
    """The run-level `spatial:` section: the listener and the camera every spatial stage shares.

    localize maps picture x to azimuth through the field of view, train_unet's pseudo pairs map
    canvas positions the same way and render through the HRIRs, SH order and decoder, convert
    renders (modes direct / sh) through the same set, and the report and card quote it.
    """

    hrir: str = "kemar"  # kemar (MIT KEMAR, Debian libmysofa1) | sonicom-1 | sonicom-2 | a .sofa path
    fov_deg: float = 120.0  # camera horizontal field of view: az = (W/2 - cx) / W * fov (PseudoBinaural's +-60)
    vfov_deg: float = 90.0  # vertical field of view: el = (H/2 - cy) / H * vfov
    sh_order: int = 1  # spherical-harmonic order of the pseudo-binaural rendering
    decoder: str = "lsq"  # lsq (the paper's) | sampling (PseudoBinaural's code) | magls

    def validate(self) -> None:
        if not self.hrir.strip():
            raise ConfigError(f"spatial.hrir: give a set name {HRIR_SETS} or a .sofa path")
        if not 0 < self.fov_deg <= 360 or not 0 < self.vfov_deg <= 180:
            raise ConfigError("spatial: fov_deg must be in (0, 360] and vfov_deg in (0, 180]")
        if not 1 <= self.sh_order <= 10:
            raise ConfigError(f"spatial.sh_order: expected an integer in 1..10, got {self.sh_order!r}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"spatial.decoder: expected one of {DECODERS}, got {self.decoder!r}{closest(self.decoder, DECODERS)}")


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
      spatial_keys   -- the run-level `spatial:` settings it uses (part of its fingerprint)
      kind           -- "task" (CPU, a chunk per Ray task), "actor" (model loaded once per
                        actor, batches across chunks) or "global" (sees all kept rows at once)
      check_run      -- optional classmethod (params, run_stages): config-time checks that need the
                        run's stage list (localize's learned model needs train_localizer before it)
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type] = Params
    decision_keys: ClassVar[tuple[str, ...]] = ()
    data_deps: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    spatial_keys: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = "task"
    # A global stage that trains on a worker of the executor (a Ray actor with its resources) rather
    # than on the driver: train_localizer. Its progress reaches the driver through the executor.
    on_actor: ClassVar[bool] = False
    # Set by the runner while a global stage runs: progress(done, total, unit, **values), e.g. training steps.
    progress: Any = None
    # Set by the runner while a global stage runs on an object-store OUT: commit(paths, prune=()) uploads
    # finished files in order (markers last) and prunes OUT folders; commit.stored_size(path) is the size
    # of a complete shard tar OUT holds but the stage did not download (pipeline/storage.py); else None.
    commit: Any = None

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


    # -- helpers ------------------------------------------------------------------------------
    @classmethod
    def params_from(cls, section: dict | None) -> Params:
        """Build and validate Params from a YAML section: errors name `stages.<stage>.<key>`."""
        params = build_settings(cls.Params, section, f"stages.{cls.name}")
        _check_resources(cls.name, params)
        params.validate()
        return params

    def spatial_settings(self) -> dict[str, Any]:
        """The run-level spatial settings this stage uses (fingerprinted with its measurements)."""
        return {k: getattr(self.ctx.spatial, k) for k in self.spatial_keys}

    def measure_settings(self) -> dict[str, Any]:
        """The settings that change measurements: all but decision keys and resources."""
        skip = set(self.decision_keys) | RESOURCE_KEYS  # a stage whose results depend on one overrides this
        return {k: v for k, v in dataclasses.asdict(self.params).items() if k not in skip}

    def decision_settings(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.params)
        return {k: d[k] for k in self.decision_keys if k in d}


_DIGESTS: dict = {}


def file_digest(path: str) -> str:
    """sha256 of a file ('absent' when there is none), cached by (path, size, mtime): the identity of a
    model an earlier stage trained, for the settings of the stages that load it."""
    import hashlib
    import os

    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as fh:
            _DIGESTS[key] = hashlib.file_digest(fh, "sha256").hexdigest()
    return _DIGESTS[key]


# Settings that change where/how fast a stage runs, never its results: excluded from fingerprints.
RESOURCE_KEYS = {"num_cpus", "num_gpus", "batch_size", "num_actors", "num_workers", "ddp_workers"}


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
    seed: int = 0
    spatial: Spatial = field(default_factory=Spatial)
    extra: dict = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        """The one pipeline rate (binauralizer.constants.SAMPLE_RATE): not a setting."""
        return SAMPLE_RATE

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
