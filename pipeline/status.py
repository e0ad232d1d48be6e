"""`status`: which (stage, chunk) pairs are done for the run folder's current configuration."""

from __future__ import annotations

import json
import os

from manifests.io import chunk_name, read_marker
from pipeline.config import load_config
from pipeline.fingerprint import digest, stage_fingerprints
from pipeline.funnel import stage_counts
from stages import stage_class
from stages.base import RunContext


def run_status(out: str) -> dict:
    out = os.path.abspath(out)
    config_path, input_path = os.path.join(out, "config.yaml"), os.path.join(out, "input.json")
    if not os.path.exists(config_path) or not os.path.exists(input_path):
        raise FileNotFoundError(f"{out} is not a run folder (no config.yaml / input.json): run `build` first")
    config = load_config(config_path)
    with open(input_path) as fh:
        inputs = json.load(fh)
    ctx = RunContext(out=out, seed=config.run.seed, spatial=config.spatial)
    stages = [stage_class(n)(config.stage_params[n], ctx) for n in config.run.stages]
    preflight = {}
    if os.path.exists(os.path.join(out, "preflight.json")):
        with open(os.path.join(out, "preflight.json")) as fh:
            preflight = json.load(fh)
    _, fps = stage_fingerprints(stages, config.run.chunk_size, preflight)
    upstream = list(inputs["chunk_digests"])
    report = {"out": out, "input": inputs, "stages": {}}
    for stage in stages:
        markers = [read_marker(os.path.join(out, "completions", stage.name, chunk_name(k) + ".json")) for k in range(len(upstream))]
        if stage.kind == "global":
            expected = [digest([fps[stage.name], upstream])] * len(upstream)
        else:
            expected = [digest([fps[stage.name], u]) for u in upstream]
        done = [bool(m) and m.get("fingerprint") == e for m, e in zip(markers, expected)]
        stale = sum(1 for m, d in zip(markers, done) if m and not d)
        report["stages"][stage.name] = {
            "chunks": len(upstream), "done": sum(done), "stale": stale, **stage_counts(out, stage.name, len(upstream)),
        }
        upstream = [m.get("fingerprint", "") if m else "" for m in markers]
    return report


def format_status(report: dict) -> str:
    lines = [f"run folder: {report['out']}", f"input: {report['input']['input']} ({report['input']['rows']} rows, {report['input']['rejected']} rejected)"]
    lines.append(f"{'stage':<12}{'chunks done':>12}{'stale':>7}{'kept':>8}{'dropped':>9}{'failed':>8}")
    for name, s in report["stages"].items():
        lines.append(
            f"{name:<12}{str(s['done']) + '/' + str(s['chunks']):>12}{s['stale']:>7}{s['kept']:>8}"
            f"{sum(s['dropped'].values()):>9}{sum(s['failed'].values()):>8}"
        )
    return "\n".join(lines)
