"""Data-parallel training on 2 Ray Train CPU workers (gloo): both train, only global rank 0 writes."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import tiny_overrides


@pytest.mark.slow
def test_two_ray_train_workers_only_rank0_writes(features_dir, tmp_path):
    import ray

    from trainer import train

    out = str(tmp_path / "ddp")
    cfg = train.get_config("tiny", tiny_overrides(steps=4, checkpoint_every=2, num_workers=0))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = train.train_with_ray(cfg, features_dir, out, num_workers=2, use_gpu=False)
    finally:
        ray.shutdown()
    assert summary["world_size"] == 2 and summary["step"] == 4
    with open(os.path.join(out, "log.jsonl")) as fh:
        assert [json.loads(line)["step"] for line in fh] == [1, 2, 3, 4]  # one writer, not two
    ckpts = sorted(os.listdir(os.path.join(out, "checkpoints")))
    assert [c.split("_step")[1] for c in ckpts] == ["00000002.pt", "00000004.pt"]
    state = torch.load(os.path.join(out, "checkpoints", ckpts[-1]), map_location="cpu", weights_only=False)
    assert state["world_size"] == 2 and state["written_by_rank"] == 0 and len(state["rng"]) == 2
    assert sorted(f for f in os.listdir(out) if f != "ray_results") == [
        "checkpoints", "config.json", "log.jsonl", "train_summary.json"]
