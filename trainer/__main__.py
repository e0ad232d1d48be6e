"""`python -m trainer {codec,featurize,train,sample,eval}`: the SpatialV2A trainer's commands.

Typical run on a dataset built by `make build-dataset` (OUT = runs/sample):

    python -m trainer codec     --shards OUT/shards --out OUT/trainer/codec.pt
    python -m trainer featurize --shards OUT/shards --codec OUT/trainer/codec.pt --out OUT/features
    python -m trainer train     --data OUT/features --config tiny --out OUT/trainer/tiny
    python -m trainer sample    --ckpt OUT/trainer/tiny/checkpoints/<id>_step00000200.pt --video V.mp4 --out gen/v
    python -m trainer eval      --ckpt ... --data OUT/features --split test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import yaml

log = logging.getLogger("trainer")


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE (e.g. --set steps=50 --set model.hidden=128)")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def cmd_codec(args) -> int:
    from trainer import roundtrip

    report = roundtrip.run(args.shards, args.out, args.high_dim, args.max_clips, args.eval_clips)
    print(roundtrip.table(report))
    print(f"codec: {args.out} (latent dim {report['codec']['dim']} per ear at {report['codec']['rate']:g}/s); "
          f"report: {args.out.removesuffix('.pt')}.roundtrip.json")
    return 0


def cmd_featurize(args) -> int:
    from trainer import features

    summary = features.featurize(args.shards, args.out, args.codec, executor=args.executor, num_gpus=args.num_gpus,
                                 num_actors=args.num_actors, visual_size=args.visual_size,
                                 max_shard_bytes=args.max_shard_bytes, clip=args.clip, synchformer=args.synchformer,
                                 progress=lambda url: log.info("encoded %s", url))
    print(json.dumps(summary, indent=1))
    return 0


def cmd_train(args) -> int:
    from trainer import train

    overrides = _overrides(args.set)
    if args.mode:
        overrides["mode"] = args.mode
    if args.codec:
        overrides["codec"] = args.codec
    if args.exact_epoch:
        overrides["exact_epoch"] = True
    if args.steps is not None:
        overrides["steps"] = args.steps
    cfg = train.get_config(args.config, overrides)
    if args.ray_workers:
        summary = train.train_with_ray(cfg, args.data, args.out, args.ray_workers, use_gpu=args.num_gpus > 0)
    else:
        summary = train.train(cfg, args.data, args.out, device=args.device, progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


def cmd_sample(args) -> int:
    from trainer import generate

    out = generate.sample_video(args.ckpt, args.video, args.out, spatial=args.spatial, caption=args.caption,
                                seconds=args.seconds, steps=args.steps, cfg=args.cfg, seed=args.seed, codec=args.codec)
    print(json.dumps(out, indent=1))
    return 0


def cmd_eval(args) -> int:
    from trainer import evaluate

    report = evaluate.evaluate(args.ckpt, args.data, args.split, args.max_clips, args.steps, args.cfg, args.seconds,
                               args.codec, args.audiobox)
    out = args.out or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.ckpt))), f"eval_{args.split}.json")
    evaluate.write(report, out)
    print(evaluate.table(report))
    print(f"report: {out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("codec", help="fit the offline codec on a dataset; report its round trip",
                       description="Fit the split-band codec (each ear's exact MDCT below 4 kHz; above, "
                       "the mid's MDCT-PCA and each ear's per-band complex ratio to it; keeps ITD and IPD) on the train split of OUT/shards and report the round trip "
                       "(reference_errors: |dITD|, |dILD|) beside per-channel Griffin-Lim. MMAudio's VAE + BigVGAN, "
                       "when you have the files, are used with --codec mmaudio:VAE,VOCODER in featurize/train.")
    c.add_argument("--shards", required=True, help="dataset shard folder or URL (OUT/shards; has sizes.json)")
    c.add_argument("--out", required=True, help="codec file to write (e.g. OUT/trainer/codec.pt)")
    c.add_argument("--high-dim", type=int, default=32,
                   help="PCA dimensions of the mid above 4 kHz (default 32: 320 latent dims per ear, which keeps a "
                   "10 s clip's features under 0.5 MB)")
    c.add_argument("--max-clips", type=int, default=None, help="fit on at most this many clips")
    c.add_argument("--eval-clips", type=int, default=8, help="clips of the test split to measure (default 8)")
    c.set_defaults(fn=cmd_codec)

    f = sub.add_parser("featurize", help="write companion feature shards (OUT/features)",
                       description="Encode every clip of OUT/shards into feature shards: fp16 per-ear latents, "
                       "visual (MobileNetV2, 8 fps), sync (frame differences, 24 fps), text (MiniLM of `caption`), "
                       "S_sound; plus features.json with one latent mean/std for both ears. Deterministic; a rerun "
                       "redoes only unfinished shards.")
    f.add_argument("--shards", required=True, help="dataset shard folder or URL (OUT/shards)")
    f.add_argument("--codec", required=True, help="codec.pt from `python -m trainer codec`, or mmaudio:VAE,VOCODER")
    f.add_argument("--out", required=True, help="output folder (OUT/features)")
    f.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: in this process; ray: one actor per --num-actors (RAY_ADDRESS joins a cluster)")
    f.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor (0 = CPU)")
    f.add_argument("--num-actors", type=int, default=1)
    f.add_argument("--visual-size", type=int, default=112, help="frame size for the visual encoder (default 112)")
    f.add_argument("--max-shard-bytes", type=int, default=1 << 30)
    f.add_argument("--clip", default=None, metavar="ARCH:PATH",
                   help="the paper's visual encoder: an open_clip model name and a local state dict (e.g. "
                   "ViT-B-16:/models/clip.bin; needs open_clip_torch); default: MobileNetV2 (offline)")
    f.add_argument("--synchformer", default=None, metavar="PATH",
                   help="the paper's sync encoder: MMAudio's synchformer_state_dict.pth (needs the mmaudio package); "
                   "default: frame differences (offline)")
    f.set_defaults(fn=cmd_featurize)

    t = sub.add_parser("train", help="train SpatialV2A (resumes the newest matching checkpoint)",
                       description="Train the dual-branch CFM model by streaming feature shards (or raw shards "
                       "with --mode raw). Resumes RUN/checkpoints/<identity>_stepN.pt when the configuration and "
                       "data match. DDP: run under torchrun (RANK/WORLD_SIZE), or pass --ray-workers N.")
    t.add_argument("--data", required=True, help="OUT/features (features mode) or OUT/shards (raw mode)")
    t.add_argument("--out", required=True, help="run folder: checkpoints/, log.jsonl, train_summary.json")
    t.add_argument("--config", default="tiny", help="tiny | paper")
    t.add_argument("--mode", choices=("features", "raw"), default=None)
    t.add_argument("--codec", default=None, help="raw mode: the codec file")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--exact-epoch", action="store_true", help="every key once per epoch (needs shards >= ranks x workers)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. --set batch_size=16")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--ray-workers", type=int, default=0, help="train on N Ray Train workers (gloo on CPU)")
    t.add_argument("--num-gpus", type=float, default=0.0, help="with --ray-workers: one GPU per worker when > 0")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="generate binaural audio for a video",
                       description="Write OUT.wav (2 channels, 16 kHz, row 0 = left) and OUT.mp4 (the video with it). "
                       "S_sound comes from the motion localiser on the video, or --spatial S.npy ((T, 5) at 8 fps).")
    s.add_argument("--ckpt", required=True)
    s.add_argument("--video", required=True)
    s.add_argument("--out", required=True, help="output path without extension")
    s.add_argument("--spatial", default=None, help="S_sound .npy instead of the localiser")
    s.add_argument("--caption", default=None, help="text condition (default: none, the null embedding)")
    s.add_argument("--seconds", type=float, default=None, help="length (default: the video's)")
    s.add_argument("--steps", type=int, default=25, help="Euler steps (25)")
    s.add_argument("--cfg", type=float, default=4.5, help="classifier-free guidance (4.5)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--codec", default=None, help="override the checkpoint's codec path")
    s.set_defaults(fn=cmd_sample)

    e = sub.add_parser("eval", help="score generated against reference audio on a split",
                       description="clip_metrics and reference_errors per clip, FD and KL from YAMNet logits of the "
                       "downmix (the paper's PANNs/PaSST are unavailable offline), Audiobox when a checkpoint exists. "
                       "Writes a JSON and prints a table.")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--data", required=True, help="OUT/features or OUT/shards")
    e.add_argument("--split", default="test")
    e.add_argument("--max-clips", type=int, default=None)
    e.add_argument("--steps", type=int, default=25)
    e.add_argument("--cfg", type=float, default=4.5)
    e.add_argument("--seconds", type=float, default=None, help="evaluate the first N seconds of each clip")
    e.add_argument("--codec", default=None)
    e.add_argument("--audiobox", default=None, help="Audiobox Aesthetics checkpoint.pt")
    e.add_argument("--out", default=None, help="JSON path (default: RUN/eval_SPLIT.json)")
    e.set_defaults(fn=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
