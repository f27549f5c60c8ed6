"""``llmops finetune`` (module ``sft``, so that ``llmops_ray.train.finetune`` stays the function): supervised fine-tuning (LoRA or full) on Ray Train + DeepSpeed.

:func:`finetune` = :func:`prepare` (all input checks, before any worker starts; Ray Data
tokenization; the plan) + the TorchTrainer + :func:`write_outputs` (adapter or model dir with
tokenizer, chat template, config, ``lineage.json`` and ``loss_curve.png``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_ray.config import UserError, dump_config, models_root
from llmops_ray.train.config import FinetuneConfig


@dataclass
class Prepared:
    """Everything the trainer needs, built on the driver."""

    config: FinetuneConfig
    plan: dict[str, Any]
    datasets: dict[str, Any]
    model_dir: str
    dataset_info: dict[str, Any]
    data_stats: dict[str, Any]
    output_dir: Path
    mlflow: dict[str, str] | None = field(default=None)


def resolve_base_model(base_model: str) -> str:
    """``base_model`` as a local directory or hub id; empty = the bootstrapped tiny base.

    A LoRA adapter directory (e.g. an SFT result that DPO continues from) is merged into its
    base once, cached under ``<workspace>/models/_merged/start-<hash>``: the new run trains
    on (and, for DPO, is tied to) the model the adapter makes."""
    from llmops_ray.models.base import check_model_source

    if base_model and (Path(base_model).expanduser() / "adapter_config.json").is_file():
        return merged_start_model(Path(base_model).expanduser().resolve())

    if not base_model:
        default = models_root() / "tiny-base"
        if not (default / "config.json").is_file():
            raise UserError(f"no base_model given and {default} does not exist: run `llmops model bootstrap` first")
        return str(default)
    return check_model_source(base_model)


def merged_start_model(adapter_dir: Path) -> str:
    """``adapter_dir`` merged into its base (cached by the adapter's path and weight files)."""
    import hashlib

    from llmops_ray.models.merge import merge_adapter

    digest = hashlib.sha256(str(adapter_dir).encode())
    for f in sorted(adapter_dir.glob("*.safetensors")):
        digest.update(f"{f.name}{f.stat().st_size}{f.stat().st_mtime_ns}".encode())
    out = models_root() / "_merged" / f"start-{digest.hexdigest()[:12]}"
    if not (out / "config.json").is_file():
        merge_adapter(str(adapter_dir), str(out))
    return str(out)


def check_config(config: FinetuneConfig) -> None:
    """Checks that need no data: combinations the schema cannot express."""
    from llmops_ray.train.deepspeed_config import build_deepspeed_config

    build_deepspeed_config(config.deepspeed, config.optim, config.workers.use_gpu, bf16_supported=False)
    if config.method == "lora" and not config.lora.target_modules:
        raise UserError("lora.target_modules is empty")
    if config.objective == "dpo" and config.data.packing:
        raise UserError("data.packing cannot be used with objective: dpo (each row is one preference pair)")


@dataclass
class SharedDatasets:
    """Tokenized, materialized datasets built once and handed to several fine-tuning runs
    that read the same data the same way (the trials of a search): each run then skips its
    own Ray Data tokenization (~10 s of a tiny trial's ~25 s start on 2 CPUs)."""

    key: str
    """:func:`llmops_ray.train.data.sft_dataset_key` of the config they were built for."""
    train: Any
    validation: Any
    stats: dict[str, Any]


def _dataset_key(config: FinetuneConfig, model_dir: str, sha256: str) -> str:
    from llmops_ray.train.data import sft_dataset_key

    return sft_dataset_key(sha256, model_dir, config.data, config.workers.num_workers, config.optim.seed)


def _tokenize(config: FinetuneConfig, model_dir: str, files: list[str], records: int = 0):
    """``(train, validation, stats)`` of ``config``'s data, tokenized with Ray Data."""
    from llmops_ray.train.data import build_sft_datasets

    if config.objective == "dpo":
        from llmops_ray.train.dpo_data import build_pair_datasets

        return build_pair_datasets(files, model_dir, config.data, config.dpo.max_prompt_len,
                                   config.workers.num_workers, config.optim.seed, records)
    return build_sft_datasets(files, model_dir, config.data, config.workers.num_workers, config.optim.seed)


def _validate_data(config: FinetuneConfig) -> dict[str, Any]:
    """Every record checked on the driver: ``{"files", "records"}`` (pairs for DPO)."""
    from llmops_ray.train.data import validate_dataset

    if config.objective == "dpo":
        from llmops_ray.train.dpo_data import validate_pairs

        return validate_pairs(config.data.path)
    return validate_dataset(config.data.path, config.data.format)


def build_shared_datasets(config: FinetuneConfig) -> SharedDatasets:
    """Tokenize ``config``'s data once (on the driver's Ray) for runs that share it."""
    from llmops_ray.cluster import init_ray
    from llmops_ray.models.base import file_hash
    model_dir = resolve_base_model(config.base_model)
    info = _validate_data(config)
    key = _dataset_key(config, model_dir, file_hash(info["files"]))
    init_ray()
    return SharedDatasets(key, *_tokenize(config, model_dir, info["files"], info["records"]))


def prepare(config: FinetuneConfig, cpus_per_worker: float | None = None, shared: SharedDatasets | None = None) -> Prepared:
    """Validate everything, start/join Ray, tokenize with Ray Data (or take ``shared``), and build the plan."""
    from llmops_ray.cluster import init_ray
    from llmops_ray.models.base import file_hash, load_tokenizer
    from llmops_ray.common.tracking import start_run
    from llmops_ray.config import runs_root
    from llmops_ray.train.config import StepsGeometry, TrainPlan
    from llmops_ray.train.runner import fit_workers

    check_config(config)
    model_dir = resolve_base_model(config.base_model)
    dataset_info = _validate_data(config)
    dataset_info["sha256"] = file_hash(dataset_info["files"])
    dataset_info["path"] = str(Path(config.data.path).expanduser().resolve())
    tokenizer = load_tokenizer(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"the tokenizer of {model_dir} has no chat template")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if config.method == "lora":
        _check_lora_targets(model_dir, config.lora.target_modules)

    if shared is not None and shared.key != _dataset_key(config, model_dir, dataset_info["sha256"]):
        raise ValueError(f"run {config.run_name!r}: the shared datasets were built for other data settings")

    init_ray()
    if shared is not None:
        train_ds, val_ds, stats = shared.train, shared.validation, shared.stats
    else:
        train_ds, val_ds, stats = _tokenize(config, model_dir, dataset_info["files"], dataset_info["records"])
    if cpus_per_worker is not None:  # a Tune trial: its share was planned with the other trials'
        workers = config.workers.model_copy(update={"cpus_per_worker": cpus_per_worker, "fit_to_free_cpus": False})
    else:
        workers = fit_workers(config.workers)
    run = start_run(config.mlflow_experiment, config.run_name, params=config.model_dump(mode="json"), reopen_unfinished=True)
    mlflow = run.to_plan() if run else None
    plan = TrainPlan(
        run_name=config.run_name,
        label=config.run_name,
        model_dir=model_dir,
        method=config.method,
        lora=config.lora if config.method == "lora" else None,
        objective=config.objective,
        dpo=config.dpo if config.objective == "dpo" else None,
        optim=config.optim,
        deepspeed=config.deepspeed,
        workers=workers,
        checkpoint=config.checkpoint,
        geometry=StepsGeometry.of(stats["train_rows"], config.optim, workers.num_workers),
        has_val=val_ds is not None,
        pad_id=pad_id,
        log_every=config.log_every,
        mlflow=mlflow,
        storage_path=str(runs_root()),
    )
    datasets = {"train": train_ds}
    if val_ds is not None:
        datasets["validation"] = val_ds
    output_dir = Path(config.output_dir).expanduser().resolve() if config.output_dir else models_root() / config.run_name
    return Prepared(config, plan, datasets, model_dir, dataset_info, stats, output_dir, mlflow)


def _check_lora_targets(model_dir: str, targets: list[str]) -> None:
    """Fail early when no module of the base model matches the LoRA targets (local dirs only)."""
    if targets == ["all-linear"] or not (Path(model_dir) / "config.json").is_file():
        return
    import json

    arch = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type", "")
    known = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}
    if arch in {"llama", "qwen2", "qwen3", "mistral"} and not set(targets) & known:
        raise UserError(f"lora.target_modules {targets} match no module of a {arch} model ({sorted(known)})")


