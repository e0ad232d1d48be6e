"""`make bench`: run every benchmark in one process, side by side, and write benchmarks/results.md.

Each benchmarks/bench_*.py (and eval_*.py) exposes run() -> dict. A dict may carry "markdown" (a
ready table); other keys are printed as a figure table. Pass names to run a subset:
`python -m benchmarks bench_pipeline bench_render`.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ["bench_pipeline", "bench_quality", "bench_render", "bench_localize", "bench_unet", "eval_conversion", "bench_shards"]


def _table(result: dict) -> str:
    lines = ["| figure | value |", "|---|---|"]
    for key, value in result.items():
        if key == "markdown":
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (dict, list)):
            value = "`" + json.dumps(value, default=str)[:300] + "`"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def main(names: list[str]) -> int:
    names = names or [n for n in ORDER if os.path.exists(os.path.join(HERE, n + ".py"))]
    sections, failed = [], 0
    for name in names:
        print(f"== {name}", flush=True)
        started = time.time()
        try:
            result = importlib.import_module(f"benchmarks.{name}").run()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed += 1
            sections.append(f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()[-3000:]}\n```\n")
            print(traceback.format_exc(), file=sys.stderr)
            continue
        body = result.get("markdown") or ""
        sections.append(f"## {name}\n\n{body}\n\n{_table(result)}\n\n_{time.time() - started:.0f} s wall_\n")
        print(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1, default=str)[:3000])
    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` on {time.strftime('%Y-%m-%d')} — {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. All figures of a section were measured in the same run, "
        "side by side.\n\n"
    )
    with open(os.path.join(HERE, "results.md"), "w") as fh:
        fh.write(header + "\n".join(sections))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
