"""Load and validate a run configuration before any work starts.

YAML layout::

    run:        {chunk_size, sample_rate, seed, stages: [ingest, duration, ...]}
    executor:   {name: ray|local, address, num_cpus, max_inflight}
    dataset:    {name, licence, description}
    stages:     {<stage name>: {<setting>: value}}   # each validated by the stage's Params

Anything unknown, mistyped or out of range raises ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import yaml

from stages import ORDER, stage_class
from stages.base import ConfigError, Params


@dataclass
class RunSettings:
    chunk_size: int = 256
    sample_rate: int = 16000
    seed: int = 0
    stages: list[str] = field(default_factory=lambda: ["ingest", "duration", "silence"])
    allow_media_outside_root: bool = False  # rows whose video resolves outside --media-root are refused


@dataclass
class ExecutorSettings:
    name: str = "ray"
    address: str | None = None
    num_cpus: int | None = None
    max_inflight: int = 0  # 0 = twice the cluster's CPUs
    max_attempts: int = 2  # tries of a clip whose worker dies (crash, OOM, preemption) before it is failed
    clip_timeout_s: float = 0.0  # a clip measured longer than this fails with "timed out"; 0 = no limit


@dataclass
class DatasetSettings:
    name: str = "binaural-dataset"
    licence: str = "unspecified (inherits the licences of the source videos)"
    description: str = ""


@dataclass
class Config:
    run: RunSettings
    executor: ExecutorSettings
    dataset: DatasetSettings
    stage_params: dict[str, Params]
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "run": dataclasses.asdict(self.run),
            "executor": dataclasses.asdict(self.executor),
            "dataset": dataclasses.asdict(self.dataset),
            "stages": {n: dataclasses.asdict(p) for n, p in self.stage_params.items()},
        }


TOP_LEVEL = {"run", "executor", "dataset", "stages"}


def _section(cls, data, where: str):
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**data)


def load_config(path: str | None, overrides: dict | None = None) -> Config:
    """Read YAML (or defaults when path is None), apply overrides, validate everything."""
    data: dict = {}
    if path:
        if not os.path.exists(path):
            raise ConfigError(f"config file {path!r} does not exist")
        try:
            with open(path) as fh:
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    for key, value in (overrides or {}).items():
        *parents, name = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[name] = value
    unknown = sorted(set(data) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level section(s) {unknown}; known: {sorted(TOP_LEVEL)}")
    run = _section(RunSettings, data.get("run"), "run")
    executor = _section(ExecutorSettings, data.get("executor"), "executor")
    dataset = _section(DatasetSettings, data.get("dataset"), "dataset")
    _check_run(run)
    if not isinstance(executor.max_attempts, int) or isinstance(executor.max_attempts, bool) or executor.max_attempts < 1:
        raise ConfigError(f"executor.max_attempts: an integer >= 1, got {executor.max_attempts!r}")
    if not isinstance(executor.clip_timeout_s, (int, float)) or executor.clip_timeout_s < 0:
        raise ConfigError(f"executor.clip_timeout_s: seconds >= 0 (0 = no limit), got {executor.clip_timeout_s!r}")
    if executor.name not in ("ray", "local"):
        raise ConfigError(f"executor.name: {executor.name!r} is not one of ray, local")
    stages_data = data.get("stages") or {}
    if not isinstance(stages_data, dict):
        raise ConfigError("stages: expected a mapping of stage name to settings")
    unknown = sorted(set(stages_data) - set(ORDER))
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {unknown}; known: {list(ORDER)}")
    params = {}
    for name in run.stages:
        params[name] = stage_class(name).params_from(stages_data.get(name))
    return Config(run=run, executor=executor, dataset=dataset, stage_params=params, source=path or "")


def _check_run(run: RunSettings) -> None:
    if not isinstance(run.chunk_size, int) or run.chunk_size < 1:
        raise ConfigError(f"run.chunk_size: must be a positive integer, got {run.chunk_size!r}")
    if run.sample_rate != 16000:
        raise ConfigError("run.sample_rate: the models and metrics are defined at 16000 Hz")
    if not isinstance(run.stages, list) or not run.stages:
        raise ConfigError("run.stages: must be a non-empty list of stage names")
    for name in run.stages:
        if name not in ORDER:
            raise ConfigError(f"run.stages: unknown stage {name!r}; known: {list(ORDER)}")
    positions = [ORDER.index(n) for n in run.stages]
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise ConfigError(f"run.stages: stages must appear once each in pipeline order {list(ORDER)}")
    if not isinstance(run.allow_media_outside_root, bool):
        raise ConfigError(f"run.allow_media_outside_root: true or false, got {run.allow_media_outside_root!r}")
    if run.stages[0] != "ingest":
        raise ConfigError("run.stages: the first stage must be ingest")


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
