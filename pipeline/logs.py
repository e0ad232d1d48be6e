"""One logging configuration for a build: every module's records reach the console and logs/build.log.

`configure()` installs it (`logging.config.dictConfig`) on the root logger, so a record from any
module (runner, stages, the training loop) lands in both places. Progress has two faces: a tqdm
bar on an interactive terminal, and periodic log lines ("done/total, rate, ETA") that always go to
build.log and go to the console only when no bar is drawn (not a terminal, or --no-progress). Bars
and log lines never interleave (`logging_redirect_tqdm`), and build.log never holds bar characters.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import sys
import time
from typing import Iterator

BUILD_LOG = os.path.join("logs", "build.log")
CONSOLE_FORMAT = "%(asctime)s %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Third-party loggers that chatter at INFO; their warnings still come through.
QUIET = ("matplotlib", "PIL", "urllib3", "filelock", "fsspec", "httpx", "huggingface_hub", "datasets", "numba")


class ConsoleFilter(logging.Filter):
    """Keeps file-only records (`extra={"console": False}`) and, while bars are drawn, progress lines
    (`extra={"progress": True}`) off the console: the bar already shows them."""

    bars = False

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "console", True) is False:
            return False
        return not (ConsoleFilter.bars and getattr(record, "progress", False))


def bars_wanted(enabled: bool = True) -> bool:
    """Bars only for a person watching a terminal; logs and CI get periodic lines instead."""
    return bool(enabled) and sys.stderr.isatty()


def configure(out: str | None = None, level: str = "INFO", bars: bool = False) -> None:
    """Root logging: console (stderr) always, OUT/logs/build.log (appended) when `out` is given."""
    ConsoleFilter.bars = bars
    handlers = {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "console",
                    "filters": ["console"]},
    }
    if out:
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
        handlers["build_log"] = {"class": "logging.FileHandler", "filename": os.path.join(out, BUILD_LOG),
                                 "encoding": "utf-8", "formatter": "file"}
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"console": {"()": ConsoleFilter}},
        "formatters": {"console": {"format": CONSOLE_FORMAT, "datefmt": "%H:%M:%S"},
                       "file": {"format": FILE_FORMAT, "datefmt": "%Y-%m-%d %H:%M:%S"}},
        "handlers": handlers,
        "loggers": {name: {"level": "WARNING"} for name in QUIET},
        "root": {"level": level, "handlers": list(handlers)},
    })


def close_build_log() -> None:
    """Detach and close build.log (a long-lived process may build many run folders)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def bars_above_logs(bars: bool) -> Iterator[None]:
    """While bars are drawn, log lines are printed above them through tqdm (never through a bar)."""
    if not bars:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # swaps our console handler for tqdm's (same stream, format, filter)
        yield


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600} h {rest % 3600 // 60:02d} min"
    return f"{days} d {text}" if days else text


class Progress:
    """done/total of one stage in its own unit (clips, training steps): a bar and periodic log lines.

    A line is logged at every tenth of the work and at least every `every_s` seconds, and at the
    end; each says done/total, the rate since this process started the stage, and the ETA.
    """

    def __init__(self, logger: logging.Logger, name: str, total: int, unit: str = "clip", bar: bool = False,
                 every_s: float = 60.0, resumed: bool = False):
        """`resumed`: the first update's position may include work of an earlier process (a training
        resumed from a checkpoint), so the rate counts from the first update on."""
        self.log, self.name, self.total, self.unit = logger, name, int(total), unit
        self.every_s = every_s
        self.done = 0
        self.values: dict = {}
        self._base: tuple[float, int] | None = None if resumed else (time.monotonic(), 0)
        self._last_line = time.monotonic()
        self._last_tenth = 0
        self._bar = None
        if bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=f"{name:<10}", unit=unit, dynamic_ncols=True, leave=True)

    def update(self, n: int, **values) -> None:
        self.update_to(self.done + n, **values)

    def update_to(self, done: int, total: int | None = None, **values) -> None:
        """Absolute position (a resumed training starts past 0: its rate counts only this run's work)."""
        now = time.monotonic()
        if total is not None and total != self.total:
            self.total = int(total)
            if self._bar is not None:
                self._bar.total = self.total
        if self._base is None:
            self._base = (now, int(done))
        self.done, self.values = int(done), values
        if self._bar is not None:
            self._bar.n = self.done
            if values:
                self._bar.set_postfix({k: _short(v) for k, v in values.items()}, refresh=False)
            self._bar.refresh()
        tenth = 10 * self.done // self.total if self.total else 10
        if tenth > self._last_tenth or now - self._last_line >= self.every_s or self.done >= self.total:
            if self.done > 0:
                self._line(now)
            self._last_tenth, self._last_line = tenth, now

    def rate(self, now: float | None = None) -> float | None:
        if self._base is None:
            return None
        elapsed = (now or time.monotonic()) - self._base[0]
        counted = self.done - self._base[1]
        return counted / elapsed if elapsed > 0 and counted > 0 else None

    def _line(self, now: float) -> None:
        rate = self.rate(now)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.name}: {self.done}/{self.total} {self.unit}s ({pct:.0f} %)"]
        if rate:
            parts.append(f"{_rate(rate)} {self.unit}s/s")
            parts.append(f"ETA {duration((self.total - self.done) / rate)}" if self.done < self.total else "finished")
        parts += [f"{k} {_short(v)}" for k, v in self.values.items()]
        self.log.info(", ".join(parts), extra={"progress": True})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _rate(rate: float) -> str:
    """Three significant digits, never scientific: a fast stage reads "1230 clips/s", not "1.23e+03"."""
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
