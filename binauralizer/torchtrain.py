"""What every torch training in the project shares: checkpoint files, the device, the Ray Train launcher.

Used by the U-Net training (`binauralizer.pseudobinaural.training`) and the SpatialV2A trainer
(`trainer/`): one copy of the code that decides whether a checkpoint is complete, which one to
resume, and how data-parallel workers start.

- `atomic_torch_save` (the project's one writer, `manifests.io`): torch.save through memory and a
  rename. Never half-written (a kill leaves the previous file), and the same object gives the same
  bytes (torch.save names the zip records after the file, so a temporary name would show).
- `latest_checkpoint(dir, identity)`: the newest `{identity}_step{N:08d}.pt`; checkpoints of another
  identity (other configuration or other data, see `data_digest`) are never resumed.
- `launch_ray`: Ray Train `TorchTrainer` with `ScalingConfig(num_workers, use_gpu)`; gloo on CPU,
  nccl on GPU. Workers get RANK/WORLD_SIZE from Ray; only global rank 0 should write.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import threading
from typing import Callable, Iterable

import torch

from binauralizer import devices
from manifests.io import atomic_torch_save, atomic_write_text  # noqa: F401  (re-exported: the one writer)

log = logging.getLogger(__name__)

STEP_FILE = re.compile(r"_step(\d+)\.pt$")


def checkpoint_path(directory: str, identity: str, step: int) -> str:
    return os.path.join(directory, f"{identity}_step{int(step):08d}.pt")


def list_checkpoints(directory: str, identity: str) -> list[tuple[int, str]]:
    """(step, path) of this identity's checkpoints, oldest first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), f"{glob.escape(identity)}_step*.pt")):
        m = STEP_FILE.search(path)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str, identity: str, max_step: int | None = None) -> str | None:
    """Newest checkpoint of this identity, at most `max_step` (others are never resumed)."""
    found = [(s, p) for s, p in list_checkpoints(directory, identity) if max_step is None or s <= max_step]
    return found[-1][1] if found else None


def prune_checkpoints(directory: str, identity: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` checkpoints of this identity; returns the deleted paths."""
    old = [p for _, p in list_checkpoints(directory, identity)][: -keep] if keep > 0 else []
    for path in old:
        os.unlink(path)
    return old


def data_digest(parts: Iterable[str | bytes | dict | list]) -> str:
    """A short digest of what a model trains on (e.g. the bytes of sizes.json and features.json).

    Part of a checkpoint identity: retraining on other data never resumes a stale checkpoint.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (dict, list)):
            part = json.dumps(part, sort_keys=True, default=str)
        if isinstance(part, str):
            part = part.encode("utf-8")
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def rows_digest(rows: list[dict], columns) -> str:
    """What a model is trained on: these columns of every training row, in order."""
    return data_digest([[[row.get(c) for c in columns] for row in rows]])


def pick_device(requested: str | float | None = "auto", what: str = "training") -> torch.device:
    """`auto` -> cuda when available; an unavailable GPU falls back to the CPU with a warning
    (the project's one rule, `binauralizer.devices.pick_device`)."""
    return devices.pick_device(requested, what)


def dist_info() -> tuple[int, int]:
    """(global rank, world size): from torch.distributed when initialised, else RANK/WORLD_SIZE.

    Never LOCAL_RANK: that is the rank within one node, and multi-node jobs would read the same
    data on every node.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR); no-op alone."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist_info()


class ProgressFile:
    """Rank 0's progress, relayed to the driver through a file in the (shared) run folder.

    Ray Train workers log to Ray's worker logs, which neither the console nor build.log see. Rank 0
    calls an instance like a progress callback; it appends one JSON line per call. The driver tails
    the file (`relay`) and feeds the lines to its own progress callback, so a multi-node training
    shows its steps, loss and ETA where a local one does.
    """

    def __init__(self, path: str):
        self.path = path

    def __call__(self, done: int, total: int, unit: str, **values) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"done": int(done), "total": int(total), "unit": unit, **values}) + "\n")

    @contextlib.contextmanager
    def relaying(self, progress: Callable[..., None] | None):
        """While the block runs (a blocking Ray Train fit), pass rank 0's lines to `progress` on this
        process; a previous launch's lines are dropped first. No-op without `progress`."""
        if os.path.exists(self.path):
            os.remove(self.path)
        if progress is None:
            yield
            return
        stop = threading.Event()
        tail = threading.Thread(target=self._relay, args=(progress, stop), daemon=True)
        tail.start()
        try:
            yield
        finally:
            stop.set()
            tail.join()

    def _relay(self, progress: Callable[..., None], stop: threading.Event) -> None:
        """Until `stop` is set, then once more: pass new complete lines on."""
        offset = 0
        while True:
            finished = stop.wait(0.5)
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except FileNotFoundError:
                chunk = b""
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.decode().splitlines():
                item = json.loads(line)
                progress(item.pop("done"), item.pop("total"), item.pop("unit"), **item)
            if finished:
                return


def _ray_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    os.environ["RANK"] = str(ctx.get_world_rank())  # the data split reads the global rank
    os.environ["WORLD_SIZE"] = str(ctx.get_world_size())
    result = loop_config["fn"](*loop_config["args"], device=ray.train.torch.get_device(), **loop_config["kwargs"])
    ray.train.report({k: v for k, v in (result or {}).items() if isinstance(v, (int, float))})


def launch_ray(fn: Callable, args: tuple, kwargs: dict, num_workers: int, use_gpu: bool, name: str,
               storage_path: str, cpus_per_worker: float = 1.0) -> None:
    """Run `fn(*args, device=..., **kwargs)` on `num_workers` Ray Train workers with torch DDP set up.

    `fn` must be importable by the workers (a module-level function) and find its data itself;
    every path it uses must be visible to all workers (shared or object storage).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"fn": fn, "args": tuple(args), "kwargs": dict(kwargs)},
        scaling_config=ScalingConfig(num_workers=int(num_workers), use_gpu=bool(use_gpu),
                                     resources_per_worker=None if use_gpu else {"CPU": cpus_per_worker}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=os.path.abspath(storage_path)),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
