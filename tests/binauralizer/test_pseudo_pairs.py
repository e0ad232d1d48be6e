"""Pseudo pairs: reproducible scenes whose picture and binaural audio agree on direction."""

import numpy as np

from runhelpers import write_ingested
import pytest
import torch

from binauralizer import metrics
from binauralizer.hrir import load_hrirs
from binauralizer.pseudobinaural.pseudo_pairs import (
    CANVAS_HW,
    HEAT_HW,
    PairConfig,
    PseudoPairGenerator,
    canvas_to_direction,
    crop_patch,
)
from binauralizer.testing import synthetic_pool
from stages.base import RunContext
from stages.train_unet import load_pool


def direction_to_canvas(az_deg, el_deg, canvas_hw=CANVAS_HW, fov=2.0 / 3.0):
    """The inverse of canvas_to_direction, for checking it (test-only)."""
    h, w = canvas_hw
    return w / 2 - az_deg / (fov * 180.0) * w, h / 2 - el_deg / 90.0 * h


@pytest.fixture(scope="module")
def kemar():
    return load_hrirs("kemar")


@pytest.fixture(scope="module")
def generator(kemar):
    return PseudoPairGenerator(synthetic_pool(6, seed=0), kemar, seed=11)


def test_several_heads_are_drawn_per_scene(kemar):
    gen = PseudoPairGenerator(synthetic_pool(6, seed=0), [kemar, load_hrirs("sonicom-1")], seed=11,
                              config=PairConfig(source_count_probs=(1.0,)))
    one = PseudoPairGenerator(synthetic_pool(6, seed=0), kemar, seed=11, config=PairConfig(source_count_probs=(1.0,)))
    differ = [not np.allclose(gen[i].binaural, one[i].binaural, atol=1e-6) for i in range(12)]
    assert 2 <= sum(differ) <= 10  # some scenes through SONICOM, the others identical to KEMAR-only


def test_canvas_geometry_spans_plus_minus_60_and_45_degrees():
    assert canvas_to_direction(0, 180) == pytest.approx((60.0, 0.0))
    assert canvas_to_direction(640, 180) == pytest.approx((-60.0, 0.0))
    assert canvas_to_direction(320, 0) == pytest.approx((0.0, 45.0))
    assert direction_to_canvas(*canvas_to_direction(123.0, 77.0)) == pytest.approx((123.0, 77.0))


def test_scenes_are_reproducible_from_seed_and_index(generator, kemar):
    a, b = generator[5], generator[5]
    assert np.array_equal(a.binaural, b.binaural) and np.array_equal(a.frame, b.frame)
    again = PseudoPairGenerator(synthetic_pool(6, seed=0), kemar, seed=11)[5]
    assert np.array_equal(a.binaural, again.binaural)
    assert not np.array_equal(generator[6].binaural[:, :100], a.binaural[:, :100])


def test_levels_mixture_and_shapes(generator):
    s = generator[3]
    assert s.binaural.shape == (2, 10080) and s.binaural.dtype == np.float32
    assert s.frame.shape == (360, 640, 3) and s.frame.dtype == np.uint8
    assert np.sqrt(np.mean((s.binaural[0] + s.binaural[1]) ** 2)) == pytest.approx(0.1, rel=1e-4)
    # the network's input is what convert feeds it: the mono clip (here the sources' sum) at RMS 0.1
    assert np.allclose(s.mixture, s.mono * (0.1 / np.sqrt(np.mean(s.mono.astype(np.float64) ** 2))), atol=1e-6)
    assert s.mono.shape == (10080,) and len(s.az_deg) == len(s.clip_ids)
    downmix = PseudoPairGenerator(synthetic_pool(6, seed=0), load_hrirs("kemar"), seed=11,
                                  config=PairConfig(input="downmix"))[3]
    assert np.allclose(downmix.mixture, downmix.binaural[0] + downmix.binaural[1], atol=1e-6)


