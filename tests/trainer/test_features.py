"""Feature shards: contract, size limit, one latent normalisation for both ears, per-shard resume."""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from trainer import features as ft
from trainer.stream import shard_list, tar_samples


def test_feature_shards_contract(features_dir, codec_path):
    info = json.load(open(os.path.join(features_dir, "features.json")))
    assert len(info["latent_mean"]) == len(info["latent_std"]) == info["latent_dim"]  # one set for both ears
    assert info["latent_rate"] == 31.25
    assert info["bytes_per_clip"]["max"] <= ft.MAX_CLIP_BYTES
    shards = shard_list(features_dir, "train")
    assert shards.samples == 16
    sample = ft.decode_members(next(tar_samples(iter(shards.urls))))
    assert sample["lat"].shape == (2, 64, info["latent_dim"])  # ceil(32000 / 512) + 1 frames
    assert sample["spatial"].shape[1] == 5 and sample["text"].shape == (1, 384)
    assert sample["vis"].shape[0] == 0  # no video in these clips: the model uses its null


def test_featurize_resumes_and_is_deterministic(syn_shards, codec_path, features_dir, tmp_path):
    again = ft.featurize(syn_shards, features_dir, codec_path, visual_size=64)
    assert again["input_shards_encoded"] == 0 and again["shards_written"] == []
    fresh = str(tmp_path / "features")
    os.makedirs(fresh)
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)  # the bytes must not depend on the caller's threads
    try:
        ft.featurize(syn_shards, fresh, codec_path, visual_size=64)
    finally:
        torch.set_num_threads(threads)
    for name in ("train-000000.tar", "test-000000.tar", "sizes.json"):
        assert open(os.path.join(fresh, name), "rb").read() == open(os.path.join(features_dir, name), "rb").read()
    a = json.load(open(os.path.join(fresh, "features.json")))["latent_std"]
    b = json.load(open(os.path.join(features_dir, "features.json")))["latent_std"]
    assert np.allclose(a, b)
