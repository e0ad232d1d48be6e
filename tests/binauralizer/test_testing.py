"""The shared cache of tiny test models keeps what is in use and drops what has been idle."""

import os
import time

from binauralizer.testing import prune_unused


def _entry(root, name, age_s):
    os.makedirs(root / name)
    model = root / name / "model.pt"
    model.write_bytes(b"weights")
    stamp = time.time() - age_s
    os.utime(model, (stamp, stamp))
    return model


def test_prune_drops_only_models_idle_for_a_week(tmp_path):
    _entry(tmp_path, "current", 30 * 86400)  # the caller's own entry, however old
    _entry(tmp_path, "parallel-checkout", 3600)  # another checkout used it an hour ago
    _entry(tmp_path, "old-code", 8 * 86400)
    os.makedirs(tmp_path / "half-written")  # no model.pt yet: judged by the folder's own time
    assert prune_unused(str(tmp_path), keep="current") == ["old-code"]
    assert sorted(os.listdir(tmp_path)) == ["current", "half-written", "parallel-checkout"]
