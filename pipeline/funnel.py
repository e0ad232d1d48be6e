"""The funnel: per stage, clips in, kept, dropped by reason, failed, wall time.

Reasons follow the convention "<category>: <detail>" so the funnel can group "too short: 6.0 s <
10 s" and "too short: 3.1 s < 10 s" under one line while the manifest keeps the detail.
"""

from __future__ import annotations

import glob
import os
import textwrap
from collections import Counter

import pyarrow.parquet as pq


def reason_category(reason: str | None) -> str:
    reason = (reason or "").strip()
    return reason.split(":", 1)[0].strip() if reason else "unspecified"


def stage_counts(out: str, stage: str, chunks: int | None = None) -> dict:
    """Counts over the run's chunks (`chunks`: how many the current input has; stale higher ones ignored)."""
    files = sorted(glob.glob(os.path.join(out, "manifests", stage, "chunk-*.parquet")))
    if chunks is not None:
        files = [f for f in files if int(os.path.basename(f)[6:11]) < chunks]
    counts = {"in": 0, "kept": 0, "dropped": Counter(), "failed": Counter(), "chunks": len(files)}
    for path in files:
        table = pq.read_table(path, columns=["status", "reason"])
        for status, reason in zip(table.column("status").to_pylist(), table.column("reason").to_pylist()):
            if status == "kept":
                counts["kept"] += 1
            elif status in ("dropped", "failed"):
                counts[status][reason_category(reason)] += 1
    counts["dropped"] = dict(sorted(counts["dropped"].items()))
    counts["failed"] = dict(sorted(counts["failed"].items()))
    counts["in"] = counts["kept"] + sum(counts["dropped"].values()) + sum(counts["failed"].values())
    return counts


def format_funnel(stats: dict) -> str:
    """A plain-text table, one line per stage plus one per drop/failure reason."""
    w = max([12] + [len(name) + 2 for name in stats.get("stages", {})])  # train_localizer is 15 long
    lines = [f"{'stage':<{w}}{'in':>8}{'kept':>8}{'dropped':>9}{'failed':>8}{'wall s':>9}  status"]
    lines.append("-" * len(lines[0]))
    inputs = stats.get("input", {})
    if inputs:
        lines.append(
            f"{'input':<{w}}{inputs.get('rows', 0) + inputs.get('rejected', 0):>8}{inputs.get('rows', 0):>8}"
            f"{0:>9}{inputs.get('rejected', 0):>8}{'':>9}  {inputs.get('format', '')}"
        )
        for reason, n in (inputs.get("rejected_by_reason") or {}).items():
            lines.append(f"{'':<14}rejected: {reason} x{n}")
    for name, s in stats.get("stages", {}).items():
        dropped, failed = sum(s["dropped"].values()), sum(s["failed"].values())
        wall = s.get("wall_s")
        wall_text = f"{wall:9.1f}" if isinstance(wall, (int, float)) else f"{'-':>9}"
        lines.append(f"{name:<{w}}{s['in']:>8}{s['kept']:>8}{dropped:>9}{failed:>8}{wall_text}  {s.get('state', '')}")
        for reason, n in s["dropped"].items():
            lines.append(f"{'':<14}dropped: {reason} x{n}")
        for reason, n in s["failed"].items():
            lines.append(f"{'':<14}failed: {reason} x{n}")
    for name, info in (stats.get("preflight") or {}).items():
        head = ", ".join(f"{k}={v}" for k, v in info.items() if k != "why")
        lines.append(f"note [{name}]: {head}")
        if info.get("why"):
            lines.extend(textwrap.wrap(str(info["why"]), 100, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)
