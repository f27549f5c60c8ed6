"""Driver-side pieces shared by fine-tuning and bootstrap pretraining: the workers' CPU share,
running a :class:`~llmops_ray.train.config.TrainPlan`, and the loss-curve PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llmops_ray.config import UserError
from llmops_ray.train.config import OptimConfig, StepsGeometry, TrainPlan, WorkerSettings

def steps_geometry(n_train: int, optim: OptimConfig, num_workers: int) -> dict[str, int]:
    """:meth:`StepsGeometry.of` as a mapping (micro-batches per epoch, steps per epoch, total)."""
    return StepsGeometry.of(n_train, optim, num_workers).model_dump()


# Below this CPU share a worker is better not started: say what holds the CPUs instead.
MIN_CPUS_PER_WORKER = 0.2


def fit_cpus_per_worker(num_workers: int, cpus_per_worker: float, free_cpus: float) -> float:
    """The CPU share each worker asks for: ``cpus_per_worker``, or less when the cluster has
    fewer CPUs free. Ray Train would otherwise wait for them forever
    (``WorkerGroupStartupTimeoutError``, retried), e.g. on a rerun of ``make demo`` while its
    Serve app holds part of the head. Raises UserError when even
    :data:`MIN_CPUS_PER_WORKER` per worker does not fit."""
    if num_workers * cpus_per_worker <= free_cpus + 1e-9:
        return cpus_per_worker
    fitted = math.floor(free_cpus / num_workers * 100) / 100  # rounded down: the sum must fit
    if fitted < MIN_CPUS_PER_WORKER:
        raise UserError(
            f"training needs {num_workers} x {cpus_per_worker:g} CPU but the cluster has {free_cpus:.2f} free: "
            "stop what holds them (`serve shutdown -y` or `make down`) or lower workers.num_workers, then rerun")
    return fitted


def fit_workers(workers: WorkerSettings) -> WorkerSettings:
    """``workers`` with its CPU share fitted to what the connected cluster has free now
    (when ``workers.fit_to_free_cpus``); prints a line when it shrinks."""
    if not workers.fit_to_free_cpus:
        return workers
    import ray

    free = float(ray.available_resources().get("CPU", 0.0))
    cpus = fit_cpus_per_worker(workers.num_workers, workers.cpus_per_worker, free)
    if cpus == workers.cpus_per_worker:
        return workers
    print(f"[train] {workers.num_workers} workers x {cpus:g} CPU (asked {workers.cpus_per_worker:g} each; "
          f"{free:.2f} CPU free on the cluster)", flush=True)
    return workers.model_copy(update={"cpus_per_worker": cpus})


def run_plan(plan: TrainPlan, datasets: dict[str, Any], *, run_config=None, callbacks=None, cpus_per_worker=None):
    """Fit the TorchTrainer; returns ``(result, final_state)`` (state.json of the final checkpoint)."""
    from llmops_ray.train.loop import build_trainer, read_checkpoint_state

    trainer = build_trainer(plan, datasets, run_config=run_config, callbacks=callbacks, cpus_per_worker=cpus_per_worker)
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"training run {plan.run_name!r} failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError(f"training run {plan.run_name!r} reported no checkpoint")
    return result, read_checkpoint_state(result.checkpoint)


# --------------------------------------------------------------------------- MLflow


# --------------------------------------------------------------------------- outputs


def plot_loss_curve(history: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Train loss per optimizer step and validation loss at checkpoints, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot([h["step"] for h in history], [h["train_loss"] for h in history], label="train loss")
    val = [h for h in history if h.get("val_loss") is not None]
    if val:
        ax.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
