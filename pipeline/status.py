"""`status`: is a build running on the run folder now, what is done and pending per stage, is it complete.

Done and pending are judged against the run folder's current settings (its config.yaml): a chunk
counts as done only when its completion marker carries the fingerprint a build would expect now.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque

from manifests.io import chunk_name, read_marker
from pipeline.config import load_config
from pipeline.fingerprint import digest, stage_fingerprints
from pipeline.funnel import stage_counts
from pipeline.lock import lock_holder
from stages import stage_class
from stages.base import RunContext


def run_status(out: str) -> dict:
    from pipeline.storage import RemoteRun, is_remote, local_path

    if is_remote(out):  # an object-store OUT: its small files, read from a temporary copy
        import tempfile

        from pipeline.storage import describe_error
        from stages.base import ConfigError

        try:
            remote = RemoteRun(out)
        except ConfigError as exc:  # a missing backend: not a config.yaml problem
            raise FileNotFoundError(str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="binauralize-status-") as copy:
            try:
                remote.snapshot(copy)
            except Exception as exc:  # noqa: BLE001 - credentials, endpoint, bucket: said by name
                raise FileNotFoundError(describe_error(exc, remote.url)) from None
            if not os.path.exists(os.path.join(copy, "config.yaml")):
                raise FileNotFoundError(f"{remote.url} is not a run folder (no config.yaml / input.json): run `build` first")
            report = run_status(copy)
        report["out"] = remote.url
        report["running"] = None  # the build's lock lives in its stage directory, on the machine running it
        return report
    out = local_path(out)
    holder = lock_holder(out)
    config_path, input_path = os.path.join(out, "config.yaml"), os.path.join(out, "input.json")
    if not os.path.exists(config_path) or not os.path.exists(input_path):
        if holder is not None:  # a build that has not written its header yet
            return {"out": out, "running": _running(holder), "stages": {}, "complete": False,
                    "last_log": _last_log_line(out)}
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
    report = {"out": out, "input": inputs, "running": _running(holder), "stages": {}}
    for stage in stages:
        markers = [read_marker(os.path.join(out, "completions", stage.name, chunk_name(k) + ".json")) for k in range(len(upstream))]
        if stage.kind == "global":
            expected = [digest([fps[stage.name], upstream])] * len(upstream)
        else:
            expected = [digest([fps[stage.name], u]) for u in upstream]
        done = [bool(m) and m.get("fingerprint") == e for m, e in zip(markers, expected)]
        stale = sum(1 for m, d in zip(markers, done) if m and not d)
        counts = stage_counts(out, stage.name, len(upstream))  # never counts chunks of an earlier input
        counts.pop("chunks", None)  # manifest files on disk, not the chunks this run has
        report["stages"][stage.name] = {
            "chunks": len(upstream), "done": sum(done), "pending": len(upstream) - sum(done), "stale": stale,
            **counts,
        }
        upstream = [m.get("fingerprint", "") if m else "" for m in markers]
    report["complete"] = all(s["pending"] == 0 for s in report["stages"].values())
    report["last_log"] = _last_log_line(out)
    return report


def _running(holder: dict | None) -> dict | None:
    if holder is None:
        return None
    since = holder.get("started_unix")
    return {**holder, "for_s": round(time.time() - since, 1) if isinstance(since, (int, float)) else None}


def _last_log_line(out: str) -> str | None:
    path = os.path.join(out, "logs", "build.log")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            last = deque((line.rstrip("\n") for line in fh if line.strip()), maxlen=1)
    except OSError:
        return None
    return last[0] if last else None


def _state_line(report: dict) -> str:
    running = report.get("running")
    if running:
        who = f"pid {running.get('pid', '?')} on {running.get('host', '?')}"
        since = running.get("started", "?")
        age = running.get("for_s")
        return f"state: RUNNING ({who}, since {since}" + (f", {age / 60:.1f} min ago)" if age is not None else ")")
    if report.get("complete"):
        return "state: complete (no build running; every stage done for the current settings)"
    pending = [n for n, s in report["stages"].items() if s["pending"]]
    first = pending[0] if pending else "?"
    return (f"state: incomplete, no build running ({len(pending)} stage(s) with pending chunks, first: {first}); "
            "rerun the same build command to resume")


def format_status(report: dict) -> str:
    lines = [f"run folder: {report['out']}", _state_line(report)]
    if report.get("input"):
        lines.append(f"input: {report['input']['input']} ({report['input']['rows']} rows, "
                     f"{report['input']['rejected']} rejected)")
    if report["stages"]:
        lines.append(f"{'stage':<16}{'chunks done':>12}{'pending':>9}{'stale':>7}{'kept':>8}{'dropped':>9}{'failed':>8}")
    for name, s in report["stages"].items():
        lines.append(
            f"{name:<16}{str(s['done']) + '/' + str(s['chunks']):>12}{s['pending']:>9}{s['stale']:>7}{s['kept']:>8}"
            f"{sum(s['dropped'].values()):>9}{sum(s['failed'].values()):>8}"
        )
    if report.get("last_log"):
        lines.append(f"last log line: {report['last_log']}")
    return "\n".join(lines)
