"""The learned localiser: it learns which of two objects sounds, and its trainer is deterministic,
resumable and loadable as `learned:<path>`."""

import os

import numpy as np
import torch
from scipy import signal

from binauralizer.localize.learned import LocalizerTrainConfig, train_localizer
from binauralizer.pseudobinaural.pseudo_pairs import SourceClip

COLOURS = np.array([[230, 40, 40], [40, 200, 60], [50, 80, 230], [230, 210, 40], [230, 230, 230], [200, 60, 220],
                    [40, 220, 220], [20, 20, 20]], np.uint8)
BANDS = [(200, 300), (400, 600), (800, 1100), (1400, 1900), (2300, 3000), (3500, 4500), (5000, 6000), (6500, 7500)]
K = len(BANDS)


def correspondence_clip(rng, k, seconds=2.0, hw=(96, 160), fps=4.0):
    """Class k sounds (its noise band, bursty); its coloured square and a silent square of another
    class sit at random places on a noisy textured frame. Which square sounds is learnable only
    from the audio-colour co-occurrence across clips."""
    sr, n = 16000, int(seconds * 16000)
    sos = signal.butter(4, BANDS[k], "bandpass", fs=sr, output="sos")
    env = np.repeat(rng.random(int(seconds * 8)) > 0.3, n // int(seconds * 8)).astype(float)
    audio = (signal.sosfilt(sos, rng.standard_normal(n)) * env).astype(np.float32)
    other = int((k + rng.integers(1, K)) % K)
    h, w = hw
    frame = rng.integers(40, 120, (h, w, 3)).astype(np.uint8)
    side = h // 3
    x0, x1 = rng.choice([rng.integers(0, w // 2 - side), rng.integers(w // 2, w - side)], 2, replace=False)
    y0, y1 = rng.integers(0, h - side, 2)
    frame[y0:y0 + side, x0:x0 + side] = COLOURS[k]
    frame[y1:y1 + side, x1:x1 + side] = COLOURS[other]
    truth = (x0 + side / 2) / w, (x1 + side / 2) / w
    frames = np.repeat(frame[None], int(seconds * fps), axis=0)
    return SourceClip(f"c{k}", audio, frames, fps), truth


def test_training_resumes_from_its_checkpoint(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    clips = [correspondence_clip(rng, k % K)[0] for k in range(8)]
    cfg = LocalizerTrainConfig(steps=6, batch_size=4, dim=16, frame_height=48, frame_width=80, checkpoint_every=3)
    full = train_localizer(clips, str(tmp_path / "full"), cfg)
    import dataclasses

    train_localizer(clips, str(tmp_path / "resumed"), dataclasses.replace(cfg, steps=3))
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    state["config"] = dataclasses.asdict(cfg)  # the same run, continued to 6 steps
    torch.save(state, tmp_path / "resumed" / "checkpoint.pt")
    resumed = train_localizer(clips, str(tmp_path / "resumed"), cfg)
    assert resumed["history"] == full["history"]
    assert os.path.exists(tmp_path / "resumed" / "localizer.pt")
    from binauralizer.localize import build_localiser

    clip = clips[0]
    maps = build_localiser(f"learned:{resumed['model']}").heatmaps(clip.frames, clip.audio)
    assert maps.shape[0] == len(clip.frames) and 0.0 <= maps.min() and maps.max() == 1.0


def sounding_side_accuracy(model_path, clips_truths) -> float:
    """Fraction of clips whose clip-mean heatmap is hotter in the sounding square's column than in
    the silent distractor's (they sit in opposite halves: chance is 50 %)."""
    from binauralizer.localize import build_localiser

    loc = build_localiser(f"learned:{model_path}")
    hits = []
    for clip, (u_sound, u_silent) in clips_truths:
        col = loc.heatmaps(clip.frames, clip.audio).mean(axis=(0, 1))
        w = len(col)
        hits.append(col[min(w - 1, int(u_sound * w))] > col[min(w - 1, int(u_silent * w))])
    return float(np.mean(hits))


def test_learned_localiser_finds_the_sounding_object_among_distractors(tmp_path):
    """Trained label-free on 128 clips, on 48 held-out clips (other colours' positions, other noise,
    other backgrounds) the map is hotter on the sounding square than on the silent one in 83 % of
    clips (chance 50 %); the loss falls below chance log(batch)."""
    torch.set_num_threads(1)
    train = [correspondence_clip(np.random.default_rng((0, i)), i % K, fps=1.0)[0] for i in range(128)]
    held_out = [correspondence_clip(np.random.default_rng((1, i)), i % K, fps=1.0) for i in range(48)]
    cfg = LocalizerTrainConfig(steps=150, batch_size=16, dim=32, frame_height=96, frame_width=160, frames_per_clip=1)
    out = train_localizer(train, str(tmp_path / "loc"), cfg)
    history = out["history"]
    assert np.mean(history[-20:]) < 0.7 * np.log(cfg.batch_size), (np.mean(history[-20:]), np.log(cfg.batch_size))
    accuracy = sounding_side_accuracy(out["model"], held_out)
    assert accuracy >= 0.72, f"sounding square chosen in {accuracy:.0%} of held-out clips (chance 50 %)"



def test_a_pool_too_big_for_the_cache_streams_the_same_training(tmp_path):
    """cache_mb bounds the cached feature maps; above it each step reads its clips' moments itself
    (one frame decoded per drawn clip, so lazy clips stay lazy) and trains the same steps."""
    import dataclasses

    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    clips = [correspondence_clip(rng, k % K, fps=2.0)[0] for k in range(6)]
    cfg = LocalizerTrainConfig(steps=3, batch_size=4, dim=16, frame_height=64, frame_width=96, frames_per_clip=2)
    cached = train_localizer(clips, str(tmp_path / "cached"), cfg)["history"]
    streamed = train_localizer(clips, str(tmp_path / "streamed"), dataclasses.replace(cfg, cache_mb=0))["history"]
    assert np.allclose(cached, streamed, atol=1e-3), (cached, streamed)


def test_an_ensemble_is_its_members_averaged_and_resumes_member_by_member(tmp_path, monkeypatch):
    """ensemble: 2 trains members from seeds 0 and 1 (each exactly the single-model run of that seed),
    saves one file that `learned:<path>` loads, whose map is the mean of the members' per-frame
    normalised maps; a rerun after the first member finished trains only the second."""
    import dataclasses

    from binauralizer.localize import build_localiser

    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    clips = [correspondence_clip(rng, k % K)[0] for k in range(6)]
    cfg = LocalizerTrainConfig(steps=4, batch_size=4, dim=16, frame_height=48, frame_width=80, ensemble=2)
    from binauralizer.localize import learned

    caches = []

    class CountedCache(learned._ClipCache):
        def __init__(self, *args, **kwargs):
            caches.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(learned, "_ClipCache", CountedCache)
    out = train_localizer(clips, str(tmp_path / "ens"), cfg)
    assert len(caches) == 1  # the members share one pass of the frozen backbone over the clips
    streamed = train_localizer(clips, str(tmp_path / "ens_streamed"), dataclasses.replace(cfg, cache_mb=0))
    assert np.allclose(streamed["history"], out["history"], atol=1e-3)  # a pool too big to cache: the same
    singles = [train_localizer(clips, str(tmp_path / f"single{s}"), dataclasses.replace(cfg, ensemble=1, seed=s))
               for s in (0, 1)]
    assert out["history"] == [round((a + b) / 2, 5) for a, b in zip(singles[0]["history"], singles[1]["history"])]
    from binauralizer.localize.learned import _member_line

    said = []
    _member_line(said.append, 1, 3, 200, "learned localiser: step 25/200 loss 1.000")
    assert said == ["learned localiser: step 225/600 loss 1.000 (member 2/3)"]  # one progress over all members
    clip = clips[0]
    maps = build_localiser(f"learned:{out['model']}").heatmaps(clip.frames, clip.audio)
    members = [build_localiser(f"learned:{s['model']}").heatmaps(clip.frames, clip.audio) for s in singles]
    per_frame = [m / m.reshape(len(m), -1).max(axis=1)[:, None, None] for m in members]
    expected = (per_frame[0] + per_frame[1]) / 2
    np.testing.assert_allclose(maps, expected / expected.max(), atol=1e-5)
    assert not np.allclose(members[0], members[1], atol=1e-3)  # two seeds, two different maps
    # the frozen ImageNet backbone is stored and held once, not once per member
    assert os.path.getsize(out["model"]) < 1.2 * os.path.getsize(singles[0]["model"])
    ensemble = build_localiser(f"learned:{out['model']}").module
    assert ensemble.members[1].backbone is ensemble.members[0].backbone
    # resume: member 0 is done, member 1 lost its files; only member 1 trains again, to the same bytes
    first = open(out["model"], "rb").read()
    import shutil

    shutil.rmtree(tmp_path / "ens" / "member_1")
    done = os.stat(tmp_path / "ens" / "member_0" / "checkpoint.pt").st_mtime_ns
    again = train_localizer(clips, str(tmp_path / "ens"), cfg)
    assert open(again["model"], "rb").read() == first
    assert os.stat(tmp_path / "ens" / "member_0" / "checkpoint.pt").st_mtime_ns == done  # not trained again
