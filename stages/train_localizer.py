"""train_localizer: learn audio-visual correspondence from the run's own kept clips (EZ-VSL style).

A global stage that runs on one worker of the executor (`on_actor`: a Ray actor with `num_cpus` /
`num_gpus` per actor, or in-process on the local executor). It trains
binauralizer.localize.learned on every kept clip (after silence / quality) and writes
work/train_localizer/: localizer.pt (what localize's `learned` and `fusion-learned` load when no
`checkpoint` is given), checkpoint.pt (a killed run resumes on the same loss curve: batches are a
function of (seed, step)), history.json (the loss per step and the chance loss), loss_curve.png,
train_summary.json, identity.json (settings + data: a checkpoint of other data is never resumed);
with `ensemble` K > 1, member_0 .. member_K-1/ (each one model's files, resumed one by one) and a
localizer.pt holding all K.
Rows pass through; a clip that cannot be read fails with the reason; fewer than two usable clips
fail every row (the other clips of a batch are the negatives).

The settings are LocalizerTrainConfig's fields (read from it, so a field the trainer gains is a
setting here too) plus the resources and `lazy_pool_above`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import typing

from binauralizer.localize.learned import LocalizerTrainConfig
from binauralizer.torchtrain import rows_digest
from manifests import artifacts
from manifests.io import atomic_write_text
from stages.base import RESOURCE_KEYS, ConfigError, Params, Stage, file_digest, settings

log = logging.getLogger(__name__)

DERIVED = {"device"}  # trainer fields the stage sets itself (from num_gpus)
STAGE_FIELDS = (  # (name, type, default): settings of the stage, not of the trainer
    ("num_gpus", float, 0.0),  # per actor (fractional packs several on one GPU)
    ("num_cpus", float, 1.0),  # per actor; also torch's thread count on the CPU
    ("lazy_pool_above", int, 256),  # read clips on demand when more are kept than this
)
MIN_CLIPS = 2
_STEP_LINE = re.compile(r"step (\d+)/(\d+) loss ([-+0-9.eE]+)")


def _validate(self) -> None:
    for key in ("steps", "checkpoint_every", "ensemble"):
        if getattr(self, key, 1) < 1:
            raise ConfigError(f"stages.train_localizer.{key}: must be >= 1, got {getattr(self, key)!r}")
    if getattr(self, "batch_size", 2) < 2:
        raise ConfigError("stages.train_localizer.batch_size: at least 2 (the other clips of a batch are the negatives)")
    for key in ("frame_height", "frame_width"):
        if getattr(self, key, 32) < 16:
            raise ConfigError(f"stages.train_localizer.{key}: at least 16 pixels, got {getattr(self, key)!r}")
    if getattr(self, "lr", 1.0) <= 0:
        raise ConfigError("stages.train_localizer.lr: must be > 0")
    if self.lazy_pool_above < 0:
        raise ConfigError("stages.train_localizer.lazy_pool_above: must be >= 0")


def _params_class():
    """The stage's Params: every LocalizerTrainConfig field (type and default) + STAGE_FIELDS."""
    hints = typing.get_type_hints(LocalizerTrainConfig)
    fields = []
    for f in dataclasses.fields(LocalizerTrainConfig):
        if f.name in DERIVED:
            continue
        default = (dataclasses.field(default=f.default) if f.default is not dataclasses.MISSING
                   else dataclasses.field(default_factory=f.default_factory))
        fields.append((f.name, hints[f.name], default))
    fields += [(name, kind, dataclasses.field(default=value)) for name, kind, value in STAGE_FIELDS]
    cls = dataclasses.make_dataclass("TrainLocalizerParams", fields, bases=(Params,),
                                     namespace={"validate": _validate, "__module__": __name__,
                                                "__doc__": "train_localizer's settings (LocalizerTrainConfig + resources)."})
    return settings(cls)


TrainLocalizerParams = _params_class()


