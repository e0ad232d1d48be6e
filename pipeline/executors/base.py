"""What every executor shares: how a worker builds a stage and measures a batch safely."""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from dataclasses import dataclass
from typing import Iterator

from stages import stage_class
from stages.base import Params, RunContext, StageError


@dataclass(frozen=True)
class StageSpec:
    """Everything a worker needs to rebuild a stage: picklable, no live objects."""

    name: str
    params: Params
    ctx: RunContext
    clip_timeout_s: float = 0.0  # 0 = none; else a clip measured longer than this fails with "timed out"

    def build(self):
        stage = stage_class(self.name)(self.params, self.ctx)
        stage.setup()
        return stage


def worker_id() -> str:
    """host:pid of this process: recorded in each chunk's completion marker."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def tagged(results: list[dict]) -> list[dict]:
    """Results marked with the process that measured them (the runner moves it to the marker)."""
    me = worker_id()
    return [{**r, "_worker": me} for r in results]


def error_reason(exc: BaseException) -> str:
    if isinstance(exc, StageError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".strip()


class ClipTimeout(StageError):
    """Raised by the alarm inside a measurement that ran past its time."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block after `seconds` (SIGALRM; the main thread only, where Ray runs tasks).

    Blocking system calls (a hung ffmpeg's pipe, a stalled network read) are interrupted too;
    the driver-side backstop for code that never returns to Python is the worker kill."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise ClipTimeout(f"timed out after {seconds:g} s (executor.clip_timeout_s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def measure_safely(stage, rows: list[dict], clip_timeout_s: float = 0.0) -> list[dict]:
    """Measure a batch; if the batch raises (or runs past len(rows) x clip_timeout_s), measure row by
    row so one bad or hanging clip fails alone."""
    try:
        with time_limit(clip_timeout_s * len(rows)):
            results = stage.measure(rows)
        if len(results) != len(rows):
            raise RuntimeError(f"{stage.name}.measure returned {len(results)} results for {len(rows)} rows")
        return results
    except Exception as exc:  # noqa: BLE001 - any failure becomes per-row reasons
        if len(rows) == 1:
            reason = error_reason(exc)
            if not isinstance(exc, StageError):
                reason += " | " + traceback.format_exc(limit=2).strip().splitlines()[-1]
            return [{"_error": reason}]
    return [measure_safely(stage, [row], clip_timeout_s)[0] for row in rows]


class Executor:
    """map_batches yields (batch index, results) as batches finish, in any order."""

    name = "base"

    def map_batches(self, spec: StageSpec, kind: str, batches: list[list[dict]]) -> Iterator[tuple[int, list[dict]]]:
        raise NotImplementedError

    def run_global(self, spec: StageSpec, rows: list[dict], progress=None) -> list[dict]:
        """A global stage that asks for a worker (`Stage.on_actor`, e.g. train_localizer): its
        run_global over every kept row, reporting through `progress`. Here: in this process."""
        stage = spec.build()
        stage.progress = progress
        return stage.run_global(rows)

    def close(self) -> None:
        pass
