"""Training: exact resume after SIGKILL, the loss curve files, DDP equals one process."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import torch

from binauralizer.pseudobinaural import training
from binauralizer.pseudobinaural.training import TrainConfig, batch_indices

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICRO = TrainConfig(steps=8, batch_size=4, width=0.0625, frame_size=(64, 128), checkpoint_every=2, seed=5)

SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from binauralizer.pseudobinaural.training import TrainConfig, train
    from binauralizer.testing import synthetic_pool
    cfg = TrainConfig(steps=8, batch_size=4, width=0.0625, frame_size=(64, 128), checkpoint_every=2, seed=5)
    train(cfg, synthetic_pool(4, seed=0, seconds=1.0), sys.argv[1])
""")


def _run(script, out_dir):
    return subprocess.Popen([sys.executable, str(script), str(out_dir)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _history(out_dir):
    with open(os.path.join(out_dir, "loss_curve.json")) as fh:
        return json.load(fh)["history"]


def _logged_steps(out_dir) -> int:
    try:
        return len(_history(out_dir))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_batches_are_a_function_of_step_and_split_over_ranks():
    assert batch_indices(3, 4) == [12, 13, 14, 15]
    assert sorted(batch_indices(3, 4, 0, 2) + batch_indices(3, 4, 1, 2)) == [12, 13, 14, 15]


def test_resume_after_sigkill_continues_the_same_loss_curve(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc_a = _run(script, straight)
    proc_b = _run(script, killed)
    # the loss curve is written right after each checkpoint: wait for both, so a loaded machine
    # cannot kill between the step-4 checkpoint and its loss-curve update
    deadline = time.time() + 300
    while time.time() < deadline and proc_b.poll() is None and not _logged_steps(killed) >= 4:
        time.sleep(0.02)
    assert proc_b.poll() is None, "training finished before it could be killed"
    proc_b.send_signal(signal.SIGKILL)
    proc_b.wait()
    assert not os.path.exists(killed / "model.pt")
    partial = _history(killed)
    assert 4 <= len(partial) < 8
    assert proc_a.wait(timeout=300) == 0, proc_a.stderr.read().decode()[-2000:]
    resumed = _run(script, killed)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    want, got = _history(straight), _history(killed)
    assert [h["step"] for h in got] == list(range(1, 9))
    assert np.allclose([h["total"] for h in got], [h["total"] for h in want], rtol=1e-5, atol=0)
    summary = json.loads((killed / "train_summary.json").read_text())
    assert summary["resumed_from"] >= 4
    assert (killed / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(os.listdir(killed / "checkpoints")) == MICRO.keep_checkpoints


def test_two_ray_train_workers_with_gloo_ddp_match_one_process(tmp_path):
    """The cluster path for real: ray.train.torch.TorchTrainer, 2 CPU workers, DDP over gloo."""
    import functools

    import ray

    from binauralizer.testing import synthetic_pool

    torch.set_num_threads(1)
    cfg = dataclasses.replace(MICRO, steps=3, checkpoint_every=3)
    training.train(cfg, synthetic_pool(4, seed=0, seconds=1.0), str(tmp_path / "single"))
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        relayed = []
        summary = training.train_with_ray(cfg, functools.partial(synthetic_pool, 4, 0, 1.0), str(tmp_path / "ddp"),
                                          num_workers=2, use_gpu=False,
                                          progress=lambda done, total, unit, **v: relayed.append((done, total, unit, v["loss"])))
    finally:
        if started:
            ray.shutdown()
    assert summary["steps"] == 3 and os.path.exists(tmp_path / "ddp" / "model.pt")
    single, ddp = _history(tmp_path / "single"), _history(tmp_path / "ddp")
    # the same global batch split over two ranks, gradients averaged: the same losses up to rounding
    assert np.allclose([h["total"] for h in ddp], [h["total"] for h in single], rtol=1e-4)
    # rank 0's steps reach the driver's progress callback (and so the console and build.log)
    assert [(d, t, u) for d, t, u, _ in relayed] == [(1, 3, "step"), (2, 3, "step"), (3, 3, "step")]
    assert [loss for *_, loss in relayed] == [h["total"] for h in ddp]


def test_progress_reports_every_step_with_its_loss(tmp_path, one_torch_thread):
    from binauralizer.testing import synthetic_pool

    calls = []
    cfg = dataclasses.replace(MICRO, steps=3)
    training.train(cfg, synthetic_pool(4, seed=0, seconds=1.0), str(tmp_path),
                   progress=lambda done, total, unit, **values: calls.append((done, total, unit, values["loss"])))
    history = _history(tmp_path)
    assert [(d, t, u) for d, t, u, _ in calls] == [(1, 3, "step"), (2, 3, "step"), (3, 3, "step")]
    assert [loss for *_, loss in calls] == [h["total"] for h in history]
