"""Ray executor: CPU stages as tasks over chunks, model stages as actor pools.

* task stages: one Ray task per batch (a chunk's pending rows), `num_cpus`/`num_gpus` from the stage's
  Resources, at most `max_inflight` tasks queued so memory stays flat however large the dataset.
* actor stages: a pool of long-lived actors, each building the stage (and loading its model) once;
  batches of `batch_size` rows cut across chunk boundaries; fractional `num_gpus` packs actors.
* a worker that dies (segfaulting decoder, OOM kill, preemption) fails only its clips: a multi-row batch is
  retried row by row, and a row that kills a worker on its own `max_attempts` times becomes a failed row
  with the reason (a bounded number of attempts, never a loop).
* `clip_timeout_s`: a clip measured longer than this fails with "timed out" (an alarm in the worker).
* global stages that ask for a worker (`on_actor`: train_localizer) run on one actor with the stage's
  `num_cpus` / `num_gpus`; the driver polls its progress (steps, loss) while it trains.
"""

from __future__ import annotations

import logging
import os
from collections import deque

from pipeline.executors.base import Executor, StageSpec, measure_safely, tagged

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_batch(spec: StageSpec, rows: list[dict]) -> list[dict]:
    return tagged(measure_safely(spec.build(), rows, spec.clip_timeout_s))


class _StageActor:
    def __init__(self, spec: StageSpec):
        self.stage = spec.build()
        self.timeout = spec.clip_timeout_s

    def measure(self, rows: list[dict]) -> list[dict]:
        return tagged(measure_safely(self.stage, rows, self.timeout))


