"""Fast diagnostic loop for the localisers on the spatial evaluation's scenes (not a test, not a benchmark).

For a subset of samplegen.spatial_scenes (frames and audio cached as .npz in a scratch folder), it
prints per scene the true azimuth track against each localiser's track (one value per second),
each localiser's side agreement on lateral frames (|true az| > 15 degrees, predicted az of the
same sign and at least 5 degrees off centre: a proxy of eval_spatial's ILD-based side figure), and
the median |error| of the heatmap's peak column; with --png it saves heatmap overlays to look at.
With --why it also prints the semantic localiser's evidence chain: the clip's YAMNet tags, the
ImageNet classes the label bridge picks for them, and what MobileNetV2 itself sees in the crop
around the true position (is it the tags, the bridge, the classifier, or the track?).

    PYTHONPATH=. python benchmarks/diag_localise.py [--scenes 0,1,4,10,18,22] [--png DIR] [--why]
        [--localisers motion,semantic,fusion-add]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from samplegen import spatial_scenes  # noqa: E402

DEFAULT_SCENES = (0, 1, 4, 7, 10, 13, 18, 22)  # static L/R among distractors, static alone, moving
CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), "binauralize-diag-localise")


def cached_scene(i: int) -> dict:
    """Scene i's frames, mono, true path and kind (cached: building a scene takes ~1 s)."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"scene{i:02d}.npz")
    if not os.path.exists(path):
        sc = spatial_scenes.scene(i)
        np.savez(path, frames=sc.frames, mono=sc.mono, az=sc.az_deg, el=sc.el_deg, t=sc.times_s,
                 scene_id=sc.scene_id, source=sc.source)
    d = np.load(path)
    return {k: d[k] for k in d.files}


def side_agreement(pred_az: np.ndarray, true_az: np.ndarray, min_deg: float = 5.0) -> float:
    lateral = np.abs(true_az) > 15.0
    if not lateral.any():
        return float("nan")
    ok = (np.sign(pred_az) == np.sign(true_az)) & (np.abs(pred_az) >= min_deg)
    return float(ok[lateral].mean())


def peak_u(maps: np.ndarray) -> np.ndarray:
    """(T,) the heatmap's peak column as a fraction of the width."""
    cols = maps.max(axis=1)
    return (cols.argmax(axis=1) + 0.5) / cols.shape[1]


def overlay(frame: np.ndarray, heat: np.ndarray, true_u: float) -> np.ndarray:
    """The frame with the heatmap (red) blended in and the true position as a green line."""
    import torch
    from torch.nn import functional as F

    h, w = frame.shape[:2]
    m = F.interpolate(torch.from_numpy(heat[None, None].astype(np.float32)), size=(h, w), mode="bilinear")[0, 0]
    m = (m / max(float(m.max()), 1e-9)).numpy()[..., None]
    out = frame.astype(np.float32) * (1 - 0.6 * m) + 0.6 * m * np.array([255.0, 0, 0])
    x = int(np.clip(true_u * w, 0, w - 1))
    out[:, max(0, x - 1): x + 1] = (0, 255, 0)
    return out.clip(0, 255).astype(np.uint8)


def why_semantic(loc, d: dict) -> None:
    """Print the semantic evidence chain for one scene."""
    import torch

    from binauralizer.localize.semantic import imagenet_synonyms
    from binauralizer.localize.yamnet import class_names
    from binauralizer.pseudobinaural.backbones import to_imagenet_tensor

    names, inet = class_names(), imagenet_synonyms()
    tags = loc.audio_tags(d["mono"])
    top = np.flatnonzero(tags)[np.argsort(-tags[np.flatnonzero(tags)])]
    print("    tags  :", ", ".join(f"{names[i]}={tags[i]:.2f}" for i in top))
    v = (torch.from_numpy(tags.astype(np.float32)) @ loc.bridge).numpy()
    print("    bridge:", "; ".join(f"{inet[j].split(',')[0]}={v[j]:.3f}" for j in np.argsort(-v)[:5]))
    frame = d["frames"][0]
    h, w = frame.shape[:2]
    u = 0.5 - d["az"][0] / spatial_scenes.FOV_DEG
    x0 = int(np.clip(u * w - h / 2, 0, w - h))
    with torch.no_grad():
        p = loc.net(to_imagenet_tensor(frame[None, :, x0: x0 + h])).softmax(-1)[0].numpy()
    print("    crop  :", "; ".join(f"{inet[j].split(',')[0]}={p[j]:.2f}" for j in np.argsort(-p)[:4]))


def main(argv=None) -> None:
    import torch

    from binauralizer.localize import build_localiser
    from binauralizer.localize.trajectory import trajectory_from_heatmaps

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default=",".join(map(str, DEFAULT_SCENES)))
    ap.add_argument("--localisers", default="motion,semantic")
    ap.add_argument("--png", default="", help="folder for heatmap overlays (frames 0, 40 and 79 of each scene)")
    ap.add_argument("--why", action="store_true", help="print the semantic localiser's evidence chain")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ids = [int(s) for s in args.scenes.split(",") if s]
    locs = {name: build_localiser(name) for name in args.localisers.split(",")}
    sides: dict[str, list] = {n: [] for n in locs}
    secs: dict[str, list] = {n: [] for n in locs}
    for i in ids:
        d = cached_scene(i)
        true_az, fov = d["az"], spatial_scenes.FOV_DEG
        true_u = 0.5 - true_az / fov
        print(f"{str(d['scene_id'])} ({d['source']})")
        print(f"  {'true':22s}", " ".join(f"{a:+4.0f}" for a in true_az[::8]))
        rows = []
        for name, loc in locs.items():
            t0 = time.process_time()
            maps = loc.heatmaps(d["frames"], d["mono"])
            secs[name].append(time.process_time() - t0)
            traj = trajectory_from_heatmaps(maps, fov_deg=fov)
            s = side_agreement(traj[:, 0], true_az)
            sides[name].append(s)
            err = np.median(np.abs(peak_u(maps) - true_u))
            print(f"  {name:22s}", " ".join(f"{a:+4.0f}" for a in traj[::8, 0]),
                  f"| side {s:4.0%} | peak |du| {err:.2f}")
            rows.append(np.concatenate([overlay(d["frames"][k], maps[k], true_u[k]) for k in (0, 40, 79)], 1))
            if args.why and name == "semantic":
                why_semantic(loc, d)
        if args.png:
            from PIL import Image

            os.makedirs(args.png, exist_ok=True)
            Image.fromarray(np.concatenate(rows, 0)).save(os.path.join(args.png, f"{d['scene_id']}.png"))
    print("mean side (proxy) / CPU s per clip:")
    for name in locs:
        print(f"  {name:22s} {np.nanmean(sides[name]):4.0%}  {np.mean(secs[name]):.2f} s")


if __name__ == "__main__":
    main()
