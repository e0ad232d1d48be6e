"""Run `python -m pipeline ...` and SIGKILL this very process at an exact point of the build.

    python killpoint.py marker:convert:2 build --config ...   # after convert's 2nd completion marker
    python killpoint.py tar:25 build --config ...             # as the shard writer adds its 25th tar member
    python killpoint.py replace:checkpoint.pt:1 build ...     # after the 1st rename onto a checkpoint.pt

A real SIGKILL of the driver (no cleanup, no finally, no atexit: the kernel ends the process), at a
moment chosen by the code's own progress rather than by a timer, so the kill lands in the same place
however loaded the machine is.
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    kind, *args = point.split(":")
    if kind == "marker":  # after the n-th completion marker of a stage is on disk
        import pipeline.runner as runner

        stage, n = args[0], int(args[1])
        write, seen = runner.atomic_write_json, []

        def counted(path, obj, *a, **kw):
            write(path, obj, *a, **kw)
            if os.path.join("completions", stage, "") in path:
                seen.append(path)
                if len(seen) == n:
                    _die()

        runner.atomic_write_json = counted
    elif kind == "tar":  # inside the shard writer, before its n-th tar member: a half-written temp tar
        import tarfile

        n, add, count = int(args[0]), tarfile.TarFile.addfile, [0]

        def counted_add(self, *a, **kw):
            count[0] += 1
            if count[0] == n:
                self.fileobj.flush()
                _die()
            return add(self, *a, **kw)

        tarfile.TarFile.addfile = counted_add
    elif kind == "replace":  # after the n-th atomic rename onto a file of that name (a training checkpoint)
        name, n, replace, count = args[0], int(args[1]), os.replace, [0]

        def counted_replace(src, dst, *a, **kw):
            replace(src, dst, *a, **kw)
            if os.path.basename(str(dst)) == name:
                count[0] += 1
                if count[0] == n:
                    _die()

        os.replace = counted_replace
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    from pipeline.cli import main

    raise SystemExit(main(sys.argv[2:]))
