"""Stage registry: the canonical order of the pipeline and where each stage lives.

Imports are lazy (``module:Class`` strings) so that the CLI, the runner and Ray workers import only
the stages a run uses: the model stages pull in torch, the CPU ones do not.
"""

from __future__ import annotations

import importlib
import os

REGISTRY: dict[str, str] = {
    "ingest": "stages.ingest:IngestStage",
    "duration": "stages.duration:DurationStage",
    "silence": "stages.silence:SilenceStage",
    "quality": "stages.quality:QualityStage",
    "train_localizer": "stages.train_localizer:TrainLocalizerStage",
    "localize": "stages.localize:LocalizeStage",
    "train_unet": "stages.train_unet:TrainUNetStage",
    "convert": "stages.convert:ConvertStage",
    "validate": "stages.validate:ValidateStage",
    "package": "stages.package:PackageStage",
    "shard": "stages.shard:ShardStage",
}
# Plug-in stages: BINAURALIZE_EXTRA_STAGES="name=package.module:Class,..." appends stages after the
# built-in ones (Ray workers inherit the variable on a local cluster; set it cluster-wide otherwise).
for _entry in filter(None, os.environ.get("BINAURALIZE_EXTRA_STAGES", "").split(",")):
    _name, _, _target = _entry.partition("=")
    REGISTRY[_name.strip()] = _target.strip()
ORDER = tuple(REGISTRY)


def stage_class(name: str):
    if name not in REGISTRY:
        raise KeyError(f"unknown stage {name!r}; known stages: {', '.join(ORDER)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
