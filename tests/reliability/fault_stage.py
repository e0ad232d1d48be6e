"""A plug-in stage for fault tests: one clip kills its worker every time, one hangs."""

import os
import time

from stages.base import Stage


class FaultStage(Stage):
    name = "faulty"
    kind = "task"

    def measure(self, rows):
        out = []
        for row in rows:
            if row["clip_id"] == "killer":
                with open(os.environ["FAULT_DEATHS"], "a") as fh:  # count every death
                    fh.write("x")
                os._exit(1)  # what a segfaulting decoder looks like to the executor
            if row["clip_id"] == "hanger":
                time.sleep(3600)  # a decoder stuck on a network mount
            out.append({"fault_ok": 1})
        return out
