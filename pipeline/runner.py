"""The runner: chunks the input, runs each stage over the chunks that are not done, writes the funnel.

Per (stage, chunk) it writes `manifests/<stage>/chunk-XXXXX.parquet` (temp file + rename) and then
`completions/<stage>/chunk-XXXXX.json` holding the chunk fingerprint; a chunk is skipped on a rerun
only when that marker matches. Measurements are cached under `work/_measure/<stage>/<measure fp>/`,
keyed by the data a row points at, so a new threshold re-decides without measuring again.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.io import (atomic_write_bytes, atomic_write_json, chunk_name, is_disk_full, read_marker, read_rows,
                          write_rows, write_table)
from manifests.readers import InputManifest, ManifestError, normalise_root, read_input
from pipeline.config import Config, dump_config
from pipeline.executors import StageSpec, make_executor
from pipeline.executors.base import worker_id
from pipeline.fingerprint import digest, row_key, stage_fingerprints
from pipeline import logs
from pipeline.funnel import format_funnel, stage_counts
from pipeline.lock import RunLock
from pipeline.storage import RemoteRun, check_media_root, is_remote, local_path
from stages import stage_class
from stages.base import DROPPED, FAILED, KEPT, ConfigError, RunContext, closest

log = logging.getLogger("pipeline")


@dataclass
class BuildRequest:
    config: Config
    input: str
    out: str
    media_root: str = ""
    executor: str | None = None  # overrides config.executor.name
    from_stage: str | None = None
    only: str | None = None
    force: bool = False
    retry_failed: bool = False
    progress: bool = True
    stage_dir: str = ""  # the local copy of an object-store OUT (pipeline/storage.py)


@dataclass
class StagePlan:
    name: str
    stage: object
    kind: str
    fingerprint: str
    measure_fp: str
    selected: bool
    wall_s: float | None = None
    state: str = ""
    measured: int = 0
    info: dict = field(default_factory=dict)


class Runner:
    def __init__(self, request: BuildRequest):
        self.req = request
        self.config = request.config
        # An object-store OUT is built in a local stage directory and committed unit by unit.
        self.remote = RemoteRun(request.out, request.stage_dir) if is_remote(request.out) else None
        self.out = self.remote.stage if self.remote else local_path(request.out)
        self.ctx = RunContext(
            out=self.out,
            media_root=normalise_root(request.media_root),
            seed=self.config.run.seed,
            spatial=self.config.spatial,
            extra={"dataset": dataclasses.asdict(self.config.dataset), "stage_params": dict(self.config.stage_params)},
        )
        self._executor = None
        self._n_chunks: int | None = None

    # ------------------------------------------------------------------------------------------
    def build(self) -> dict:
        """Validate everything, then run. Raises ConfigError / ManifestError before any work."""
        names = self.config.run.stages
        for flag, value in (("--from", self.req.from_stage), ("--only", self.req.only)):
            if value is not None and value not in names:
                raise ConfigError(f"{flag} {value}: not a stage of this run{closest(value, names)}; "
                                  f"stages: {names}")
        if self.req.stage_dir and not self.remote:
            raise ConfigError(f"--stage-dir applies to a URL --out (s3://…) only; --out {self.req.out} is a local "
                              "folder the run is written to directly: drop --stage-dir")
        check_paths(self.req.input, self.ctx.media_root, self.out)
        if is_remote(self.ctx.media_root):
            check_media_root(self.ctx.media_root)
        if self.remote:
            self.remote.check()
        preflight = self._preflight()
        self.ctx.extra["preflight"] = preflight  # workers use the driver's resolution, not their own
        manifest = read_input(self.req.input, self.ctx.media_root, self.config.run.allow_media_outside_root)
        plans = self._plan(names, preflight)
        chunks = self._chunks(manifest)
        if self.remote:  # OUT is the truth: the stage starts from what OUT holds
            os.makedirs(self.out, exist_ok=True)
            with RunLock(self.out):
                self.remote.pull()
            self._refingerprint(plans, preflight)  # models trained earlier (localize's digest) are here only now
        fresh = self._check_identity(manifest)
        self._check_selection(plans, chunks, fresh)
        os.makedirs(self.out, exist_ok=True)  # nothing is written before every check above has passed
        with RunLock(self.out):
            if fresh:
                clear_run_folder(self.out)
                if self.remote:
                    self.remote.clear(RUN_FOLDER_ENTRIES)
            self._bars = logs.bars_wanted(self.req.progress)
            logs.configure(self.out, bars=self._bars)
            self._n_chunks = len(chunks)
            try:
                with logs.bars_above_logs(self._bars):
                    return self._build_locked(plans, manifest, preflight, chunks)
            except Exception as exc:
                log.error("build stopped: %s: %s", type(exc).__name__, exc)
                raise
            finally:
                logs.close_build_log()
                self._commit_logs()

    def _build_locked(self, plans: list[StagePlan], manifest: InputManifest, preflight: dict,
                      chunks: list[list[dict]]) -> dict:
        started = time.time()
        log.info("build started: %d input rows, %d rejected, stages %s, executor %s", len(manifest.rows),
                 len(manifest.rejected), [p.name for p in plans], self.req.executor or self.config.executor.name)
        self._write_run_header(manifest, chunks)
        atomic_write_json(os.path.join(self.out, "preflight.json"), preflight)
        self._commit("config.yaml", "manifests/_input", "preflight.json", "input.json")
        try:
            for index, plan in enumerate(plans):
                counter = f"stage {index + 1} of {len(plans)}: {plan.name}"
                if plan.selected:
                    self._run_stage(plan, plans[index - 1] if index else None, chunks, counter)
                    if plan.kind == "global":  # later settings may name what it wrote (localize: the model)
                        self._refingerprint(plans, preflight)
                elif not self._stage_complete(plan, plans[index - 1] if index else None, chunks):
                    if any(p.selected for p in plans[index + 1 :]):
                        raise ConfigError(
                            f"stage {plan.name} is not complete for the current settings, so later "
                            f"stages cannot run on it; rerun with --from {plan.name} (or without --only/--from)"
                        )
                    plan.state = "not run"
                    log.info("%s not selected (not run)", counter)
                else:
                    plan.state = "done earlier"
                    log.info("%s not selected (done earlier)", counter)
        finally:
            if self._executor is not None:
                self._executor.close()
        stats = self._write_stats(plans, manifest, preflight, time.time() - started)
        self._publish(plans)
        self._commit("report", "README.md", "stats.json")
        log.info("funnel:\n%s", format_funnel(stats), extra={"console": False})  # the CLI prints it itself
        log.info("build finished in %s: %s", logs.duration(time.time() - started), funnel_line(stats))
        return stats

    def _publish(self, plans: list[StagePlan]) -> None:
        """The run-level step after the funnel: report and card, when validate is complete."""
        validate = next((p for p in plans if p.name == "validate"), None)
        if validate is not None and (validate.state == "done earlier" or validate.state.startswith("ran")):
            from output.publish import publish

            started = time.time()
            publish(self.out)
            log.info("report and card written in %.1f s", time.time() - started)

    # ------------------------------------------------------------------------------------------
    def _preflight(self) -> dict:
        """Stages that can fail for lack of a model or a file say so now, before any work."""
        info = {}
        for name in self.config.run.stages:
            cls = stage_class(name)
            if hasattr(cls, "preflight"):
                result = cls.preflight(self.config.stage_params[name], self.config.spatial, dict(info))
                if result:
                    info[name] = result
        return info

    def _plan(self, names: list[str], preflight: dict) -> list[StagePlan]:
        stages = [stage_class(n)(self.config.stage_params[n], self.ctx) for n in names]
        measure_fp, stage_fp = stage_fingerprints(stages, self.config.run.chunk_size, preflight)
        first = names.index(self.req.from_stage) if self.req.from_stage else 0
        plans = []
        for i, (name, stage) in enumerate(zip(names, stages)):
            selected = (name == self.req.only) if self.req.only else i >= first
            plans.append(StagePlan(name, stage, stage.kind, stage_fp[name], measure_fp[name], selected))
        return plans

    def _refingerprint(self, plans: list[StagePlan], preflight: dict) -> None:
        """Fingerprints again, after a global stage wrote its files: a later stage whose settings
        include a digest of them (localize's learned model) reruns exactly when they changed."""
        measure_fp, stage_fp = stage_fingerprints([p.stage for p in plans], self.config.run.chunk_size, preflight)
        for p in plans:
            p.measure_fp, p.fingerprint = measure_fp[p.name], stage_fp[p.name]

    def _chunks(self, manifest: InputManifest) -> list[list[dict]]:
        size = self.config.run.chunk_size
        return [manifest.rows[i : i + size] for i in range(0, len(manifest.rows), size)]

    def _check_identity(self, manifest: InputManifest) -> bool:
        """True when the run folder must start afresh (a different input, with --force).

        A run folder belongs to one input: mixing two would mix their funnels and manifests.
        """
        previous = read_marker(os.path.join(self.out, "input.json"))
        if not previous or not previous.get("digest") or previous["digest"] == input_digest(manifest, self.ctx.media_root):
            return False
        if not self.req.force:
            raise ConfigError(
                f"--out {self.out} holds a run of a different input ({previous.get('input')}, "
                f"{previous.get('rows')} rows, media root {previous.get('media_root') or '-'}) than "
                f"{os.path.abspath(self.req.input)} ({len(manifest.rows)} rows). Choose another --out, or add "
                "--force to delete that run and start this folder afresh"
            )
        if self.req.from_stage or self.req.only:
            raise ConfigError("--force with a different input starts the run folder afresh: drop --from/--only")
        return True

    def _check_selection(self, plans: list[StagePlan], chunks, fresh: bool) -> None:
        """--from/--only need the stage before them complete; checked before anything is written."""
        first = next((i for i, p in enumerate(plans) if p.selected), 0)
        if first == 0:
            return
        flag = f"--from {self.req.from_stage}" if self.req.from_stage else f"--only {self.req.only}"
        if fresh or not os.path.exists(os.path.join(self.out, "input.json")):
            raise ConfigError(f"{flag}: stage {plans[0].name} is not complete: {self.out} holds no earlier run of this "
                              f"input; run the whole pipeline first (without {flag.split()[0]})")
        previous = plans[first - 1]
        if not self._stage_complete(previous, plans[first - 2] if first > 1 else None, chunks):
            raise ConfigError(
                f"{flag}: stage {previous.name} is not complete for the current settings, so {plans[first].name} "
                f"cannot run on it; rerun with --from {previous.name} (or without --only/--from)"
            )

    def _write_run_header(self, manifest: InputManifest, chunks: list[list[dict]]) -> None:
        size = self.config.run.chunk_size
        atomic_write_bytes(os.path.join(self.out, "config.yaml"), dump_config(self.config).encode())
        write_rows(os.path.join(self.out, "manifests", "_input", "rejected.parquet"), [
            {"clip_id": r["clip_id"], "status": FAILED, "reason": f"rejected: {r['reason']}", "line": r["line"], "video": r["video"]}
            for r in manifest.rejected
        ])
        atomic_write_json(os.path.join(self.out, "input.json"), {
            "input": os.path.abspath(self.req.input),
            "media_root": self.ctx.media_root,
            "format": manifest.format,
            "rows": len(manifest.rows),
            "rejected": len(manifest.rejected),
            "chunk_size": size,
            "digest": input_digest(manifest, self.ctx.media_root),
            "chunk_digests": [self._input_digest(c) for c in chunks],
        })

    @staticmethod
    def _input_digest(rows: list[dict]) -> str:
        return digest(rows)

    # -- stage execution --------------------------------------------------------------------------
    def _upstream(self, previous: StagePlan | None, chunks: list[list[dict]], k: int) -> tuple[list[dict], str]:
        """Kept rows entering chunk k of the next stage, and the marker they came with."""
        if previous is None:
            return chunks[k], self._input_digest(chunks[k])
        marker = read_marker(self._marker_path(previous.name, k))
        rows = read_rows(self._manifest_path(previous.name, k))
        kept = [r for r in rows if r["status"] == KEPT]
        for r in kept:
            r.pop("status", None)
            r.pop("reason", None)
        return kept, (marker or {}).get("fingerprint", "")

    def _expected(self, plan: StagePlan, entries) -> list[str]:
        """The marker fingerprint each chunk must carry to count as done."""
        if plan.kind == "global":  # one result over all rows: every chunk shares one fingerprint
            shared = digest([plan.fingerprint, [fp for _, fp in entries]])
            return [shared] * len(entries)
        return [digest([plan.fingerprint, fp]) for _, fp in entries]

    def _entries(self, previous: StagePlan | None, chunks) -> list[tuple[list[dict], str]]:
        return [self._upstream(previous, chunks, k) for k in range(len(chunks))]

    def _stage_complete(self, plan: StagePlan, previous: StagePlan | None, chunks) -> bool:
        if previous is not None and not all(os.path.exists(self._marker_path(previous.name, k)) for k in range(len(chunks))):
            return False
        expected = self._expected(plan, self._entries(previous, chunks))
        return all((read_marker(self._marker_path(plan.name, k)) or {}).get("fingerprint") == e for k, e in enumerate(expected))

    def _run_stage(self, plan: StagePlan, previous: StagePlan | None, chunks: list[list[dict]], counter: str) -> None:
        started = time.time()
        entries = self._entries(previous, chunks)
        expected = self._expected(plan, entries)
        pending: dict[int, tuple[list[dict], str]] = {}
        for k, (rows, _) in enumerate(entries):
            marker = read_marker(self._marker_path(plan.name, k))
            valid = bool(marker) and marker.get("fingerprint") == expected[k]
            if valid and self.req.retry_failed and marker.get("failed", 0):
                valid = False
            if not valid or self.req.force:
                pending[k] = (rows, expected[k])
        if not pending:
            plan.state = "done earlier"
            log.info("%s done earlier (all %d chunks match the settings)", counter, len(chunks))
            return
        log.info("%s (%s): %d of %d chunks to run, %d clips", counter, plan.kind, len(pending), len(chunks),
                 sum(len(rows) for rows, _ in pending.values()))
        if plan.kind == "global":
            self._run_global(plan, {k: (rows, expected[k]) for k, (rows, _) in enumerate(entries)})
        else:
            self._run_clipwise(plan, pending)
        plan.wall_s = time.time() - started
        plan.state = f"ran {len(pending)}/{len(chunks)} chunks, measured {plan.measured}"
        rate = f", {plan.measured / plan.wall_s:.3g} clips/s" if plan.measured and plan.wall_s > 0 and plan.kind != "global" else ""
        log.info("%s done in %s: measured %d clips%s", counter, logs.duration(plan.wall_s), plan.measured, rate)

    def _run_clipwise(self, plan: StagePlan, pending: dict) -> None:
        cached = {k: ({} if self.req.force else self._load_cache(plan, k)) for k in pending}
        results: dict[int, list] = {}
        work: list[tuple[int, int, dict]] = []  # (chunk, row position, row)
        for k, (rows, _) in pending.items():
            results[k] = [cached[k].get(row_key(r)) for r in rows]
            work.extend((k, i, r) for i, r in enumerate(rows) if results[k][i] is None)
        remaining = {k: sum(1 for m in results[k] if m is None) for k in pending}
        for k in pending:
            if remaining[k] == 0:
                self._finish_chunk(plan, k, pending[k], results[k])
        if not work:
            return
        batches, where = self._batches(plan, work)
        spec = StageSpec(plan.name, plan.stage.params, self.ctx, float(self.config.executor.clip_timeout_s))
        bar = logs.Progress(log, plan.name, len(work), "clip", bar=self._bars)
        try:
            for index, measured in self._executor_for().map_batches(spec, plan.kind, batches):
                for (k, i), m in zip(where[index], measured):
                    if m and "_error" in m and is_disk_full(m["_error"]):
                        raise disk_full(plan.name, pending[k][0][i], m["_error"])
                    results[k][i] = m
                    remaining[k] -= 1
                    if remaining[k] == 0:
                        self._finish_chunk(plan, k, pending[k], results[k])
                plan.measured += len(measured)
                bar.update(len(measured))
        finally:
            bar.close()

    def _batches(self, plan: StagePlan, work):
        """Task stages: a batch per chunk. Actor stages: batch_size rows across chunks."""
        batches, where = [], []
        if plan.kind == "actor":
            size = max(1, plan.stage.batch_size() or 8)
            for start in range(0, len(work), size):
                part = work[start : start + size]
                batches.append([r for _, _, r in part])
                where.append([(k, i) for k, i, _ in part])
        else:
            by_chunk: dict[int, list] = {}
            for k, i, r in work:
                by_chunk.setdefault(k, []).append((k, i, r))
            for part in by_chunk.values():
                batches.append([r for _, _, r in part])
                where.append([(k, i) for k, i, _ in part])
        return batches, where

    def _run_global(self, plan: StagePlan, entries: dict) -> None:
        """Global stages see every kept row at once (training, validation, sharding)."""
        flat = [r for k in sorted(entries) for r in entries[k][0]]
        plan.stage.setup()
        bar = None

        def progress(done: int, total: int, unit: str = "clip", **values) -> None:
            """A global stage reports in its own unit (train_unet: training steps with the loss)."""
            nonlocal bar
            if bar is None:
                bar = logs.Progress(log, plan.name, total, unit, bar=self._bars, resumed=True)
            bar.update_to(done, total, **values)

        plan.stage.progress = progress
        plan.stage.commit = StageCommit(self) if self.remote else None
        try:
            if getattr(plan.stage, "on_actor", False):  # on a worker of the executor (train_localizer)
                spec = StageSpec(plan.name, plan.stage.params, self.ctx)
                measured = self._executor_for().run_global(spec, flat, progress)
            else:
                measured = plan.stage.run_global(flat)
        finally:
            plan.stage.progress = None
            plan.stage.commit = None
            if bar is not None:
                bar.close()
        self._commit(f"work/{plan.name}")  # a global stage's own files (the U-Net and its checkpoints)
        plan.measured = len(flat)
        position = 0
        for k in sorted(entries):
            rows = entries[k][0]
            self._finish_chunk(plan, k, entries[k], measured[position : position + len(rows)], cache=False)
            position += len(rows)

    def _finish_chunk(self, plan: StagePlan, k: int, entry, measurements, cache: bool = True) -> None:
        rows, expected = entry
        stage = plan.stage
        out_rows, good, workers = [], [], set()
        for row, m in zip(rows, measurements):
            m = dict(m or {})
            if "_worker" in m:
                workers.add(m.pop("_worker"))
            if "_error" in m:
                out_rows.append({**row, "status": FAILED, "reason": str(m["_error"])})
                continue
            merged = {**row, **m}
            good.append({"_key": row_key(row), **m})
            status, reason = stage.decide(merged)
            if status == KEPT:
                out_rows.extend({**r, "status": KEPT, "reason": ""} for r in stage.expand(merged))
            else:
                out_rows.append({**merged, "status": status, "reason": reason})
        write_rows(self._manifest_path(plan.name, k), out_rows)
        if cache and good:
            self._store_cache(plan, k, good)
        counts = {s: sum(1 for r in out_rows if r["status"] == s) for s in (KEPT, DROPPED, FAILED)}
        marker = {"fingerprint": expected, **counts}
        if workers:  # host:pid of the processes that measured this chunk (auditing a cluster run)
            marker["workers"] = sorted(workers)
        atomic_write_json(self._marker_path(plan.name, k), marker)
        if self.remote:
            self._commit(*self._chunk_files(plan, k, out_rows, cache and bool(good)), self._marker_path(plan.name, k))

    def _chunk_files(self, plan: StagePlan, k: int, out_rows: list[dict], cached: bool) -> list[str]:
        """What a finished (stage, chunk) wrote, its marker excluded: the manifest, the measurement
        cache, and the clips' work folders (work/<stage>/<clip>, ingest's work/ingest/<source>)."""
        files = [self._manifest_path(plan.name, k)] + ([self._cache_path(plan, k)] if cached else [])
        folders = set()
        for row in out_rows:
            clip = str(row.get("clip_id"))
            folders.add(os.path.join(self.out, "work", plan.name, clip))
            if plan.name == "ingest":
                folders.add(os.path.join(self.out, "work", "ingest", str(row.get("source_id") or clip)))
        return files + sorted(f for f in folders if os.path.isdir(f))

    # -- object-store OUT ---------------------------------------------------------------------------
    def _commit(self, *paths: str) -> None:
        """Upload finished files of the stage to an object-store OUT, in order (markers last)."""
        if self.remote:
            self.remote.commit([p if os.path.isabs(p) else os.path.join(self.out, p) for p in paths])

    def _commit_logs(self) -> None:
        if self.remote:
            try:
                self._commit("logs")
            except Exception as exc:  # noqa: BLE001 - never hide the build's own error behind the log upload
                log.warning("could not upload logs/ to %s: %s", self.remote.url, exc)

    def _store_cache(self, plan: StagePlan, k: int, good: list[dict]) -> None:
        """Add this chunk's measurements to what the cache already holds (never drop earlier ones:
        a clip filtered out by one setting and back in after another is not measured twice)."""
        path = self._cache_path(plan, k)
        merged = self._load_cache(plan, k, raw=True)
        merged.update({g["_key"]: json.dumps({c: v for c, v in g.items() if c != "_key"}, default=_jsonable) for g in good})
        keys = sorted(merged)  # same entries, same bytes, whatever order the runs came in
        write_table(path, pa.table({"key": pa.array(keys, pa.string()), "m": pa.array([merged[key] for key in keys], pa.string())}))

    def _load_cache(self, plan: StagePlan, k: int, raw: bool = False) -> dict:
        path = self._cache_path(plan, k)
        if not os.path.exists(path):
            return {}
        table = pq.read_table(path)
        pairs = zip(table.column("key").to_pylist(), table.column("m").to_pylist())
        return {key: (m if raw else json.loads(m)) for key, m in pairs}

    def _executor_for(self):
        if self._executor is None:
            ex = self.config.executor
            name = self.req.executor or ex.name
            kwargs = {"address": ex.address, "num_cpus": ex.num_cpus, "max_inflight": ex.max_inflight,
                      "max_attempts": ex.max_attempts} if name == "ray" else {}
            self._executor = make_executor(name, **kwargs)
        return self._executor

    # -- paths and stats --------------------------------------------------------------------------
    def _manifest_path(self, stage: str, k: int) -> str:
        return os.path.join(self.out, "manifests", stage, chunk_name(k) + ".parquet")

    def _marker_path(self, stage: str, k: int) -> str:
        return os.path.join(self.out, "completions", stage, chunk_name(k) + ".json")

    def _cache_path(self, plan: StagePlan, k: int) -> str:
        return os.path.join(self.out, "work", "_measure", plan.name, plan.measure_fp, chunk_name(k) + ".parquet")

    def _write_stats(self, plans, manifest: InputManifest, preflight: dict, wall: float) -> dict:
        previous = {}
        path = os.path.join(self.out, "stats.json")
        if os.path.exists(path):
            with open(path) as fh:
                previous = json.load(fh).get("stages", {})
        rejected: dict[str, int] = {}
        for r in manifest.rejected:
            key = r["reason"].split(" (")[0]
            rejected[key] = rejected.get(key, 0) + 1
        stats = {
            "input": {"rows": len(manifest.rows), "rejected": len(manifest.rejected), "format": manifest.format, "rejected_by_reason": rejected},
            "stages": {},
            "preflight": preflight,
            "executor": self.req.executor or self.config.executor.name,
            "driver": worker_id(),
            "wall_s": round(wall, 3),
        }
        for plan in plans:
            counts = stage_counts(self.out, plan.name, self._n_chunks)
            wall_s = plan.wall_s if plan.wall_s is not None else previous.get(plan.name, {}).get("wall_s")
            stats["stages"][plan.name] = {**counts, "wall_s": None if wall_s is None else round(wall_s, 3), "state": plan.state}
        atomic_write_json(path, stats, sort_keys=False)  # stages in pipeline order
        return stats


class StageCommit:
    """A global stage's hook on an object-store OUT (Stage.commit)."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def __call__(self, paths: list[str], prune: list[str] = ()) -> None:
        """Commit these files (in order, markers last), then delete objects under the `prune` folders of
        OUT whose local files are gone (stale shards, released staging)."""
        self.runner._commit(*paths)
        for rel in prune:
            self.runner.remote.prune(rel)

    def stored_size(self, path: str) -> int | None:
        return self.runner.remote.stored_size(path)


class DiskFullError(OSError):
    """A per-clip write hit a full disk; `path` is the file it was writing (when the reason names it)."""

    def __init__(self, message: str, path: str | None):
        super().__init__(errno.ENOSPC, message)
        self.path = path


def disk_full(stage: str, row: dict, reason: str) -> DiskFullError:
    """A clip whose write hit a full disk stops the build (exit 4) instead of becoming a failed row: the disk
    is not a property of the clip, and a failed row would not be retried by a plain rerun. Its chunk gets
    no marker, so the rerun measures it again; chunks finished before keep theirs."""
    path = re.search(r"'(/[^']+)'", reason)  # OSError's own wording names the file it was writing
    return DiskFullError(f"disk full while {stage} wrote clip {row.get('clip_id')!r}: {reason}",
                         path.group(1) if path else None)


def input_digest(manifest: InputManifest, media_root: str) -> str:
    """Identity of a run's input: its rows (accepted and rejected) and where media is read from."""
    return digest({"media_root": media_root, "rows": manifest.rows, "rejected": manifest.rejected})


def check_paths(input_path: str, media_root: str, out: str) -> None:
    """Paths the run needs, checked before any work so a typo fails in a second, not after a day."""
    if not os.path.exists(input_path):
        raise ManifestError(f"--input {input_path}: no such file")
    if os.path.isdir(input_path):
        raise ManifestError(f"--input {input_path}: is a folder; give the manifest file (CSV, JSONL or Parquet)")
    if media_root and "://" not in media_root and not os.path.isdir(media_root):
        what = "is a file, not a folder" if os.path.exists(media_root) else "does not exist"
        raise ConfigError(f"--media-root {media_root} {what}; give the folder relative video paths are resolved against")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file; the run folder must be a folder (new or an earlier run's)")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ConfigError(f"--out {out}: cannot create it under {parent} (not a writable folder)")


RUN_FOLDER_ENTRIES = ("config.yaml", "input.json", "preflight.json", "stats.json", "README.md", "manifests",
                      "completions", "work", "logs", "shards", "report")


def clear_run_folder(out: str) -> None:
    """--force with a different input: remove what a build wrote (only that), keep the lock."""
    import shutil

    for name in RUN_FOLDER_ENTRIES:
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def funnel_line(stats: dict) -> str:
    """The funnel in one line: clips in, kept at the end, dropped and failed over all stages."""
    stages = list((stats.get("stages") or {}).values())
    inputs = stats.get("input") or {}
    dropped = sum(sum(s["dropped"].values()) for s in stages)
    failed = sum(sum(s["failed"].values()) for s in stages) + int(inputs.get("rejected") or 0)
    kept = stages[-1]["kept"] if stages else 0
    return (f"{int(inputs.get('rows') or 0) + int(inputs.get('rejected') or 0)} clips in, {kept} kept, "
            f"{dropped} dropped, {failed} failed")


def build(request: BuildRequest) -> dict:
    return Runner(request).build()