@pytest.mark.parametrize("az", [60.0, -60.0])
def test_default_pseudo_pair_keeps_the_heads_itd_and_paper_target_loses_it(az):
    """Band-limited (< 1.5 kHz) GCC-PHAT ITD of a one-source pair vs direct HRIR rendering, both heads."""
    from binauralizer import sh_render
    from binauralizer.pseudobinaural.pseudo_pairs import render_sources

    x = np.random.default_rng(1).standard_normal(10080).astype(np.float32) * 0.1
    for head in ("kemar", "sonicom-1"):
        h = load_hrirs(head)
        itd = lambda b: metrics.frame_cues(b, frame_s=0.6)["itd_ms"][0] * 1e3  # noqa: E731  microseconds
        ref = itd(sh_render.render_static(x, az, 0.0, h, mode="direct"))
        default = itd(render_sources([x], np.array([az]), np.array([0.0]), h, PairConfig()))
        paper = itd(render_sources([x], np.array([az]), np.array([0.0]), h, PairConfig(target="paper")))
        assert abs(ref) > 450 and np.sign(ref) == np.sign(az)
        assert abs(default - ref) <= 50, (head, default, ref)
        assert abs(paper - ref) > 100, (head, paper, ref)  # the first-order 8-speaker path's measured ITD loss


def test_source_counts_follow_0_4_0_5_0_1(generator):
    counts = np.bincount([len(generator[i].az_deg) for i in range(1000)], minlength=4)[1:] / 1000
    assert counts == pytest.approx([0.4, 0.5, 0.1], abs=0.05)  # 3 standard errors


def test_patch_sits_where_the_sound_comes_from(kemar):
    gen = PseudoPairGenerator(synthetic_pool(6, seed=0), kemar, seed=3, config=PairConfig(source_count_probs=(1.0,)))
    checked = 0
    for i in range(40):
        s = gen[i]
        cx, cy = direction_to_canvas(s.az_deg[0], s.el_deg[0])
        assert s.frame[int(cy), int(cx)].sum() > 0  # the patch covers its own centre
        assert s.frame[:, : max(0, int(cx) - 100)].sum() == 0 or cx > 100  # black elsewhere on one side
        if abs(s.az_deg[0]) > 15:  # resampled KEMAR through first-order SH: the louder ear is the near one
            assert np.sign(metrics.broadband_ild_db(s.binaural)) == np.sign(s.az_deg[0]), (i, s.az_deg)
            checked += 1
    assert checked >= 20


def test_crop_follows_the_heatmap_peak():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[10:30, 160:190] = 200
    heat = np.zeros((10, 20), np.float32)
    heat[2, 17] = 1.0
    patch = crop_patch(frame, heat, 0.3)
    assert patch.shape == (30, 30, 3) and patch.mean() > 100
    assert crop_patch(frame, None, 0.3).mean() == 0  # centre crop when no heatmap


def test_moving_sources_and_camera_pan_render(kemar):
    pool = synthetic_pool(4, seed=1)
    cfg = PairConfig(source_count_probs=(1.0,), moving_prob=1.0, max_move_deg=80.0)
    s = PseudoPairGenerator(pool, kemar, seed=0, config=cfg)[0]
    assert s.moving and np.all(np.isfinite(s.binaural))
    cfg = PairConfig(source_count_probs=(1.0,), camera_rotation_prob=1.0, max_pan_deg=120.0)
    gen = PseudoPairGenerator(pool, kemar, seed=0, config=cfg)
    s = next(gen[i] for i in range(50) if abs(gen[i].camera_pan_deg) > 60)
    # the camera turns by pan over the excerpt: the source drifts the other way, so the ILD moves
    first, last = s.binaural[:, :3000], s.binaural[:, -3000:]
    drift = metrics.broadband_ild_db(last) - metrics.broadband_ild_db(first)
    assert np.sign(drift) == -np.sign(s.camera_pan_deg) and abs(drift) > 1.0