def train_config(p, run_seed: int = 0, device: str = "cpu") -> LocalizerTrainConfig:
    """The trainer's config from the stage's settings, field by field (the run seed mixed in)."""
    names = {f.name for f in dataclasses.fields(LocalizerTrainConfig)}
    values = {k: v for k, v in dataclasses.asdict(p).items() if k in names}
    values["seed"] = values.get("seed", 0) + 1_000_003 * run_seed
    return LocalizerTrainConfig(**values, device=device)


class TrainLocalizerStage(Stage):
    name = "train_localizer"
    version = "1"
    Params = TrainLocalizerParams
    kind = "global"
    on_actor = True  # the executor runs run_global on one worker with this stage's resources
    data_deps = ("ingest", "duration")
    reads = ("clip_id", "source_id", "window_start", "window_samples", "frame_fps")
    writes = ()

    def measure_settings(self) -> dict:
        """Everything that changes the trained model: batch_size too (not a resource here); how the
        clips are read (lazy_pool_above) does not."""
        skip = (RESOURCE_KEYS - {"batch_size"}) | {"lazy_pool_above"}
        return {k: v for k, v in dataclasses.asdict(self.params).items() if k not in skip}

    def run_global(self, rows: list[dict]) -> list[dict]:
        import time

        p = self.params
        out_dir = self.ctx.work_dir(self.name)
        pool, problems = load_pool(self.ctx, rows, lazy=len(rows) > p.lazy_pool_above)
        bad = {q["clip_id"]: q["reason"] for q in problems}
        if len(pool) < MIN_CLIPS:
            reason = (f"train_localizer: {len(pool)} usable clip(s); the learned localiser needs at least {MIN_CLIPS} "
                      "(the other clips of a batch are its negatives): keep more clips, or use another "
                      "stages.localize.method and drop train_localizer from run.stages")
            return [{"_error": f"{reason} ({bad[r['clip_id']]})" if r.get("clip_id") in bad else reason} for r in rows]
        usable = [r for r in rows if r.get("clip_id") not in bad]
        cfg = train_config(p, self.ctx.seed, self._device())
        import torch

        torch.set_num_threads(max(1, int(p.num_cpus)))
        resumed = self._prepare(out_dir, cfg, rows_digest(usable, self.reads))
        started = time.perf_counter()
        from binauralizer.localize.learned import train_localizer

        result = train_localizer(pool, out_dir, cfg, log=self._log_line)
        seconds = time.perf_counter() - started
        summary = write_outputs(out_dir, result, cfg, len(pool), resumed)
        log.info("train_localizer: %d steps on %d clips (resumed from step %d) in %.1f s; loss %.3f -> %.3f "
                 "(chance %.3f); model %s", cfg.steps, len(pool), resumed, seconds, summary["first_loss"],
                 summary["final_loss"], summary["chance_loss"], summary["model_sha256"][:16])
        return [{"_error": f"train_localizer: unreadable clip: {bad[r['clip_id']]}"} if r.get("clip_id") in bad else {}
                for r in rows]

    # -- helpers ---------------------------------------------------------------------------------
    def _device(self) -> str:
        from binauralizer.devices import pick_device

        return str(pick_device(self.params.num_gpus, self.name))

    def _log_line(self, line: str) -> None:
        """The trainer's progress lines: logged, and as steps with the loss to the runner's progress."""
        log.info("%s", line)
        match = _STEP_LINE.search(line)
        if match and self.progress is not None:
            self.progress(int(match.group(1)), int(match.group(2)), "step", loss=float(match.group(3)))

    @staticmethod
    def _prepare(out_dir: str, cfg: LocalizerTrainConfig, data: str) -> int:
        """Keep the checkpoint only when it belongs to these settings and these clips; return its step."""
        import torch

        config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in DERIVED}  # the device is no identity
        identity = {"config": _jsonable(config), "data": data}
        path, ckpt = os.path.join(out_dir, "identity.json"), os.path.join(out_dir, "checkpoint.pt")
        previous = None
        if os.path.exists(path):
            with open(path) as fh:
                previous = json.load(fh)
        if previous != identity:
            for name in ("checkpoint.pt", "localizer.pt", "history.json", "loss_curve.png", "train_summary.json"):
                if os.path.exists(os.path.join(out_dir, name)):
                    os.remove(os.path.join(out_dir, name))
            for name in os.listdir(out_dir) if os.path.isdir(out_dir) else ():
                if name.startswith("member_"):  # an ensemble's members: of other settings or data too
                    shutil.rmtree(os.path.join(out_dir, name))
            atomic_write_text(path, json.dumps(identity, indent=1, sort_keys=True))
            return 0
        if not os.path.exists(ckpt):
            return 0
        return int(torch.load(ckpt, map_location="cpu", weights_only=False).get("step", 0))


