"""A stage's code version: a digest of its module's source and of the project modules it uses.

Part of every measure fingerprint, so editing a stage or the physics it calls (binauralizer,
audioquality, output, manifests) reruns that stage and those after it, without anyone remembering to
bump `version`. The imports are read statically (the module's AST, lazy imports inside functions
included), never executed, so the driver pays milliseconds and loads no model code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util

PROJECT = ("stages", "binauralizer", "audioquality", "output", "manifests")


def _origin(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".py") else None


@functools.lru_cache(maxsize=None)
def _imports(module: str) -> tuple[str, ...]:
    """Project modules `module` imports (anywhere in the file)."""
    origin = _origin(module)
    if origin is None:
        return ()
    with open(origin, "rb") as fh:
        tree = ast.parse(fh.read(), origin)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return tuple(sorted(m for m in found if m.split(".")[0] in PROJECT and _origin(m)))


def closure(module: str) -> list[str]:
    """`module` and every project module it reaches through imports, sorted."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages' __init__
        todo.extend(_imports(name))
    return sorted(m for m in seen if _origin(m))


@functools.lru_cache(maxsize=None)
def code_digest(module: str) -> str:
    h = hashlib.sha256()
    for name in closure(module):
        with open(_origin(name), "rb") as fh:
            h.update(name.encode() + b"\0" + fh.read() + b"\0")
    return h.hexdigest()[:20]