class _GlobalActor:
    """One global stage on a worker; a second thread answers `progress` while `run` trains."""

    def __init__(self, spec: StageSpec):
        self.stage = spec.build()
        self.last = None
        self.stage.progress = self._record

    def _record(self, done: int, total: int, unit: str = "clip", **values) -> None:
        self.last = (done, total, unit, values)

    def run(self, rows: list[dict]) -> list[dict]:
        return self.stage.run_global(rows)

    def progress(self):
        return self.last


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_inflight: int = 0,
                 max_attempts: int = 2):
        import ray

        self._ray = ray
        self._started = False
        self.max_attempts = max(1, int(max_attempts))
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            kwargs = dict(
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=True,
                runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                    p for p in (PROJECT_ROOT, os.environ.get("PYTHONPATH", "")) if p)}},
            )
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
            self._started = True
        resources = ray.cluster_resources()
        self.cluster_cpus = int(resources.get("CPU", 1))
        self.cluster_gpus = float(resources.get("GPU", 0))
        self.max_inflight = max_inflight or 2 * self.cluster_cpus

    # -- public ------------------------------------------------------------------------------
    def map_batches(self, spec: StageSpec, kind: str, batches):
        if not batches:
            return
        stage_cls = _stage_cls(spec)
        res = stage_cls(spec.params, spec.ctx).resources()
        if kind == "actor":
            yield from self._actor_pool(spec, res, batches)
        else:
            yield from self._tasks(spec, res, batches)

    def run_global(self, spec: StageSpec, rows: list[dict], progress=None) -> list[dict]:
        ray = self._ray
        res = _stage_cls(spec)(spec.params, spec.ctx).resources()
        if res.gpus > self.cluster_gpus:
            raise RuntimeError(f"stage {spec.name} asks for num_gpus={res.gpus} on its actor but the Ray cluster has "
                               f"{self.cluster_gpus} GPUs; set stages.{spec.name}.num_gpus: 0 to run on CPU")
        actor = ray.remote(_GlobalActor).options(num_cpus=res.cpus, num_gpus=res.gpus, max_restarts=0,
                                                 max_concurrency=2).remote(spec)
        try:
            ref = actor.run.remote(rows)
            seen = None
            while True:
                ready, _ = ray.wait([ref], timeout=1.0)
                if progress is not None:
                    last = ray.get(actor.progress.remote())
                    if last is not None and last != seen:
                        seen = last
                        progress(last[0], last[1], last[2], **last[3])
                if ready:
                    return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"{spec.name}: its worker died ({str(exc).splitlines()[0][:200]}); run the same "
                               "command again: it resumes from its last checkpoint") from None
        finally:
            ray.kill(actor)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()

    # -- tasks -------------------------------------------------------------------------------
    def _tasks(self, spec, res, batches):
        ray = self._ray
        # a batch that kills its worker is split at once; a single clip gets max_attempts tries in all
        remote = ray.remote(_run_batch)
        batch_task = remote.options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=0)
        row_task = remote.options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=self.max_attempts - 1)
        spec_ref = ray.put(spec)
        queue = deque((i, rows) for i, rows in enumerate(batches))
        inflight: dict = {}
        split: dict[int, list] = {}  # batch index -> per-row results while retrying row by row
        while queue or inflight:
            while queue and len(inflight) < self.max_inflight:
                index, rows = queue.popleft()
                task = batch_task if len(rows) > 1 else row_task
                inflight[task.remote(spec_ref, rows)] = (index, rows)
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                index, rows = inflight.pop(ref)
                try:
                    yield from self._finish(index, ray.get(ref), split)
                except (ray.exceptions.RayError, OSError) as exc:
                    yield from self._on_crash(index, rows, exc, queue, split, self.max_attempts)

    # -- actors ------------------------------------------------------------------------------
    def _actor_count(self, spec, res, n_batches: int) -> int:
        wanted = int(getattr(spec.params, "num_actors", 0) or 0)
        if wanted:
            return wanted
        if res.gpus > 0:
            fit = int(self.cluster_gpus / res.gpus) if self.cluster_gpus else 0
            if fit == 0:
                raise RuntimeError(
                    f"stage {spec.name} asks for num_gpus={res.gpus} per actor but the Ray cluster has "
                    f"{self.cluster_gpus} GPUs; set stages.{spec.name}.num_gpus: 0 to run on CPU"
                )
            return max(1, min(fit, n_batches))
        return max(1, min(int(self.cluster_cpus // max(res.cpus, 1e-3)), n_batches))

    def _new_actor(self, spec_ref, res):
        ray = self._ray
        cls = ray.remote(_StageActor).options(num_cpus=res.cpus, num_gpus=res.gpus, max_restarts=0)
        return cls.remote(spec_ref)

    def _actor_pool(self, spec, res, batches):
        ray = self._ray
        spec_ref = ray.put(spec)
        actors = [self._new_actor(spec_ref, res) for _ in range(self._actor_count(spec, res, len(batches)))]
        queue = deque((i, rows) for i, rows in enumerate(batches))
        idle = deque(actors)
        inflight: dict = {}
        split: dict[int, list] = {}
        tries: dict = {}
        try:
            while queue or inflight:
                while queue and idle:
                    actor = idle.popleft()
                    index, rows = queue.popleft()
                    inflight[actor.measure.remote(rows)] = (index, rows, actor)
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    index, rows, actor = inflight.pop(ref)
                    try:
                        result = ray.get(ref)
                        idle.append(actor)
                    except (ray.exceptions.RayError, OSError) as exc:
                        ray.kill(actor)
                        idle.append(self._new_actor(spec_ref, res))
                        tries[_key(index)] = tries.get(_key(index), 0) + 1
                        if len(rows) == 1 and tries[_key(index)] < self.max_attempts:
                            queue.append((index, rows))  # an actor is not retried by Ray: count here
                            continue
                        yield from self._on_crash(index, rows, exc, queue, split, tries.get(_key(index), 1))
                        continue
                    yield from self._finish(index, result, split)
        finally:
            for actor in list(idle) + [a for _, _, a in inflight.values()]:
                ray.kill(actor)

    # -- crash handling -------------------------------------------------------------------------
    @staticmethod
    def _finish(index, result, split):
        if isinstance(index, int):
            yield index, result
            return
        parent, position, total = index
        bucket = split.setdefault(parent, [None] * total)
        bucket[position] = result[0]
        if all(r is not None for r in bucket):
            del split[parent]
            yield parent, bucket

    @staticmethod
    def _on_crash(index, rows, exc, queue, split, attempts: int = 1):
        if isinstance(index, int) and len(rows) > 1:
            for position, row in enumerate(rows):  # retry row by row to isolate the culprit
                queue.append(((index, position, len(rows)), [row]))
            return
        reason = (f"worker died while measuring this clip ({attempts} attempt{'s' if attempts > 1 else ''}, "
                  f"executor.max_attempts; {type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        yield from RayExecutor._finish(index, [{"_error": reason}], split)


def _key(index) -> tuple:
    return index if isinstance(index, tuple) else (index,)


def _stage_cls(spec: StageSpec):
    from stages import stage_class

    return stage_class(spec.name)
