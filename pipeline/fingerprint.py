"""Fingerprints decide what a rerun may skip.

measure fingerprint  = stage name + code version (its `version` and a digest of the source of its module
                       and of the project modules it imports, pipeline/codeversion.py) + settings that
                       change measurements + the run-level spatial settings it uses
                       + measure fingerprints of the stages whose work files it reads
stage fingerprint    = measure fingerprint + decision settings + previous stage's fingerprint
chunk marker         = stage fingerprint + the upstream chunk's marker (or the input chunk digest)

So a new threshold changes only that stage's fingerprint and those downstream, never upstream; and
a downstream stage reuses cached measurements because its measure fingerprint does not depend on
upstream decisions.
"""

from __future__ import annotations

import hashlib
import json

from binauralizer.constants import SAMPLE_RATE
from pipeline.codeversion import code_digest


def digest(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def stage_fingerprints(stages: list, chunk_size: int, preflight: dict | None = None) -> tuple[dict, dict]:
    """(measure_fp, stage_fp) per stage name, for stage instances in pipeline order.

    `preflight` holds what each stage resolved before the run (e.g. which quality backend or checkpoint
    `auto` found): it changes measurements, so it is part of the measure fingerprint.
    """
    preflight = preflight or {}
    measure_fp: dict[str, str] = {}
    stage_fp: dict[str, str] = {}
    previous = digest({"chunk_size": chunk_size})
    for stage in stages:
        deps = {d: measure_fp[d] for d in stage.data_deps if d in measure_fp}
        measure_fp[stage.name] = digest(
            {
                "stage": stage.name,
                "version": stage.version,
                "code": code_digest(type(stage).__module__),
                "settings": stage.measure_settings(),
                "spatial": stage.spatial_settings(),
                "sample_rate": SAMPLE_RATE,
                "deps": deps,
                "resolved": preflight.get(stage.name, {}),
            }
        )
        stage_fp[stage.name] = digest(
            {"measure": measure_fp[stage.name], "decide": stage.decision_settings(), "prev": previous}
        )
        previous = stage_fp[stage.name]
    return measure_fp, stage_fp


def row_key(row: dict) -> str:
    """Identity of the data a row points at: the measurement cache is keyed by it."""
    return digest(
        [row.get(k) for k in ("clip_id", "video", "start", "end", "window_start", "window_samples")]
    )
