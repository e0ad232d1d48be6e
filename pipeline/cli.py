"""Command line: `python -m pipeline build|status|sample`. Every command has --help."""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

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


INTERRUPTED = """
interrupted: the build stopped at your request. Nothing is lost: every finished (stage, chunk) is saved
with its completion marker, and unfinished work leaves no partial files behind.
Resume by running the same command again:
  {command}"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Build binaural audio-video datasets from mono-audio videos (BinauralVGGSound recipe).",
    )
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
    b.add_argument("--media-root", default="", help="folder that relative video paths are resolved against")
    b.add_argument("--out", required=True, help="run folder (created; reused to resume)")
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
    b.add_argument("--no-progress", action="store_true", help="no progress bars")

    s = sub.add_parser("status", help="show which stages and chunks of a run folder are done",
                       description="Stages and chunks done for the run folder's current settings, with counts.")
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
    if args.command == "sample":
        from samplegen import generate_sample

        summary = generate_sample(args.out, clips=args.clips, seed=args.seed)
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if args.command == "status":
        from pipeline.status import format_status, run_status

        try:
            report = run_status(args.out)
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
    from stages.base import ConfigError

    try:
        config = load_config(args.config, _overrides(args.set))
        request = BuildRequest(
            config=config, input=args.input, out=args.out, media_root=args.media_root,
            executor=args.executor, from_stage=args.from_stage, only=args.only, force=args.force,
            retry_failed=args.retry_failed, progress=not args.no_progress,
        )
        stats = build(request)
    except (ConfigError, ManifestError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(INTERRUPTED.format(command=" ".join(["python -m pipeline", *sys.argv[1:]]) if argv is None else
                                 " ".join(["python -m pipeline", *argv])), file=sys.stderr)
        return 130
    print()
    print(format_funnel(stats))
    print(f"\nrun folder: {os.path.abspath(args.out)}  (python -m pipeline status --out {args.out})")
    for label, rel in (("report", "report/index.html"), ("dataset card", "README.md"), ("shards", "shards")):
        if os.path.exists(os.path.join(args.out, rel)):
            print(f"{label}: {os.path.join(os.path.abspath(args.out), rel)}")
    return 0
