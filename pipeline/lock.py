"""One build per run folder. An flock dies with its process, so a killed run never leaves it stuck."""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import time


class RunLockedError(RuntimeError):
    pass


class RunLock:
    def __init__(self, out: str):
        self.path = os.path.join(out, ".lock")
        self._fh = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown process"
            fh.close()
            raise RunLockedError(
                f"another build is running on {os.path.dirname(self.path)} ({holder}); wait for it to "
                "finish or stop it, or choose another --out. (A killed build releases the lock itself.)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_unix": math.floor(time.time() * 1000) / 1000}))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def lock_holder(out: str) -> dict | None:
    """The running build's {pid, host, started} when a build holds OUT/.lock, else None.

    Probes with a shared, non-blocking flock released at once (a build starting in that instant
    would be refused: the window is microseconds).
    """
    path = os.path.join(out, ".lock")
    try:
        fh = open(path)
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            return holder if isinstance(holder, dict) else {}
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return None
