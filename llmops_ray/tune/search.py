"""Hyperparameter search over fine-tuning: Ray Tune with the fine-tuning trainer as trainable.

Train V2 pattern: each trial is a Tune *function* trainable that builds and fits its own
``TorchTrainer`` (``llmops_ray.train.sft`` with ``callbacks=[TuneReportCallback()]``),
so every checkpoint report of the workers (``val_loss``) becomes one Tune iteration that
ASHA can act on. Resources on 2 CPUs: the trial actor asks for ``trial_cpus`` (0.01) and
each worker ``cpus_per_worker`` (0.99), which lets two 1-worker trials run side by side
without the deadlock seen at 1 CPU per trial.

Each trial's run name is ``<search>-<trial_id>``, so a restored search (``Tuner.restore``)
re-runs an unfinished trial under the same name and the trainer resumes from its own
latest checkpoint. Every trial is an MLflow run in experiment ``tune/<search>``; a summary
run records the search. The best completed trial can be registered as a stack version
whose lineage is the search.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llmops_ray.config import UserError, build_config, load_config, models_root, runs_root
from llmops_ray.tune.config import TuneSearchConfig


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def trial_output_dir(search: str, trial_id: str) -> Path:
    return models_root() / "tune" / search / trial_id


def base_finetune_dict(config: TuneSearchConfig) -> dict[str, Any]:
    """The fine-tuning config every trial starts from, validated, with absolute paths."""
    from llmops_ray.train.config import FinetuneConfig

    extra = list(config.overrides)
    if config.data:
        extra.append(f"data.path={config.data}")
    if config.base_model:
        extra.append(f"base_model={config.base_model}")
    base = load_config(FinetuneConfig, config.finetune, extra)
    data = base.model_dump(mode="json")
    if data["data"]["path"]:
        data["data"]["path"] = str(Path(data["data"]["path"]).expanduser().resolve())
    from llmops_ray.train.sft import resolve_base_model

    data["base_model"] = resolve_base_model(data["base_model"])  # "" = the workspace's tiny-base
    data["workers"]["num_workers"] = config.num_workers
    data["mlflow_experiment"] = f"tune/{config.name}"
    # Every dotted key of the space must exist in FinetuneConfig: a typo fails here, not in a trial.
    probe = json.loads(json.dumps(data))
    for key, dim in config.space.items():
        sample = dim.values[0] if dim.type == "choice" else (int(dim.low) if dim.type == "randint" else dim.low)
        _set_dotted(probe, key, sample)
    build_config(FinetuneConfig, probe, f"tune space of {config.name!r}")
    return data


# Space keys that change what the tokenized datasets hold: a search over any of them cannot
# share one tokenization between its trials.
DATASET_KEYS = ("data.", "base_model", "workers.num_workers", "optim.seed")


def shares_datasets(config: TuneSearchConfig) -> bool:
    """True when every trial reads the data the same way (no space key touches it)."""
    return not any(key.startswith(DATASET_KEYS) for key in config.space)


def shared_datasets(config: TuneSearchConfig, base: dict[str, Any]):
    """The search's data tokenized once on the driver, or None when trials must tokenize their own."""
    from llmops_ray.train.config import FinetuneConfig
    from llmops_ray.train.sft import build_shared_datasets

    return build_shared_datasets(FinetuneConfig.model_validate(base)) if shares_datasets(config) else None


