"""A stage's code is part of its fingerprint: editing it (or the physics it imports) reruns it."""

import sys

from pipeline import codeversion
from pipeline.fingerprint import stage_fingerprints
from stages import stage_class
from stages.base import RunContext


def _clear():
    codeversion._imports.cache_clear()
    codeversion.code_digest.cache_clear()


def test_digest_follows_the_module_and_what_it_imports(tmp_path, monkeypatch):
    (tmp_path / "myplugin.py").write_text("def measure():\n    from binauralizer import level\n    return level\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _clear()
    assert "binauralizer.level" in codeversion.closure("myplugin")
    before = codeversion.code_digest("myplugin")
    (tmp_path / "myplugin.py").write_text("def measure():\n    from binauralizer import level\n    return level  # edited\n")
    _clear()
    assert codeversion.code_digest("myplugin") != before
    sys.modules.pop("myplugin", None)
    used = codeversion.closure("stages.convert")
    assert {"stages.base", "binauralizer.pseudobinaural.conversion", "binauralizer.moving"} <= set(used)
    assert "pipeline.runner" not in used and "audioquality.audiobox" not in used


def test_a_code_change_changes_that_stage_and_the_ones_after(monkeypatch, tmp_path):
    ctx = RunContext(out=str(tmp_path))
    names = ["ingest", "duration", "silence"]
    stages = [stage_class(n)(stage_class(n).params_from({}), ctx) for n in names]
    measure, stage = stage_fingerprints(stages, 8)
    real = codeversion.code_digest
    monkeypatch.setattr("pipeline.fingerprint.code_digest",
                        lambda module: real(module) + ("x" if module == "stages.duration" else ""))
    measure2, stage2 = stage_fingerprints(stages, 8)
    assert measure2["ingest"] == measure["ingest"] and stage2["ingest"] == stage["ingest"]
    assert measure2["duration"] != measure["duration"] and stage2["silence"] != stage["silence"]
