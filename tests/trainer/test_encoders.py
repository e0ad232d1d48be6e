"""The paper's encoders load only from local files, with errors that say what is missing; otherwise
the offline defaults (MobileNetV2, frame differences) are used. No CLIP or Synchformer weights exist
offline, so no test loads the real networks (see README)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from trainer import encoders as enc
from trainer import paper_encoders as pe


def test_missing_checkpoint_files_are_named(tmp_path):
    with pytest.raises(pe.EncoderError, match=r"--clip .*nope\.bin.*file not found.*offline default"):
        pe.ClipVisual(f"ViT-B-16:{tmp_path}/nope.bin", torch.device("cpu"))
    with pytest.raises(pe.EncoderError, match=r"--synchformer .*sync\.pth.*file not found"):
        pe.SynchformerSync(str(tmp_path / "sync.pth"), torch.device("cpu"))
    with pytest.raises(pe.EncoderError, match=r"expected ARCH:PATH"):
        pe.ClipVisual("clip.bin", torch.device("cpu"))


def test_missing_packages_are_named(tmp_path, monkeypatch):
    state = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, state)
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "mmaudio", None)
    with pytest.raises(pe.EncoderError, match=r"open_clip package \(pip install open_clip_torch\)"):
        pe.ClipVisual(f"ViT-B-16:{state}", torch.device("cpu"))
    with pytest.raises(pe.EncoderError, match=r"MMAudio's Synchformer code"):
        pe.SynchformerSync(str(state), torch.device("cpu"))


def test_featurize_stops_before_any_work_on_a_missing_checkpoint(syn_shards, codec_path, tmp_path, capsys):
    from trainer.__main__ import main

    out = tmp_path / "features"
    code = main(["featurize", "--shards", syn_shards, "--codec", codec_path, "--out", str(out),
                 "--clip", f"ViT-B-16:{tmp_path}/missing.bin"])
    assert code == 2
    assert "missing.bin" in capsys.readouterr().err
    assert not out.exists() or not any(n.endswith(".tar") for n in os.listdir(out))


def test_offline_defaults_without_checkpoints(features_dir):
    from trainer import train

    info = json.load(open(os.path.join(features_dir, "features.json")))
    assert info["encoders"]["visual"]["encoder"].startswith("mobilenet_v2")
    assert info["encoders"]["visual"]["dim"] == enc.VISUAL_DIM
    assert info["encoders"]["sync"]["encoder"] == "frame-difference"
    cfg = train.get_config("tiny")
    cfg = train.with_data(cfg, train.open_data(cfg, features_dir))  # what training builds its model from
    assert cfg.clip is None and cfg.synchformer is None
    assert (cfg.model.visual_dim, cfg.model.sync_dim) == (enc.VISUAL_DIM, enc.SYNC_DIM)
    assert cfg.model.latent_dim == info["latent_dim"] == 320
