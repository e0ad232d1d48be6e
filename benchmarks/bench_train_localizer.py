"""What the train_localizer stage costs on the bundled sample, and localize with its model.

A fresh sample (24 clips, seed 0) is built through ingest .. quality (local executor, sample config),
then train_localizer and localize exactly as configs/sample.yaml sets them (an ensemble of `members`
models of `steps` steps each; localize `fusion-learned`), then localize with `fusion-object` (the same
cues without the learned map, no training) for comparison. Figures: the stage's wall time and steps per
second over all members (torch on one thread, `num_cpus: 1`), the loss (mean over members, first and
last 10 steps) against chance (log batch), and localize's seconds per clip. The price of the learned
map in `make build-dataset`.
"""

from __future__ import annotations

import json
import os
import tempfile

STAGES = ["ingest", "duration", "silence", "quality"]
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "sample.yaml")


def build_run(sample: str, out: str, overrides: dict) -> dict:
    from pipeline.config import load_config
    from pipeline.runner import BuildRequest, build

    return build(BuildRequest(config=load_config(CONFIG, overrides), input=os.path.join(sample, "manifest.csv"),
                              out=out, media_root=sample, executor="local", progress=False))


def run() -> dict:
    from pipeline.config import load_config
    from samplegen import generate_sample

    train = load_config(CONFIG).stage_params["train_localizer"]
    with tempfile.TemporaryDirectory(prefix="bench-train-localizer-") as tmp:
        sample, out = os.path.join(tmp, "sample"), os.path.join(tmp, "run")
        generate_sample(sample, clips=24, seed=0)
        build_run(sample, out, {"run.stages": STAGES})
        learned = build_run(sample, out, {"run.stages": [*STAGES, "train_localizer", "localize"]})
        with open(os.path.join(out, "work", "train_localizer", "train_summary.json")) as fh:
            summary = json.load(fh)
        fusion = build_run(sample, out, {"run.stages": [*STAGES, "localize"], "stages.localize.method": "fusion-object"})
    stages = learned["stages"]
    clips = stages["train_localizer"]["kept"]
    train_s = stages["train_localizer"]["wall_s"]
    return {
        "clips": clips, "members": train.ensemble, "steps_per_member": train.steps, "batch_size": train.batch_size,
        "train_localizer_s": round(train_s, 1), "steps_per_s": round(train.steps * train.ensemble / train_s, 2),
        "loss_first10": summary["first_loss"], "loss_last10": summary["final_loss"], "chance_loss": summary["chance_loss"],
        "localize_fusion_learned_s_per_clip": round(stages["localize"]["wall_s"] / clips, 2),
        "localize_fusion_object_s_per_clip": round(fusion["stages"]["localize"]["wall_s"] / clips, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
