"""Typed configs of the training loop: fine-tuning (:class:`FinetuneConfig`) and the groups it
shares with bootstrap pretraining (optimiser, DeepSpeed, workers, checkpoints).

Loaded with ``llmops_ray.config.load_config(FinetuneConfig, "sft_lora_tiny_cpu", ["lr=1e-4"])``;
unknown keys are an error naming the key.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from llmops_ray.config import StrictModel, UserError


class OptimConfig(StrictModel):
    """Optimiser, schedule and batch geometry."""

    lr: float = Field(2e-4, gt=0)
    """Peak learning rate (AdamW)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    warmup_steps: int = Field(0, ge=0)
    """Optimizer steps of linear warmup from 0 to ``lr`` (takes precedence over warmup_ratio when > 0)."""
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    """Warmup as a fraction of the total optimizer steps (used when warmup_steps is 0)."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warmup: cosine or linear to ``min_lr_ratio * lr``, or constant."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Final learning rate as a fraction of ``lr``."""
    epochs: int = Field(1, ge=1)
    """Passes over the training split (ignored when max_steps > 0)."""
    max_steps: int = Field(0, ge=0)
    """Total optimizer steps; 0 = as many as ``epochs`` passes take."""
    micro_batch_size: int = Field(4, ge=1)
    """Sequences per worker per forward/backward."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches accumulated per optimizer step (global batch = micro * accum * workers)."""
    grad_clip: float = Field(1.0, ge=0)
    """Gradient-norm clipping (0 = off)."""
    seed: int = 0
    """Seed for parameter init of adapters, shuffling and dropout."""


class DeepSpeedSettings(StrictModel):
    """DeepSpeed engine settings; turned into a DeepSpeed JSON config by ``train.deepspeed_config``."""

    zero_stage: int = 2
    """ZeRO stage 0 (plain DDP), 1 (optimizer states), 2 (+ gradients) or 3 (+ parameters) partitioned."""
    offload_optimizer: Literal["none", "cpu"] = "none"
    """Offload optimizer states to CPU memory (ZeRO 1-3; uses DeepSpeed's CPU Adam, JIT-built once)."""
    offload_param: Literal["none", "cpu"] = "none"
    """Offload parameters to CPU memory (ZeRO 3 only)."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto`` = bf16 on GPUs that support it, fp32 on CPU."""
    torch_adam: bool = True
    """Use torch's AdamW instead of DeepSpeed's fused Adam (which is JIT-compiled on first use)."""
    extra: dict = Field(default_factory=dict)
    """Raw keys merged last into the DeepSpeed config (escape hatch for anything not modelled here)."""

    @field_validator("zero_stage")
    @classmethod
    def _known_stage(cls, value: int) -> int:
        if value not in (0, 1, 2, 3):
            raise ValueError(f"unknown ZeRO stage {value} (use 0, 1, 2 or 3)")
        return value


class WorkerSettings(StrictModel):
    """Ray Train worker group."""

    num_workers: int = Field(2, ge=1)
    """Data-parallel Ray Train workers."""
    cpus_per_worker: float = Field(0.9, gt=0)
    """CPU share of each worker (fractional is fine: 2 workers x 0.9 on a 2-core machine)."""
    fit_to_free_cpus: bool = True
    """Ask for less than ``cpus_per_worker`` (down to 0.2) when the cluster has fewer CPUs free,
    e.g. while a Serve app holds part of a small head, instead of waiting for them. Turn it off
    on an autoscaling cluster, where the autoscaler should add nodes instead."""
    use_gpu: bool = False
    """One GPU per worker, NCCL instead of gloo."""
    torch_threads: int = Field(0, ge=0)
    """Intra-op threads per worker; 0 = max(1, round(cpus_per_worker))."""


class CheckpointSettings(StrictModel):
    """Checkpointing, keeping and recovery."""

    every_steps: int = Field(50, ge=1)
    """Save a checkpoint (and evaluate) every N optimizer steps; one is always saved at the end."""
    keep_best: int = Field(2, ge=1)
    """Checkpoints kept, best by validation loss (Ray always keeps the latest as well)."""
    max_failures: int = Field(2, ge=0)
    """Worker-group restarts from the last checkpoint after a worker dies (Ray Train FailureConfig)."""