def finetune(
    config: FinetuneConfig,
    *,
    run_config=None,
    callbacks: list | None = None,
    cpus_per_worker: float | None = None,
    shared: SharedDatasets | None = None,
) -> dict[str, Any]:
    """Run SFT and write the output directory; returns ``output_dir``, ``metrics``
    (``train_loss``, ``eval_loss``, ...), ``run_name``, ``checkpoint_path``, ``mlflow_run_id``.

    Rerunning with the same ``run_name`` resumes from the run's latest checkpoint. Inside a
    Ray Tune function trainable pass ``callbacks=[TuneReportCallback()]`` and a per-worker
    ``cpus_per_worker`` share (each trial then runs its own TorchTrainer), and ``shared``
    datasets from :func:`build_shared_datasets` when every trial reads the data the same way.
    """
    from llmops_ray.common.tracking import TrackedRun
    from llmops_ray.train.runner import run_plan

    prepared = prepare(config, cpus_per_worker=cpus_per_worker, shared=shared)
    try:
        result, state = run_plan(
            prepared.plan, prepared.datasets, run_config=run_config, callbacks=callbacks, cpus_per_worker=cpus_per_worker
        )
    except BaseException:
        if prepared.mlflow:
            TrackedRun.from_plan(prepared.mlflow).finish(failed=True)
        raise
    out = write_outputs(prepared, result, state)
    if prepared.mlflow:
        TrackedRun.from_plan(prepared.mlflow).finish(metrics=out["metrics"], artifacts=[Path(out["output_dir"]) / "loss_curve.png", Path(out["output_dir"]) / "lineage.json"])
    return out


