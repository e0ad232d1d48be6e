"""SpatialV2A trainer on 2 CPU cores: loader vs training throughput, encoding rate, codec, model sizes.

On a synthetic dataset in the shard contract (10 s clips, MIT KEMAR at +-60 deg, a 64x64 video
each): the codec's round trip (reference_errors against the clip, per-channel Griffin-Lim
beside it; targets |dITD| <= 20 us and |dILD| <= 1 dB on every clip); the raw-mode encoding rate (`featurize`: codec, MobileNetV2 at 8 fps, frame
differences, MiniLM); the loader's samples/s from the feature shards (one DataLoader worker,
tiny's crops, one 4096-sample epoch as on a real dataset; the 12-clip default epoch, which restarts
the worker every batch or two, is reported beside it) against the `tiny` model's training samples/s
with the same stream, measured one after the other in this process (the loader must be at least 3x faster so it never starves training); parameter
counts of `paper` and `tiny` beside MMAudio-S (157 M, 4 joint + 8 single-stream blocks; the
paper's 6 + 2 x 12 blocks at MMAudio-S width are bigger).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MMAUDIO_S_PARAMS = 157_000_000


def _loader_rate(cfg, features: str, batches: int) -> float:
    from trainer import train

    data = train.open_data(cfg, features)
    stream = train.make_stream(cfg, data, 0, 1, epoch=0, skip=0)
    started, n = time.time(), 0
    epoch = 0
    while n < batches * cfg.batch_size:
        for b in train.st.loader(stream, cfg.num_workers):
            n += b["latent"].shape[0]
            if n >= batches * cfg.batch_size:
                break
        epoch += 1
        stream = train.make_stream(cfg, data, 0, 1, epoch=epoch, skip=0)
    return n / (time.time() - started)


def run() -> dict:
    import torch

    from trainer import roundtrip, train
    from trainer.features import featurize
    from trainer.model import ModelConfig, SpatialV2A, count_parameters
    from trainer.synthetic import write_dataset

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        shards = write_dataset(os.path.join(tmp, "shards"), n_train=12, n_test=2, seconds=10.0, seed=0,
                               samples_per_shard=4, video=True)
        codec_path = os.path.join(tmp, "codec.pt")
        t0 = time.time()
        codec = roundtrip.fit(shards, codec_path)
        fit_s = time.time() - t0
        rt = roundtrip.evaluate(codec, shards, "test", max_clips=2)
        t0 = time.time()
        feats = featurize(shards, os.path.join(tmp, "features"), codec_path, visual_size=112)
        encode_s = time.time() - t0

        # one long epoch, as on a real dataset: with 12 clips the default epoch is 1-2 batches and each
        # epoch starts a fresh DataLoader worker (not persistent: the epoch is in every seed), which
        # would time process start-up, not streaming; the short-epoch figure is reported beside it
        cfg = train.get_config("tiny", {"steps": 30, "checkpoint_every": 1000, "num_workers": 1, "threads": 2,
                                        "samples_per_epoch": 4096})
        loader = _loader_rate(cfg, os.path.join(tmp, "features"), batches=40)
        short_epochs = _loader_rate(train.get_config("tiny", {"num_workers": 1, "threads": 2}),
                                    os.path.join(tmp, "features"), batches=20)
        summary = train.train(cfg, os.path.join(tmp, "features"), os.path.join(tmp, "run"), device="cpu",
                              progress=False)
        training = summary["samples_per_s"]
        paper = count_parameters(SpatialV2A(ModelConfig(latent_dim=codec.dim, **{
            k: v for k, v in train.CONFIGS["paper"].model.to_dict().items() if k != "latent_dim"})))
        tiny = count_parameters(SpatialV2A(ModelConfig(latent_dim=codec.dim, **{
            k: v for k, v in train.CONFIGS["tiny"].model.to_dict().items() if k != "latent_dim"})))
    return {
        "codec": f"{codec.kind}, {codec.dim} dims per ear at {codec.rate:g}/s",
        "codec_fit_s": fit_s,
        "codec_d_itd_us": rt["codec_d_itd_us"], "codec_d_ild_db": rt["codec_d_ild_db"],
        "codec_d_ipd_rad": rt["codec_d_ipd_rad"], "codec_max_d_ild_db": rt["max_codec_d_ild_db"],
        "codec_max_d_itd_us": rt["max_codec_d_itd_us"], "codec_snr_db": rt["codec_snr_db"],
        "codec_d_itd_below_1500hz_us": rt["codec_d_itd_lf_us"], "codec_max_d_itd_below_1500hz_us": rt["max_codec_d_itd_lf_us"],
        "griffin_lim_d_itd_below_1500hz_us": rt["griffin_lim_d_itd_lf_us"],
        "codec_meets_targets_itd20us_ild1db": rt["passes"],
        "griffin_lim_d_itd_us": rt["griffin_lim_d_itd_us"], "griffin_lim_d_ild_db": rt["griffin_lim_d_ild_db"],
        "griffin_lim_d_ipd_rad": rt["griffin_lim_d_ipd_rad"],
        "raw_encoding_clips_per_s": feats["samples"] / encode_s,
        "feature_bytes_per_clip_max": feats["bytes_per_clip"]["max"], "feature_bytes_limit": feats["bytes_per_clip"]["limit"],
        "loader_samples_per_s": loader,
        "loader_samples_per_s_12_sample_epochs": short_epochs,
        "tiny_train_samples_per_s": training,
        "loader_over_training": loader / training if training else float("nan"),
        "loader_at_least_3x_training": bool(training and loader >= 3 * training),
        "tiny_loss_first_last": [summary["loss_first"], summary["loss_last"]],
        "params_paper_M": paper / 1e6, "params_tiny_M": tiny / 1e6, "params_mmaudio_s_M": MMAUDIO_S_PARAMS / 1e6,
        "load_average_at_end": os.getloadavg()[0],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1, default=str))
