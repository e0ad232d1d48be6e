"""Command line: `binauralize build|status|sample` (or `python -m pipeline ...`). Every command has --help."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys

import yaml

from output.about import TOOL, tool_version
from stages.base import closest

EPILOG_BUILD = """
examples:
  python -m pipeline build --config configs/sample.yaml --input sample/manifest.csv \\
      --media-root sample --out runs/sample
  python -m pipeline build ... --only silence --set stages.silence.max_silent_fraction=0.9
  python -m pipeline build ... --from quality --force      # redo quality and everything after it

Resuming: rerunning the same command skips every (stage, chunk) whose completion marker matches
the current settings; a killed run loses nothing. Changing a stage's settings reruns that stage and
the stages after it, never the ones before.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, plus the closest valid name when a command or a choice is mistyped."""

    def error(self, message: str):
        found = re.search(r"invalid choice: '?([^'\s]*)'? \(choose from (.*)\)", message)
        if found:
            options = re.findall(r"'?([\w.-]+)'?", found.group(2))
            message += closest(found.group(1), options)
        super().error(message)


def _prog() -> str:
    """`binauralize` when started as the console command, `python -m pipeline` otherwise."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m pipeline" if not name or name.endswith(".py") or name == "-c" else name


INTERRUPTED = """
interrupted: the build stopped at your request. Nothing is lost: every finished (stage, chunk) is saved
with its completion marker, and unfinished work leaves no partial files behind.
Resume by running the same command again:
  {command}"""

# A full disk (or quota, or file-size limit) is not bad input: the build stops, keeps what is finished.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# An object store that stops answering mid-build (network, expired credentials): same promise as a full disk.
STORAGE_MESSAGE = """error: {error}
The build stopped. What OUT already shows is whole (every file goes to a temporary key first, completion
markers last) and the local stage directory keeps the rest. Fix the cause, then run the same command
again: it resumes from what OUT holds."""
DISK_FULL_MESSAGE = """error: the disk is full: {error}
The build stopped. Nothing finished is lost and no partial file is left visible (shards, manifests and
markers are written to temporary names and renamed only when complete). Free space on the volume of
{out} (or of the path above), then run the same command again: it resumes where it stopped."""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_prog(),
        description="Build binaural audio-video datasets from mono-audio videos (BinauralVGGSound recipe).",
    )
    parser.add_argument("--version", action="version", version=f"{TOOL} {tool_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser(
        "build", help="run (or resume) the pipeline on an input manifest",
        description="Run the staged pipeline; resumes wherever an earlier run stopped.",
        epilog=EPILOG_BUILD, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--config", required=True, help="YAML configuration (see configs/)")
    b.add_argument("--input", required=True,
                   help="VGGSound CSV (youtube_id,start_seconds,label,split) or a CSV/JSONL/Parquet manifest "
                        "with clip_id and video columns")
    b.add_argument("--media-root", default="", help="folder (or fsspec URL, e.g. s3://bucket/media) that relative "
                   "video paths are resolved against")
    b.add_argument("--out", required=True, help="run folder (created; reused to resume): a path, or an fsspec URL "
                   "such as s3://bucket/runs/vgg (credentials from the usual AWS_* variables or fsspec config)")
    b.add_argument("--stage-dir", default="", metavar="DIR",
                   help="with a URL --out: the local folder the run is built in and committed from "
                        "(default: <system temp>/binauralize-stage/<digest of the URL>; pulled back from OUT if empty)")
    b.add_argument("--executor", choices=["ray", "local"], default=None,
                   help="ray (default from config: tasks and actor pools; RAY_ADDRESS joins a cluster) or "
                        "local (in-process, for debugging)")
    group = b.add_mutually_exclusive_group()
    group.add_argument("--from", dest="from_stage", metavar="STAGE",
                       help="start at STAGE (earlier stages must already be complete)")
    group.add_argument("--only", metavar="STAGE", help="run only STAGE (earlier stages must be complete)")
    b.add_argument("--force", action="store_true", help="recompute the selected stages even if they are done")
    b.add_argument("--retry-failed", action="store_true",
                   help="also rerun chunks whose earlier run left failed clips (transient errors)")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. stages.silence.max_silent_fraction=0.9 (repeatable)")
    b.add_argument("--no-progress", action="store_true",
                   help="no progress bars (bars are drawn only on a terminal; logs/build.log and non-terminal "
                        "output get a progress line per stage every tenth of its work or minute instead)")

    s = sub.add_parser("status", help="is a build running on a run folder, what is done and pending",
                       description="Whether a build is running on the run folder now (pid, since when), the "
                                   "chunks done and pending per stage for its current settings, with counts, "
                                   "and whether the run is complete. Exit code 0 either way.")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")

    m = sub.add_parser("sample", help="write the bundled synthetic sample clips and their manifest",
                       description="Generate sample clips with ffmpeg and numpy: moving sounding objects with "
                                   "their true trajectories, plus clips that must be filtered and broken files.")
    m.add_argument("--out", required=True, help="folder to write clips/, truth/ and manifest.csv into")
    m.add_argument("--clips", type=int, default=24, help="number of clips (default 24)")
    m.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    return parser


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "build":  # a build configures its own logging, with the run's build.log
        from pipeline.logs import configure

        configure()
    if args.command == "sample":
        from samplegen import generate_sample

        summary = generate_sample(args.out, clips=args.clips, seed=args.seed)
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if args.command == "status":
        from pipeline.status import format_status, run_status

        from stages.base import ConfigError

        try:
            report = run_status(args.out)
        except ConfigError as exc:
            print(f"error: {args.out}/config.yaml does not load with this version of {TOOL}: {exc}", file=sys.stderr)
            return 2
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(report, indent=2, default=str) if args.json else format_status(report))
        return 0
    return _build(args, argv)


def _build(args, argv: list[str] | None = None) -> int:
    from manifests.readers import ManifestError
    from pipeline.config import load_config
    from pipeline.lock import RunLockedError
    from pipeline.funnel import format_funnel
    from pipeline.runner import BuildRequest, build
    from pipeline.storage import StorageError
    from stages.base import ConfigError

    try:
        config = load_config(args.config, _overrides(args.set))
        request = BuildRequest(
            config=config, input=args.input, out=args.out, media_root=args.media_root,
            executor=args.executor, from_stage=args.from_stage, only=args.only, force=args.force,
            retry_failed=args.retry_failed, progress=not args.no_progress, stage_dir=args.stage_dir,
        )
        stats = build(request)
    except (ConfigError, ManifestError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except StorageError as exc:
        print(STORAGE_MESSAGE.format(error=exc), file=sys.stderr)
        return 5
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(DISK_FULL_MESSAGE.format(error=exc, out=args.out), file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print(INTERRUPTED.format(command=" ".join(["python -m pipeline", *sys.argv[1:]]) if argv is None else
                                 " ".join(["python -m pipeline", *argv])), file=sys.stderr)
        return 130
    print()
    print(format_funnel(stats))
    from pipeline.storage import is_remote, local_path

    if is_remote(args.out):  # built in a local stage, committed to OUT
        print(f"\nrun folder: {args.out}  ({_prog()} status --out {args.out}; shards/, report/index.html and "
              "README.md under it when built)")
        return 0
    out = local_path(args.out)
    print(f"\nrun folder: {out}  ({_prog()} status --out {args.out})")
    for label, rel in (("report", "report/index.html"), ("dataset card", "README.md"), ("shards", "shards")):
        if os.path.exists(os.path.join(out, rel)):
            print(f"{label}: {os.path.join(out, rel)}")
    return 0