class DataSettings(StrictModel):
    """Supervised fine-tuning data."""

    path: str = ""
    """JSONL file (or directory of .jsonl files): OpenAI chat ``messages`` or Alpaca ``instruction``/``input``/``output``
    (``objective: dpo``: preference pairs ``prompt``/``chosen``/``rejected``)."""
    format: Literal["auto", "chat", "alpaca"] = "auto"
    """Record format; ``auto`` decides per file from its first record."""
    max_seq_len: int = Field(512, ge=16)
    """Tokens per example (longer ones are truncated; the packed block length when packing)."""
    packing: bool = False
    """Concatenate examples into full ``max_seq_len`` blocks (fewer pad tokens, cross-example attention)."""
    val_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of examples held out for validation (at least one per worker when > 0)."""
    system_prompt: str = ""
    """System message prepended to records that have none (empty = none)."""


class DpoSettings(StrictModel):
    """Direct preference optimisation (``objective: dpo``): the loss and its reference model."""

    beta: float = Field(0.1, gt=0)
    """Strength of the KL tie to the reference model (DPO's beta; IPO's tau)."""
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid"
    """``sigmoid``: the DPO loss -log sigmoid(beta * margin); ``ipo``: the IPO squared loss on
    per-token averaged log-ratios, (margin - 1 / (2 beta))^2."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """Assumed share of flipped preference labels (conservative DPO, sigmoid loss only):
    -(1 - eps) log sigmoid(beta m) - eps log sigmoid(-beta m)."""
    max_prompt_len: int = Field(0, ge=0)
    """Prompt tokens kept at most (cut from the left); 0 = only what ``data.max_seq_len`` forces."""
    sft_weight: float = Field(0.0, ge=0)
    """Weight of an added negative log-likelihood of the chosen response (per token, per pair;
    the "RPO" term, TRL's ``rpo_alpha``). 0 = pure DPO/IPO. DPO alone only orders the two
    answers (it can lower both); a small weight keeps the chosen answer likely, which a
    weak or barely trained start needs before its generations change."""


class LoraSettings(StrictModel):
    """LoRA adapter (peft)."""

    rank: int = Field(8, ge=1)
    """Adapter rank r."""
    alpha: float = Field(16, gt=0)
    """Scaling numerator (effective scale alpha / r)."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the adapter input."""
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that get adapters (Llama/Qwen names; ``all-linear`` is accepted by peft)."""


class FinetuneConfig(StrictModel):
    """Supervised fine-tuning of a causal LM with Ray Train + DeepSpeed (``llmops finetune``)."""

    run_name: str = "sft"
    """Name of the run: Ray Train storage ``runs/<run_name>`` (rerun to resume), output ``models/<run_name>``."""
    base_model: str = ""
    """Local Hugging Face model directory or hub id; empty = the bootstrapped ``models/tiny-base``."""
    method: Literal["lora", "full"] = "lora"
    """LoRA adapter training or full fine-tuning."""
    objective: Literal["sft", "dpo"] = "sft"
    """``sft``: next-token loss on chat/Alpaca records; ``dpo``: preference pairs
    (``prompt``/``chosen``/``rejected`` JSONL) against a frozen reference (the base with the
    LoRA adapter disabled, or a frozen copy for ``method: full``)."""
    dpo: DpoSettings = Field(default_factory=DpoSettings)
    """DPO loss settings (used when objective is dpo)."""
    data: DataSettings = Field(default_factory=DataSettings)
    """Training data."""
    lora: LoraSettings = Field(default_factory=LoraSettings)
    """LoRA settings (used when method is lora)."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings)
    """DeepSpeed ZeRO settings."""
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    """Ray Train workers."""
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    """Checkpoints and failure recovery."""
    output_dir: str = ""
    """Where the adapter / model goes; empty = ``<workspace>/models/<run_name>``."""
    log_every: int = Field(1, ge=1)
    """Log train metrics (MLflow, stdout progress) every N optimizer steps."""
    mlflow_experiment: str = "finetune"
    """MLflow experiment name (tracking URI: ``MLFLOW_TRACKING_URI`` or the workspace store)."""
    tenant: str | None = None
    """Tenant that owns the result (written to ``lineage.json``): a served adapter with an
    owner is listed and callable only with that tenant's API keys; None = every tenant."""

    @field_validator("run_name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value):
            raise ValueError("run_name may contain letters, digits, '.', '_' and '-' only")
        return value


class StepsGeometry(StrictModel):
    """How a training set is cut into steps, the same on every rank."""

    micro_batches_per_epoch: int
    """Micro-batches each worker reads per epoch (a whole number of accumulation groups)."""
    steps_per_epoch: int
    """Optimizer steps per epoch."""
    total_steps: int
    """Optimizer steps of the run (``optim.max_steps``, or epochs x steps per epoch)."""

    @classmethod
    def of(cls, n_train: int, optim: OptimConfig, num_workers: int) -> "StepsGeometry":
        """Ray Train splits the training set equally (``n_train // workers`` rows each); a pass
        stops at the last whole accumulation group so every rank takes the same steps."""
        rows = n_train // num_workers
        micro = math.ceil(rows / optim.micro_batch_size)
        steps_per_epoch = micro // optim.grad_accum
        if steps_per_epoch == 0:
            raise UserError(
                f"{n_train} training examples are too few for one optimizer step of "
                f"{optim.micro_batch_size} x {optim.grad_accum} (micro batch x accumulation) on {num_workers} workers"
            )
        return cls(micro_batches_per_epoch=steps_per_epoch * optim.grad_accum, steps_per_epoch=steps_per_epoch,
                   total_steps=optim.max_steps or optim.epochs * steps_per_epoch)


class TrainPlan(StrictModel):
    """Everything a Ray Train worker needs (``train_loop_config``, sent as JSON, read back typed)."""

    run_name: str
    """Ray Train run name (its storage directory; a rerun of the same name resumes)."""
    label: str
    """Prefix of the workers' progress lines."""
    model_dir: str
    """Model to train (a local Hugging Face directory)."""
    method: Literal["lora", "full"]
    """``lora``: train a peft adapter; ``full``: every weight."""
    lora: LoraSettings | None = None
    """Adapter settings (``method: lora``)."""
    objective: Literal["sft", "dpo"] = "sft"
    """Loss: next-token (``sft``) or preference pairs (``dpo``, batches of chosen + rejected rows)."""
    dpo: DpoSettings | None = None
    """DPO loss settings (``objective: dpo``)."""
    optim: OptimConfig
    """Optimiser and schedule."""
    deepspeed: DeepSpeedSettings
    """ZeRO stage and optimiser implementation."""
    workers: WorkerSettings
    """Worker group (its CPU share already fitted to the cluster)."""
    checkpoint: CheckpointSettings
    """Checkpoint interval, how many to keep, failures tolerated."""
    geometry: StepsGeometry
    """Steps per epoch and in total."""
    has_val: bool
    """A validation split exists (checkpoints are scored by ``val_loss``, else ``train_loss``)."""
    pad_id: int
    """Token id used to pad micro-batches."""
    log_every: int = Field(10, ge=1)
    """Progress/MLflow logging interval in optimizer steps."""
    mlflow: dict[str, str] | None = None
    """The MLflow run rank 0 records into (``TrackedRun.to_plan()``), or None."""
    storage_path: str
    """Ray Train storage (``<workspace>/runs``)."""

    @property
    def score_attribute(self) -> str:
        return "val_loss" if self.has_val else "train_loss"

    @property
    def torch_threads(self) -> int:
        """Intra-op threads: as requested, else as many as the worker's CPU share rounds to."""
        return self.workers.torch_threads or max(1, int(round(self.workers.cpus_per_worker)))