@dataclasses.dataclass
class LazyClip:
    """A kept clip read when a batch draws it: its audio window, and frames decoded one at a time."""

    clip_id: str
    ctx: object
    row: dict

    def load(self):
        from types import SimpleNamespace

        from stages import clipdata

        return SimpleNamespace(clip_id=self.clip_id, audio=clipdata.load_audio(self.ctx, self.row),
                               frames=clipdata.WindowFrames(self.ctx, self.row))


def load_pool(ctx, rows: list[dict], lazy: bool) -> tuple[list, list[dict]]:
    """The training clips and the rows that cannot be read ({"clip_id", "reason"}), never fatal.

    In memory (train_unet's reader) up to lazy_pool_above clips; above, LazyClips (only the ingest
    files' existence and the window's frame count are checked here)."""
    from stages import clipdata
    from stages.base import StageError
    from stages.train_unet import load_pool as load_in_memory

    if not lazy:
        return load_in_memory(ctx, rows)
    pool, problems = [], []
    for row in rows:
        cid = row.get("clip_id", "?")
        try:
            if not clipdata.has_media(ctx, row.get("source_id") or cid):
                raise ValueError(f"missing audio or frames in {clipdata.ingest_dir(ctx, row.get('source_id') or cid)}: "
                                 "rerun ingest")
            if len(clipdata.WindowFrames(ctx, row)) == 0:
                raise ValueError(f"clip {cid}: no frames in its window")
            pool.append(LazyClip(cid, ctx, row))
        except (StageError, OSError, ValueError) as exc:
            problems.append({"clip_id": cid, "reason": str(exc)})
    return pool, problems


def model_path(ctx) -> str:
    """Where localize finds the localiser this stage trained."""
    return artifacts.resolve(ctx.out, artifacts.localizer_model())


def write_outputs(out_dir: str, result: dict, cfg: LocalizerTrainConfig, clips: int, resumed: int) -> dict:
    """train_summary.json and loss_curve.png beside the trainer's history.json and localizer.pt."""
    with open(os.path.join(out_dir, "history.json")) as fh:
        history = json.load(fh)
    loss = [float(v) for v in history["loss"]]
    k = min(len(loss), 10)
    summary = {
        "steps": int(result["steps"]), "clips": clips, "resumed_from": resumed,
        "first_loss": round(sum(loss[:k]) / k, 5), "final_loss": round(sum(loss[-k:]) / k, 5),
        "chance_loss": round(float(history.get("chance_loss", float("nan"))), 5),
        "model_sha256": file_digest(result["model"]), "config": _jsonable(dataclasses.asdict(cfg)),
    }
    atomic_write_text(os.path.join(out_dir, "train_summary.json"), json.dumps(summary, indent=1, sort_keys=True))
    plot_loss(os.path.join(out_dir, "loss_curve.png"), loss, summary["chance_loss"])
    return summary


def plot_loss(path: str, loss: list[float], chance: float) -> None:
    """The contrastive loss per step, its 10-step mean and the chance level (log(batch))."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from manifests.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = np.arange(1, len(loss) + 1)
    ax.plot(steps, loss, lw=0.8, alpha=0.5, color="C0", label="InfoNCE loss")
    k = min(len(loss), 10)
    ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.8, color="C0", label=f"{k}-step mean")
    if np.isfinite(chance):
        ax.axhline(chance, color="C3", ls="--", lw=1, label="chance (log batch)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("train_localizer: audio-visual correspondence")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
