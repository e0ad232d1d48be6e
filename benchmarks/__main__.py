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
ORDER = ["bench_pipeline", "bench_quality", "bench_render", "bench_localize", "bench_train_localizer", "bench_unet", "eval_spatial", "bench_shards",
         "bench_trainer", "bench_scale"]


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
        started, load = time.time(), os.getloadavg()[0]
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            result = module.run()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed += 1
            sections.append(f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()[-3000:]}\n```\n")
            print(traceback.format_exc(), file=sys.stderr)
            continue
        doc = " ".join((module.__doc__ or "").split())  # what the benchmark measures, from its docstring
        body = "\n\n".join(part for part in (doc, result.get("markdown") or "") if part)
        sections.append(f"## {name}\n\n{body}\n\n{_table(result)}\n\n_{time.time() - started:.0f} s wall, "
                        f"{time.strftime('%Y-%m-%d %H:%M')}, load average at start {load:.2f}_\n")
        print(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1, default=str)[:3000])
    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` ({platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}). The figures of a section were measured in one run, side by side; "
        "running a subset (`python -m benchmarks NAME ...`) replaces only those sections.\n\n"
    )
    merged = _existing_sections()
    for name, text in zip(names, sections):
        merged[name] = text
    ordered = [n for n in ORDER if n in merged] + [n for n in merged if n not in ORDER]
    with open(os.path.join(HERE, "results.md"), "w") as fh:
        # sections read back keep their bytes (their blank line included): a subset run changes no other section
        fh.write(header + "".join(merged[n] if merged[n].endswith("\n\n") else merged[n] + "\n" for n in ordered))
    return 1 if failed else 0


def _existing_sections() -> dict[str, str]:
    """Sections of the current results.md by benchmark name, so a partial run keeps the others."""
    path = os.path.join(HERE, "results.md")
    if not os.path.exists(path):
        return {}
    sections, name, lines = {}, None, []
    for line in open(path).read().splitlines(keepends=True):
        if line.startswith("## "):
            if name:
                sections[name] = "".join(lines)
            name, lines = line[3:].strip(), [line]
        elif name:
            lines.append(line)
    if name:
        sections[name] = "".join(lines)
    return sections


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
