"""Executors run a stage's `measure` over batches of rows; the runner does everything else."""

from pipeline.executors.base import Executor, StageSpec


def make_executor(name: str, **kwargs) -> Executor:
    if name == "local":
        from pipeline.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from pipeline.executors.ray_backend import RayExecutor

        return RayExecutor(**kwargs)
    raise ValueError(f"unknown executor {name!r}: use ray or local")


__all__ = ["Executor", "StageSpec", "make_executor"]
