"""The house has no import running back up: each package imports only the rooms below it.

Read statically from every module's AST (lazy imports inside functions included).
"""

from __future__ import annotations

import ast
import os

import pytest

from runhelpers import ROOT

# package -> project packages it may import (besides itself)
ALLOWED = {
    "manifests": set(),
    "binauralizer": {"manifests"},
    "audioquality": {"binauralizer", "manifests"},
    "output": {"binauralizer", "manifests"},
    "samplegen": {"binauralizer", "manifests"},
    "stages": {"binauralizer", "audioquality", "output", "manifests"},
    "pipeline": {"stages", "binauralizer", "audioquality", "output", "manifests", "samplegen"},
    "trainer": {"stages", "binauralizer", "audioquality", "output", "manifests"},
}
PROJECT = set(ALLOWED) | {"benchmarks", "tests"}


def imported_packages(path: str) -> set[str]:
    with open(path, "rb") as fh:
        tree = ast.parse(fh.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_runs_back_up_the_house(package):
    wrong = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                bad = imported_packages(path) - ALLOWED[package] - {package}
                if bad:
                    wrong[os.path.relpath(path, ROOT)] = sorted(bad)
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from stages import base\n    import pipeline.runner\n")
    assert imported_packages(str(module)) == {"stages", "pipeline"}