def _trial(params: dict[str, Any], base: dict[str, Any], search: str, cpus_per_worker: float, shared=None) -> None:
    """One trial: fine-tune with ``params`` applied; the workers' reports reach Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from llmops_ray.train import finetune
    from llmops_ray.train.config import FinetuneConfig

    trial_id = tune.get_context().get_trial_id()
    data = json.loads(json.dumps(base))
    for key, value in params.items():
        _set_dotted(data, key, value)
    data["run_name"] = f"{search}-{trial_id}"
    data["output_dir"] = str(trial_output_dir(search, trial_id))
    finetune(FinetuneConfig.model_validate(data), callbacks=[TuneReportCallback()], cpus_per_worker=cpus_per_worker,
             shared=shared)


def build_tuner(config: TuneSearchConfig, base: dict[str, Any] | None = None):
    """A new ``Tuner``, or the restored one when an interrupted search of this name exists.

    Needs a running Ray: unless the space searches over data settings, the data is tokenized
    here once and every trial (of a restored search too) reads the same materialized blocks.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    from llmops_ray.tune.cleanup import OrphanPlacementGroupSweeper

    base = base if base is not None else base_finetune_dict(config)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, search=config.name, cpus_per_worker=config.cpus_per_worker,
                             shared=shared_datasets(config, base)),
        {"CPU": config.trial_cpus},
    )
    storage = runs_root() / "tune"
    path = storage / config.name
    if config.resume and tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True), True
    if config.scheduler == "asha":
        # max_t + 1: ASHA stops a trial that reaches max_t at once, which would kill a full
        # trial right after its last report, before it writes its output directory.
        from llmops_ray.tune.schedulers import BestSoFarASHA

        make = BestSoFarASHA if config.rung_metric == "best" else ASHAScheduler
        scheduler = make(time_attr="training_iteration", max_t=config.max_t + 1,
                         grace_period=config.grace_period, reduction_factor=config.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    # Seeded random sampling: the same seed draws the same trial configs (ASHA vs FIFO benchmark).
    search_alg = BasicVariantGenerator(random_state=config.seed, max_concurrent=config.max_concurrent_trials)
    if config.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg = ConcurrencyLimiter(OptunaSearch(seed=config.seed), max_concurrent=config.max_concurrent_trials)
    tuner = tune.Tuner(
        trainable,
        param_space={key: dim.to_tune() for key, dim in config.space.items()},
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            scheduler=scheduler,
            search_alg=search_alg,
            num_samples=config.num_samples,
            max_concurrent_trials=config.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(name=config.name, storage_path=str(storage),
                                  callbacks=[OrphanPlacementGroupSweeper()]),
    )
    return tuner, False


def summarize(config: TuneSearchConfig, results) -> dict[str, Any]:
    """Per-trial rows and the best *completed* trial (one with a written output directory)."""
    trials = []
    for result in results:
        if result.metrics is None:
            continue
        trial_id = result.metrics.get("trial_id")
        history = result.metrics_dataframe
        values = [] if history is None or config.metric not in history else \
            [float(v) for v in history[config.metric].dropna().tolist()]
        out_dir = trial_output_dir(config.name, trial_id) if trial_id else None
        trials.append({
            "trial_id": trial_id,
            "config": {k: result.config.get(k) for k in config.space},
            "iterations": int(result.metrics.get("training_iteration", len(values))),
            "last": result.metrics.get(config.metric),
            "best": (min(values) if config.mode == "min" else max(values)) if values else None,
            "completed": bool(out_dir and (out_dir / "lineage.json").is_file()),
            "output_dir": str(out_dir) if out_dir else None,
            "error": str(result.error) if result.error else None,
        })
    done = [t for t in trials if t["completed"] and t["last"] is not None]
    best = None
    if done:
        best = (min if config.mode == "min" else max)(done, key=lambda t: t["last"])
    return {"trials": trials, "best": best, "total_iterations": sum(t["iterations"] for t in trials)}


def _mlflow_experiment(name: str):
    """The search's MLflow experiment ``tune/<name>`` (store tables created on first use)."""
    import mlflow

    from llmops_ray.common.tracking import mlflow_client

    mlflow_client()
    return mlflow.set_experiment(f"tune/{name}")


def _log_summary(config: TuneSearchConfig, summary: dict[str, Any]) -> str:
    import mlflow

    experiment = _mlflow_experiment(config.name)
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"{config.name}-search") as run:
        mlflow.set_tag("llmops.search", "true")
        mlflow.log_params({"scheduler": config.scheduler, "search": config.search,
                           "num_samples": config.num_samples, "finetune": config.finetune})
        if summary["best"]:
            mlflow.log_params({f"best.{k}": v for k, v in summary["best"]["config"].items()})
            mlflow.log_metric(f"best_{config.metric}", summary["best"]["last"])
        mlflow.log_metric("total_iterations", summary["total_iterations"])
        mlflow.log_dict(summary, "search_summary.json")
        return run.info.run_id


def register_best(config: TuneSearchConfig, summary: dict[str, Any], base: dict[str, Any], run_id: str):
    """Register the best trial's output as a new version of ``config.registration.stack``."""
    from llmops_ray.config import read_yaml
    from llmops_ray.registry import ensure_default_prompt, register_stack

    reg = config.registration
    best = summary["best"]
    manifest: dict[str, Any] = {}
    if reg.manifest:
        manifest = {k: v for k, v in read_yaml(reg.manifest).items() if k in ("description", "generation", "policy")}
    out_dir = best["output_dir"]
    lora = base.get("method", "lora") == "lora"
    manifest.update(
        name=reg.stack,
        base_model=base["base_model"] if lora else out_dir,
        adapter=out_dir if lora else None,
        prompt=reg.prompt or ensure_default_prompt("qa").ref,
        kb=reg.kb,
    )
    lineage = {
        "search": {
            "name": config.name,
            "path": str(runs_root() / "tune" / config.name),
            "mlflow_run_id": run_id,
            "scheduler": config.scheduler,
            "search": config.search,
            "best_trial_id": best["trial_id"],
            "best_config": best["config"],
            f"best_{config.metric}": best["last"],
            "trials": len(summary["trials"]),
        }
    }
    return register_stack(manifest, lineage=lineage, aliases=[reg.alias] if reg.alias else [])


def run_search(config: TuneSearchConfig) -> dict[str, Any]:
    """Run (or resume) the search; returns trials, best trial and the registered stack, if any.

    Printable summary keys: ``search``, ``resumed``, ``trials``, ``best``,
    ``total_iterations``, ``duration_s``, ``mlflow_run_id``, ``stack``.
    """
    from llmops_ray.cluster import init_ray

    base = base_finetune_dict(config)  # bad configs fail before Ray starts
    _mlflow_experiment(config.name)  # created once here: concurrent trials racing to create it fail
    init_ray()
    started = time.time()
    tuner, resumed = build_tuner(config, base)
    results = tuner.fit()
    from llmops_ray.tune.cleanup import sweep_after_search

    sweep_after_search()
    summary = summarize(config, results)
    run_id = _log_summary(config, summary)
    out: dict[str, Any] = {"search": config.name, "resumed": resumed, **summary,
                           "duration_s": round(time.time() - started, 1), "mlflow_run_id": run_id, "stack": None}
    if config.registration.stack:
        if summary["best"] is None:
            raise UserError(f"search {config.name!r}: no trial completed, nothing to register")
        stack = register_best(config, summary, base, run_id)
        out["stack"] = {"name": stack.name, "version": stack.version, "aliases": stack.aliases}
    return out


def load_search_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> TuneSearchConfig:
    return load_config(TuneSearchConfig, name_or_path, overrides)


__all__ = ["TuneSearchConfig", "run_search", "load_search_config"]