def test_pool_from_a_run_folder(tmp_path, kemar):
    ctx = RunContext(out=str(tmp_path))
    src = synthetic_pool(2, seed=2)
    rows = write_ingested(tmp_path, src)
    rows.append({"clip_id": "gone", "source_id": "gone", "window_start": 0, "window_samples": 100})
    heat = np.zeros((16, 7, 9), np.float32)
    heat[:, 1, 1] = 1.0
    (tmp_path / "work" / "localize" / src[0].clip_id).mkdir(parents=True)
    np.save(tmp_path / "work" / "localize" / src[0].clip_id / "heatmap.npy", heat)
    rows[0]["heatmap_path"] = f"work/localize/{src[0].clip_id}/heatmap.npy"  # what localize writes into its row
    pool, problems = load_pool(ctx, rows)
    assert [c.clip_id for c in pool] == [c.clip_id for c in src]
    assert problems[0]["clip_id"] == "gone" and "ingest" in problems[0]["reason"]
    assert pool[0].heatmap is not None and pool[1].heatmap is None
    lazy, problems = load_pool(ctx, rows, lazy=True)
    assert len(lazy) == 2 and len(problems) == 1
    a = PseudoPairGenerator(pool, kemar, seed=1)[2]
    b = PseudoPairGenerator(lazy, kemar, seed=1)[2]
    assert np.array_equal(a.binaural, b.binaural) and np.array_equal(a.frame, b.frame)


@pytest.mark.parametrize("az", [-35.0, 20.0])
def test_ratio_target_gives_the_networks_ears_the_heads_itd(kemar, az):
    """The network's ears are mix +- diff: with the ratio target they carry the target's low-band ITD;
    with L - R itself (the paper's target) the ITD collapses towards zero."""
    from binauralizer.pseudobinaural import unet as unet_mod
    from binauralizer.pseudobinaural.pseudo_pairs import align_to, render_sources
    from binauralizer.pseudobinaural.training import spectrogram_batch

    x = np.random.default_rng(2).standard_normal(10080) * 0.1
    target = align_to(render_sources([x], np.array([az]), np.array([0.0]), kemar, PairConfig()), x)
    batch = {"mixture": torch.tensor(x[None], dtype=torch.float32),
             "binaural": torch.tensor(target[None], dtype=torch.float32),
             "frame": torch.zeros(1, 8, 8, 3, dtype=torch.uint8), "heat": torch.zeros(1, 4, 4)}
    itd = lambda b: metrics.itd_ms(b, max_hz=1500) * 1e3  # noqa: E731  microseconds
    ref = itd(target)

    def ears(ratio_range):
        mix, diff = spectrogram_batch(batch, "cpu", ratio_range)[:2]
        d = unet_mod.istft(unet_mod.channels_to_complex(diff), len(x))[0].numpy()
        return np.stack([(x + d) / 2, (x - d) / 2])

    assert abs(ref) > 150 and np.sign(ref) == np.sign(az)
    assert abs(itd(ears(2.0)) - ref) <= 50, (itd(ears(2.0)), ref)
    assert abs(itd(ears(None))) < abs(ref) / 2, (itd(ears(None)), ref)


def test_own_frame_scenes_use_the_clips_frame_heatmap_and_trajectory(kemar):
    pool = synthetic_pool(3, seed=0)
    for k, clip in enumerate(pool):
        heat = np.zeros((len(clip.frames), 7, 12), np.float32)
        heat[:, 3, 2 + 4 * k] = 1.0
        clip.heatmap = heat
        clip.trajectory = np.tile([[40.0 - 40.0 * k, 5.0, 1.0]], (len(clip.frames), 1)).astype(np.float32)
    gen = PseudoPairGenerator(pool, kemar, seed=3, config=PairConfig(own_frame_prob=1.0, align=True))
    for i in range(4):
        s = gen[i]
        k = [c.clip_id for c in pool].index(s.clip_ids[0])
        assert s.own_frame and s.az_deg[0] == 40.0 - 40.0 * k and s.el_deg[0] == 5.0
        assert s.heatmap.shape == HEAT_HW and np.argmax(s.heatmap.max(axis=0)) // (HEAT_HW[1] // 12) in (2 + 4 * k - 1, 2 + 4 * k, 2 + 4 * k + 1)
        ild = metrics.broadband_ild_db(s.binaural)
        assert (ild > 3) if k == 0 else (ild < -3) if k == 2 else abs(ild) < 3
    pasted = PseudoPairGenerator(pool, kemar, seed=3)[0]  # own_frame_prob 0: patches, a blob per patch
    assert not pasted.own_frame and pasted.heatmap.max() > 0.99
