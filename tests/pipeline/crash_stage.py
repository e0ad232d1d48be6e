"""A plug-in stage for executor tests: kills its worker process on one clip, raises on another."""

import os

from stages.base import Stage, StageError


class CrashStage(Stage):
    name = "crashy"
    kind = "task"

    def measure(self, rows):
        out = []
        for row in rows:
            if row["clip_id"] == "s000_moving_lr":
                os._exit(1)  # a segfaulting decoder looks like this to the executor
            if row["clip_id"] == "s004_distractor_sweep":
                raise StageError("deliberate failure")
            out.append({"crash_ok": 1})
        return out
