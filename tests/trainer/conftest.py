"""Synthetic binaural shards (KEMAR at +-60 deg, matching S_sound), their codec and feature shards.

Built once per session and shared by the trainer tests; small (2 s clips) so they run in seconds.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def syn_shards(tmp_path_factory) -> str:
    from trainer.synthetic import write_dataset

    out = str(tmp_path_factory.mktemp("trainer") / "shards")
    return write_dataset(out, n_train=16, n_test=4, seconds=2.0, seed=0, samples_per_shard=4, video=False)


@pytest.fixture(scope="session")
def codec_path(syn_shards) -> str:
    from trainer import roundtrip

    path = os.path.join(os.path.dirname(syn_shards), "codec.pt")
    roundtrip.fit(syn_shards, path)
    return path


@pytest.fixture(scope="session")
def features_dir(syn_shards, codec_path) -> str:
    from trainer.features import featurize

    out = os.path.join(os.path.dirname(syn_shards), "features")
    featurize(syn_shards, out, codec_path, visual_size=64)
    return out


TINY_STEPS = 150


def tiny_overrides(**extra) -> dict:
    """The `tiny` config as the tests train it: in-process friendly, one torch thread."""
    return {"steps": TINY_STEPS, "num_workers": 1, "checkpoint_every": 50, "threads": 1, **extra}


@pytest.fixture(scope="session")
def tiny_run(features_dir) -> dict:
    """`tiny` trained on the synthetic feature shards (shared by the loss, sampling and mirror tests)."""
    from trainer import train

    out = os.path.join(os.path.dirname(features_dir), "tiny_run")
    summary = train.train(train.get_config("tiny", tiny_overrides()), features_dir, out, device="cpu", progress=False)
    return {"out": out, **summary}
