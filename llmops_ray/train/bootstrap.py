"""``llmops model bootstrap``: the project's own small base model, pretrained from scratch.

A byte-level BPE tokenizer (with the ChatML template) is trained on the corpus, a random-init
Llama-architecture model is built (``base.build_random_model_dir``), and the same Ray Train +
DeepSpeed loop as fine-tuning pretrains it on fixed-length blocks of the corpus (labels =
inputs). The output is a standard Hugging Face directory that transformers and vLLM load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from llmops_ray.config import SAMPLE_CORPUS, StrictModel, UserError, dump_config, models_root, runs_root
from llmops_ray.models.base import BOS_TOKEN, TinyModelConfig, build_random_model_dir, text_hash
from llmops_ray.train.config import CheckpointSettings, DeepSpeedSettings, OptimConfig, WorkerSettings



class BootstrapConfig(StrictModel):
    """Pretraining a tiny base model from scratch (``llmops model bootstrap``)."""

    run_name: str = "bootstrap-tiny"
    """Ray Train run name (storage ``runs/<run_name>``; rerun to resume)."""
    corpus: list[str] = Field(default_factory=list)
    """Files or directories (.txt, .md, .jsonl ``text``); empty = the packaged sample corpus."""
    out: str = ""
    """Output model directory; empty = ``<workspace>/models/tiny-base``."""
    model: TinyModelConfig = Field(default_factory=lambda: TinyModelConfig(vocab_size=2048))
    """Model shape and tokenizer vocabulary size."""
    seq_len: int = Field(128, ge=16)
    """Tokens per training block."""
    val_fraction: float = Field(0.05, ge=0, lt=1)
    """Share of blocks held out for validation."""
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(
            lr=3e-3, weight_decay=0.01, warmup_steps=10, schedule="cosine", max_steps=80, micro_batch_size=8, grad_clip=1.0
        )
    )
    """Optimiser and schedule."""
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings)
    """DeepSpeed ZeRO settings."""
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    """Ray Train workers."""
    checkpoint: CheckpointSettings = Field(default_factory=lambda: CheckpointSettings(every_steps=20))
    """Checkpoints and failure recovery."""
    log_every: int = Field(10, ge=1)
    """Progress/MLflow logging interval in optimizer steps."""
    mlflow_experiment: str = "bootstrap"
    """MLflow experiment name."""


def corpus_texts(paths: list[str]) -> tuple[list[str], list[str]]:
    """(texts, resolved paths) of the corpus, read as ingest reads documents
    (:mod:`llmops_ray.common.readers`); unreadable files and records are skipped. An empty
    corpus is a UserError."""
    from llmops_ray.common.readers import ReadError, list_files, read_file

    if not paths:
        if not SAMPLE_CORPUS.is_dir():
            raise UserError("no --corpus given and the packaged sample corpus is missing")
        paths = [str(SAMPLE_CORPUS)]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"corpus path {missing[0]!r} does not exist")
    texts = []
    for file in list_files(paths):
        try:
            texts += [d["text"] for d in read_file(file) if not d.get("error") and d["text"].strip()]
        except ReadError:
            continue  # an unreadable file is skipped, not fatal for pretraining
    if not texts:
        raise UserError(f"corpus {paths} has no text (.txt, .md, .html, .pdf or .jsonl records with 'id' and 'text')")
    return texts, [str(Path(p).resolve()) for p in paths]


def _init_dir(config: BootstrapConfig, texts: list[str]) -> Path:
    """Random-init model + tokenizer, kept beside the run so a rerun resumes on the same vocabulary."""
    init = runs_root() / f"{config.run_name}-init"
    marker = init / "lineage.json"
    wanted = {"corpus_sha256": text_hash(texts), "model_config": config.model.model_dump(mode="json")}
    if marker.is_file():
        have = json.loads(marker.read_text())
        if have.get("corpus_sha256") == wanted["corpus_sha256"] and have.get("model_config") == wanted["model_config"]:
            return init
        shutil.rmtree(init)
    if config.model.head_dim() != 64:
        print(f"note: head_dim {config.model.head_dim()} (vLLM's CPU attention needs 64)")
    build_random_model_dir(texts, init, config.model)
    return init


def bootstrap(config: BootstrapConfig, *, run_config=None, callbacks=None) -> dict[str, Any]:
    """Train tokenizer + pretrain the tiny model; returns ``output_dir``, ``metrics``, ``run_name``."""
    from llmops_ray.cluster import init_ray
    from llmops_ray.models.base import load_tokenizer, write_lineage
    from llmops_ray.train.data import build_pretrain_datasets
    from llmops_ray.train.deepspeed_config import build_deepspeed_config
    from llmops_ray.train.loop import checkpoint_export_dir
    from llmops_ray.train.runner import (
        fit_workers, plot_loss_curve, run_plan,
    )
    from llmops_ray.common.artifacts import git_commit, publish_dir, ray_job_id, staging_dir
    from llmops_ray.common.tracking import TrackedRun, start_run
    from llmops_ray.train.config import StepsGeometry, TrainPlan

    build_deepspeed_config(config.deepspeed, config.optim, config.workers.use_gpu, bf16_supported=False)
    if config.model.hidden_size % config.model.num_attention_heads:
        raise UserError("model.hidden_size must be a multiple of model.num_attention_heads")
    if config.seq_len > config.model.max_position_embeddings:
        raise UserError("seq_len exceeds model.max_position_embeddings")
    texts, paths = corpus_texts(config.corpus)
    out_dir = Path(config.out).expanduser().resolve() if config.out else models_root() / "tiny-base"
    init = _init_dir(config, texts)
    tokenizer = load_tokenizer(str(init))
    # One token stream, documents separated by <|endoftext|>; cut into seq_len blocks.
    stream: list[int] = []
    for ids in tokenizer([t + BOS_TOKEN for t in texts], add_special_tokens=False)["input_ids"]:
        stream.extend(ids)

    init_ray()
    train_ds, val_ds, stats = build_pretrain_datasets(
        stream, config.seq_len, config.val_fraction, config.workers.num_workers, config.optim.seed
    )
    run = start_run(config.mlflow_experiment, config.run_name, params=config.model_dump(mode="json"), reopen_unfinished=True)
    mlflow = run.to_plan() if run else None
    workers = fit_workers(config.workers)
    plan = TrainPlan(
        run_name=config.run_name, label=config.run_name, model_dir=str(init), method="full",
        optim=config.optim, deepspeed=config.deepspeed, workers=workers, checkpoint=config.checkpoint,
        geometry=StepsGeometry.of(stats["train_rows"], config.optim, workers.num_workers),
        has_val=val_ds is not None, pad_id=tokenizer.pad_token_id, log_every=config.log_every, mlflow=mlflow,
        storage_path=str(runs_root()),
    )
    datasets = {"train": train_ds} | ({"validation": val_ds} if val_ds is not None else {})
    try:
        result, state = run_plan(plan, datasets, run_config=run_config, callbacks=callbacks)
    except BaseException:
        if mlflow:
            TrackedRun.from_plan(mlflow).finish(failed=True)
        raise
    history = state.get("history", [])
    final = state.get("final", {})
    metrics = {
        "first_train_loss": history[0]["train_loss"] if history else None,
        "train_loss": final.get("train_loss"),
        "eval_loss": final.get("val_loss"),
        "steps": final.get("step"),
        "tokens": state.get("tokens"),
        "corpus_tokens": len(stream),
    }
    tmp = staging_dir(out_dir)
    try:
        for item in checkpoint_export_dir(result.checkpoint).iterdir():
            shutil.copytree(item, tmp / item.name) if item.is_dir() else shutil.copy2(item, tmp / item.name)
        tokenizer.save_pretrained(tmp)
        shutil.copy2(init / "generation_config.json", tmp / "generation_config.json")
        (tmp / "bootstrap_config.yaml").write_text(dump_config(config), encoding="utf-8")
        plot_loss_curve(history, tmp / "loss_curve.png", f"{config.run_name} (pretraining)")
        write_lineage(tmp, {
            "kind": "bootstrap-pretrained",
            "run_name": config.run_name,
            "corpus": {"paths": paths, "documents": len(texts), "sha256": text_hash(texts), "tokens": len(stream)},
            "model_config": config.model.model_dump(mode="json"),
            "hyperparameters": config.model_dump(mode="json"),
            "metrics": metrics,
            "git_commit": git_commit(),
            "ray_job_id": ray_job_id(),
            "checkpoint_path": result.checkpoint.path,
            "mlflow_run_id": (mlflow or {}).get("run_id"),
        })
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, out_dir)
    if mlflow:
        TrackedRun.from_plan(mlflow).finish(metrics=metrics, artifacts=[out_dir / "loss_curve.png", out_dir / "lineage.json"])
    return {"output_dir": str(out_dir), "run_name": config.run_name, "metrics": metrics,
            "checkpoint_path": result.checkpoint.path, "history": history}