def _parent_lineage(requested: str, model_dir: str) -> dict[str, Any] | None:
    """What the run started from: the model directory asked for (an SFT adapter, a merged
    stack) with the kind and run name of its own lineage, when it has one."""
    import json

    source = Path(requested).expanduser() if requested else Path(model_dir)
    lineage_file = source / "lineage.json"
    if not lineage_file.is_file():
        return None
    lineage = json.loads(lineage_file.read_text())
    return {"path": str(source.resolve()), "kind": lineage.get("kind"), "run_name": lineage.get("run_name"),
            "objective": lineage.get("objective", "sft" if lineage.get("run_name") else None)}


def write_outputs(prepared: Prepared, result, state: dict[str, Any]) -> dict[str, Any]:
    """Assemble the output directory from the final checkpoint's export (atomically)."""
    from llmops_ray.models.base import load_tokenizer, write_lineage
    from llmops_ray.train.loop import checkpoint_export_dir
    from llmops_ray.common.artifacts import git_commit, publish_dir, ray_job_id, staging_dir
    from llmops_ray.train.runner import plot_loss_curve

    config = prepared.config
    final = state.get("final", {})
    history = state.get("history", [])
    first = history[0]["train_loss"] if history else None
    metrics = {
        "train_loss": final.get("train_loss"),
        "eval_loss": final.get("val_loss"),
        "first_train_loss": first,
        "steps": final.get("step", state.get("global_step")),
        "tokens": state.get("tokens"),
        "restarts": state.get("restarts", 0),
    }
    if config.objective == "dpo":  # final validation rewards (val_reward_accuracy, ...) and the last step's
        metrics.update({k: v for k, v in final.items() if k.startswith("val_") and k != "val_loss"})
        last = history[-1] if history else {}
        metrics.update({f"train_{k}": last[k] for k in ("reward_accuracy", "reward_margin") if k in last})
    tmp = staging_dir(prepared.output_dir)
    try:
        export = checkpoint_export_dir(result.checkpoint)
        for item in export.iterdir():
            target = tmp / item.name
            shutil.copytree(item, target) if item.is_dir() else shutil.copy2(item, target)
        tokenizer = load_tokenizer(prepared.model_dir)
        tokenizer.save_pretrained(tmp)
        if tokenizer.chat_template:
            (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
        gen_cfg = Path(prepared.model_dir) / "generation_config.json"
        if gen_cfg.is_file() and config.method == "full":
            shutil.copy2(gen_cfg, tmp / "generation_config.json")
        (tmp / "finetune_config.yaml").write_text(dump_config(config), encoding="utf-8")
        plot_loss_curve(history, tmp / "loss_curve.png", f"{config.run_name} ({config.method})")
        write_lineage(
            tmp,
            {
                "kind": "lora-adapter" if config.method == "lora" else "full-model",
                "run_name": config.run_name,
                "objective": config.objective,
                "tenant": config.tenant,
                "base_model": prepared.model_dir,
                "parent": _parent_lineage(config.base_model, prepared.model_dir),
                "dataset": {
                    "path": prepared.dataset_info["path"],
                    "files": prepared.dataset_info["files"],
                    "sha256": prepared.dataset_info["sha256"],
                    "records": prepared.dataset_info["records"],
                    **prepared.data_stats,
                    **{k: prepared.dataset_info[k] for k in ("pairs_sha256", "pairs_lineage") if k in prepared.dataset_info},
                },
                "hyperparameters": config.model_dump(mode="json"),
                "metrics": metrics,
                "git_commit": git_commit(),
                "ray_job_id": ray_job_id(),
                "checkpoint_path": result.checkpoint.path,
                "mlflow_run_id": (prepared.mlflow or {}).get("run_id"),
            },
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, prepared.output_dir)
    return {
        "output_dir": str(prepared.output_dir),
        "run_name": config.run_name,
        "method": config.method,
        "metrics": metrics,
        "checkpoint_path": result.checkpoint.path,
        "mlflow_run_id": (prepared.mlflow or {}).get("run_id"),
        "history": history,
    }
