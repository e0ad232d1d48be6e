"""Load and validate a run configuration before any work starts.

YAML layout::

    run:        {chunk_size, seed, stages: [ingest, duration, ...]}   # stages run in this order
    executor:   {name: ray|local, address, num_cpus, max_inflight}
    dataset:    {name, licence, description}
    spatial:    {hrir, fov_deg, vfov_deg, sh_order, decoder}         # shared by every spatial stage
    stages:     {<stage name>: {<setting>: value}}                     # each a stage's Params model

Every section is a pydantic model: anything unknown, mistyped or out of range raises ConfigError
naming its YAML path (`stages.silence.max_silent_fraction`) and, for a misspelt name, the closest
valid one. The sample rate is not a setting (binauralizer.constants.SAMPLE_RATE).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import yaml

from binauralizer.constants import SAMPLE_RATE
from stages import ORDER, stage_class
from stages.base import ConfigError, Params, Spatial, build_settings, closest, settings

log = logging.getLogger("pipeline")

EXECUTORS = ("ray", "local")


@settings
class RunSettings:
    chunk_size: int = 256
    seed: int = 0
    stages: list[str] = dataclasses.field(default_factory=lambda: ["ingest", "duration", "silence"])
    allow_media_outside_root: bool = False  # rows whose video resolves outside --media-root are refused


@settings
class ExecutorSettings:
    name: str = "ray"
    address: str | None = None
    num_cpus: int | None = None
    max_inflight: int = 0  # 0 = twice the cluster's CPUs
    max_attempts: int = 2  # tries of a clip whose worker dies (crash, OOM, preemption) before it is failed
    clip_timeout_s: float = 0.0  # a clip measured longer than this fails with "timed out"; 0 = no limit


@settings
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
    spatial: Spatial = dataclasses.field(default_factory=Spatial)
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "run": dataclasses.asdict(self.run),
            "executor": dataclasses.asdict(self.executor),
            "dataset": dataclasses.asdict(self.dataset),
            "spatial": dataclasses.asdict(self.spatial),
            "stages": {n: dataclasses.asdict(p) for n, p in self.stage_params.items()},
        }


TOP_LEVEL = ("run", "executor", "dataset", "spatial", "stages")
# Settings the split of shard into package (per clip) + shard (packing) moved: old key -> new section
MOVED_TO_PACKAGE = ("video", "video_crf", "video_preset", "video_threads", "mp4_audio", "copy_tolerance_s",
                    "flac_subtype", "default_split", "timeout_s")
# Settings that went (the executor parallelises that work now): stage -> keys, ignored with a warning
RETIRED = {"validate": ("num_workers", "downmix_max_clips"), "shard": ("num_workers",)}
# Settings that moved into `spatial:` (old YAML keeps working): (stage, old key) -> spatial key
MOVED_TO_SPATIAL = {
    ("localize", "fov_deg"): "fov_deg", ("localize", "vfov_deg"): "vfov_deg",
    ("train_unet", "hrir"): "hrir", ("convert", "hrir"): "hrir",
    ("convert", "sh_order"): "sh_order", ("convert", "decoder"): "decoder",
}


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
    for key in data:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{key}: unknown top-level section{closest(key, TOP_LEVEL)}; known: {list(TOP_LEVEL)}")
    run_data = dict(data.get("run") or {}) if isinstance(data.get("run"), dict) else data.get("run")
    if isinstance(run_data, dict) and "sample_rate" in run_data:  # the key went: the rate is a constant
        if run_data.pop("sample_rate") != SAMPLE_RATE:
            raise ConfigError(f"run.sample_rate: the models and metrics are defined at {SAMPLE_RATE} Hz; "
                              "remove the key (the rate is not a setting)")
    run = build_settings(RunSettings, run_data, "run")
    executor = build_settings(ExecutorSettings, data.get("executor"), "executor")
    dataset = build_settings(DatasetSettings, data.get("dataset"), "dataset")
    stages_data = data.get("stages") or {}
    if not isinstance(stages_data, dict):
        raise ConfigError("stages: expected a mapping of stage name to settings")
    _upgrade_sections(run, stages_data)
    _check_run(run)
    if not isinstance(executor.max_attempts, int) or isinstance(executor.max_attempts, bool) or executor.max_attempts < 1:
        raise ConfigError(f"executor.max_attempts: an integer >= 1, got {executor.max_attempts!r}")
    if not isinstance(executor.clip_timeout_s, (int, float)) or executor.clip_timeout_s < 0:
        raise ConfigError(f"executor.clip_timeout_s: seconds >= 0 (0 = no limit), got {executor.clip_timeout_s!r}")
    if executor.name not in EXECUTORS:
        raise ConfigError(f"executor.name: {executor.name!r} is not one of {', '.join(EXECUTORS)}"
                          f"{closest(executor.name, EXECUTORS)}")
    for name in stages_data:
        if name not in ORDER:
            raise ConfigError(f"stages.{name}: unknown stage{closest(name, ORDER)}; known: {list(ORDER)}")
    spatial_data = _spatial_section(data.get("spatial"), stages_data)
    spatial = build_settings(Spatial, spatial_data, "spatial")
    spatial.validate()
    params = {}
    for name in [*run.stages, *(n for n in stages_data if n not in run.stages)]:  # every given section is checked
        params[name] = stage_class(name).params_from(stages_data.get(name))
    params = {name: params[name] for name in run.stages}
    for name in run.stages:  # checks that need the run's stage list (a model trained by an earlier stage)
        check = getattr(stage_class(name), "check_run", None)
        if check is not None:
            check(params[name], list(run.stages))
    return Config(run=run, executor=executor, dataset=dataset, stage_params=params, spatial=spatial,
                  source=path or "")


def _upgrade_sections(run: RunSettings, stages_data: dict) -> None:
    """YAML written before package existed: package runs before shard and takes its media settings."""
    if "shard" in run.stages and "package" not in run.stages:
        run.stages.insert(run.stages.index("shard"), "package")
        log.warning("run.stages: added package before shard (the per-clip half of the old shard stage)")
    shard = stages_data.get("shard")
    if isinstance(shard, dict) and any(k in shard for k in MOVED_TO_PACKAGE):
        shard, package = dict(shard), dict(stages_data.get("package") or {})
        for key in MOVED_TO_PACKAGE:
            if key in shard:
                package.setdefault(key, shard.pop(key))
                log.warning("stages.shard.%s is now stages.package.%s", key, key)
        stages_data["shard"], stages_data["package"] = shard, package
    for stage, keys in RETIRED.items():
        section = stages_data.get(stage)
        if isinstance(section, dict) and any(k in section for k in keys):
            stages_data[stage] = {k: v for k, v in section.items() if k not in keys}
            log.warning("stages.%s: %s no longer exist(s) (the executor spreads the work); ignored",
                        stage, [k for k in keys if k in section])


def _spatial_section(spatial, stages_data: dict) -> dict:
    """The spatial section, with settings an older YAML gave per stage moved into it.

    Conflicting values (two stages naming different HRIR sets) are an error: one run, one listener.
    """
    if spatial is not None and not isinstance(spatial, dict):
        raise ConfigError(f"spatial: expected a mapping, got {type(spatial).__name__}")
    merged = dict(spatial or {})
    origin = {k: f"spatial.{k}" for k in merged}
    for (stage, old), key in MOVED_TO_SPATIAL.items():
        section = stages_data.get(stage)
        if not isinstance(section, dict) or old not in section:
            continue
        section = stages_data[stage] = dict(section)
        value = section.pop(old)
        where = f"stages.{stage}.{old}"
        if key in merged and merged[key] != value:
            raise ConfigError(f"{where} = {value!r} disagrees with {origin[key]} = {merged[key]!r}: the run has one "
                              f"spatial.{key}; set it once under spatial:")
        log.warning("%s is now spatial.%s (one setting for every spatial stage)", where, key)
        merged.setdefault(key, value)
        origin.setdefault(key, where)
    return merged


def _check_run(run: RunSettings) -> None:
    if run.chunk_size < 1:
        raise ConfigError(f"run.chunk_size: must be a positive integer, got {run.chunk_size!r}")
    if not run.stages:
        raise ConfigError("run.stages: must be a non-empty list of stage names")
    if "render" in run.stages:
        raise ConfigError("run.stages: the render stage is now convert's mode `sh` (or `direct`): list convert "
                          "once and set stages.convert.mode: sh")
    for name in run.stages:
        if name not in ORDER:
            raise ConfigError(f"run.stages: unknown stage {name!r}{closest(name, ORDER)}; known: {list(ORDER)}")
    if len(set(run.stages)) != len(run.stages):
        raise ConfigError(f"run.stages: each stage may appear once, got {run.stages}")
    if run.stages[0] != "ingest":
        raise ConfigError("run.stages: the first stage must be ingest")
    converters = [n for n in run.stages if "binaural_path" in stage_class(n).writes]
    if len(converters) > 1:
        raise ConfigError(f"run.stages: {converters} all write binaural_path; a run has one conversion stage "
                          "(pick a mode of convert: unet, direct, sh, mono)")
    _check_order(run.stages)


def _check_order(names: list[str]) -> None:
    """Each stage after the stages whose files it reads (its data_deps) when they run too."""
    for position, name in enumerate(names):
        for dep in stage_class(name).data_deps:
            if dep in names and names.index(dep) > position:
                raise ConfigError(f"run.stages: {name} reads {dep}'s files, so {dep} must come before it")


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
