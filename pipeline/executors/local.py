"""In-process executor: one stage instance, batches in order. For tests and debugging."""

from __future__ import annotations

from pipeline.executors.base import Executor, StageSpec, measure_safely, tagged


class LocalExecutor(Executor):
    name = "local"

    def map_batches(self, spec: StageSpec, kind: str, batches):
        if not batches:
            return
        stage = spec.build()
        for index, rows in enumerate(batches):
            yield index, tagged(measure_safely(stage, rows, spec.clip_timeout_s))
