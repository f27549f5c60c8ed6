"""The Ray Train loop shared by fine-tuning and bootstrap pretraining, and the TorchTrainer around it.

Worker side (:func:`train_loop_per_worker`, reading a typed
:class:`~llmops_ray.train.config.TrainPlan`): load the model (optionally wrap it in a peft
LoRA), ``deepspeed.initialize`` on the process group Ray Train set up (gloo on CPU, NCCL on
GPU), stream micro-batches from ``ray.train.get_dataset_shard("train")``, step, evaluate and
checkpoint every N optimizer steps through ``ray.train.report(checkpoint=...)``.

A checkpoint holds the DeepSpeed engine state (``ds/``: module, ZeRO-partitioned optimizer
and scheduler states, one file per rank) and ``state.json``: the optimizer step, the epoch and
the micro-batch position inside it (so a rerun or a restarted worker group resumes at the
same data position) and the metric history. The final checkpoint also carries ``export/``:
the adapter (peft format) or the full model, gathered from all ranks under ZeRO-3.

Driver side (:func:`build_trainer`): the ``TorchTrainer`` with explicit CPU shares, the run
storage ``<workspace>/runs/<run_name>`` (rerun with the same name = resume), best-K
checkpoint retention by validation loss and ``FailureConfig`` restarts.
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from llmops_ray.common.tracking import TrackedRun
from llmops_ray.train.config import TrainPlan

STATE_FILE = "state.json"
DS_TAG = "ds"
EXPORT_DIR = "export"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Body of every Ray Train worker; ``config`` is a :class:`TrainPlan` as JSON."""
    import ray.train

    worker = _Worker(TrainPlan.model_validate(config), ray.train.get_context().get_world_rank())
    while worker.state["global_step"] < worker.total_steps:
        worker.run_epoch()
    worker.finish()


def _build_engine(plan: TrainPlan):
    """The model (wrapped in a peft LoRA for ``method: lora``) in a DeepSpeed engine, and the
    DPO reference: None for SFT and for LoRA (the adapter is disabled instead), a frozen copy
    of the starting weights for full DPO."""
    import deepspeed
    import torch
    from transformers import AutoModelForCausalLM

    from llmops_ray.train.deepspeed_config import build_deepspeed_config, lr_lambda

    ds_config = build_deepspeed_config(plan.deepspeed, plan.optim, plan.workers.use_gpu)
    dtype = torch.bfloat16 if ds_config["bf16"]["enabled"] else torch.float32
    model = AutoModelForCausalLM.from_pretrained(plan.model_dir, dtype=dtype)
    model.config.use_cache = False
    if plan.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = plan.lora
        model = get_peft_model(model, LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    schedule = lr_lambda(plan.optim, plan.geometry.total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=ds_config,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
    )
    ref_model = None
    if plan.objective == "dpo" and plan.method == "full":
        ref_model = AutoModelForCausalLM.from_pretrained(plan.model_dir, dtype=dtype).to(engine.device).eval()
        ref_model.requires_grad_(False)
    return engine, ref_model


class _Worker:
    """One rank's training state: the engine, the data position and history (``state``, saved
    in every checkpoint) and the rolling window of the current optimizer step."""

    def __init__(self, plan: TrainPlan, rank: int):
        import ray.train
        import torch

        self.plan, self.rank = plan, rank
        self.total_steps = plan.geometry.total_steps
        torch.set_num_threads(plan.torch_threads)
        torch.manual_seed(plan.optim.seed)
        self.engine, self.ref_model = _build_engine(plan)
        self.state = self._restore()
        self.tracker = TrackedRun.from_plan(plan.mlflow) if rank == 0 else None  # rank 0 records
        self.val_batches = self._validation_batches()
        self.train_it = ray.train.get_dataset_shard("train")
        self.last_train_loss = self.state["history"][-1]["train_loss"] if self.state["history"] else None
        self.val_extra: dict[str, float] = {}  # DPO: validation reward metrics of the last evaluate()
        self._reset_window()
        self.engine.train()

    def _restore(self) -> dict[str, Any]:
        """The checkpointed state of a resumed run (a rerun or a restarted worker group), or a new one."""
        import ray.train

        state = {"global_step": 0, "epoch": 0, "micro_in_epoch": 0, "tokens": 0, "history": [], "restarts": 0}
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return state
        with checkpoint.as_directory() as ckpt_dir:
            self.engine.load_checkpoint(ckpt_dir, tag=DS_TAG)
            state = json.loads((Path(ckpt_dir) / STATE_FILE).read_text())
        state["restarts"] = state.get("restarts", 0) + 1
        self._say(f"resumed at step {state['global_step']} (epoch {state['epoch']}, "
                  f"micro-batch {state['micro_in_epoch']})")
        return state

    def _validation_batches(self) -> list:
        """The validation shard is small: read it once and keep it in memory."""
        import ray.train

        if not self.plan.has_val:
            return []
        shard = ray.train.get_dataset_shard("validation")
        return [self._collate(b)
                for b in shard.iter_batches(batch_size=self.plan.optim.micro_batch_size, batch_format="numpy")]

    def _say(self, message: str) -> None:
        if self.rank == 0:
            print(f"[{self.plan.label}] {message}", flush=True)

    def _collate(self, raw):
        from llmops_ray.train.data import collate
        from llmops_ray.train.dpo_data import collate_pairs

        return (collate_pairs if self.plan.objective == "dpo" else collate)(raw, self.plan.pad_id)

    def _loss(self, batch) -> tuple[Any, dict[str, float]]:
        """The micro-batch loss through the engine and, for DPO, its pair metric sums
        (rewards, margins, log-probs; see :func:`llmops_ray.train.dpo.pair_metric_sums`)."""
        if self.plan.objective == "dpo":
            from llmops_ray.train.dpo import dpo_micro_step

            return dpo_micro_step(self.engine, self.engine.module, self.ref_model, batch, self.plan.dpo)
        return self.engine(**batch).loss, {}

    def _reset_window(self) -> None:
        self.window = {"loss": 0.0, "micro": 0, "tokens": 0, "t0": time.perf_counter(), "pairs": {}}

    def _all_sum(self, values: list[float]) -> list[float]:
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self.engine.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def evaluate(self) -> float | None:
        """Mean validation loss over every rank's shard (None without one): per target token
        for SFT, per pair for DPO (which also sets ``val_extra``: reward accuracy, margins)."""
        import torch

        if not self.val_batches:
            return None
        self.engine.eval()
        loss_sum = count = 0.0
        pair_sums: dict[str, float] = {}
        with torch.no_grad():
            for batch in self.val_batches:
                batch = {k: v.to(self.engine.device) for k, v in batch.items()}
                loss, sums = self._loss(batch)
                if sums:
                    n = sums["pairs"]
                    pair_sums = {k: pair_sums.get(k, 0.0) + v for k, v in sums.items()}
                else:
                    n = float((batch["labels"][:, 1:] != -100).sum())  # shifted targets
                loss_sum += float(loss) * n
                count += n
        self.engine.train()
        keys = sorted(pair_sums)
        totals = self._all_sum([loss_sum, count] + [pair_sums[k] for k in keys])
        if keys:
            from llmops_ray.train.dpo import mean_pair_metrics

            self.val_extra = mean_pair_metrics(dict(zip(keys, totals[2:])), prefix="val_")
        return totals[0] / max(totals[1], 1.0)

    def save_and_report(self, metrics: dict[str, Any], final: bool) -> None:
        import ray.train

        with tempfile.TemporaryDirectory(prefix="llmops-ckpt-") as tmp:
            self.engine.save_checkpoint(tmp, tag=DS_TAG)
            if final:
                _export(self.engine, Path(tmp) / EXPORT_DIR, self.rank, self.plan.deepspeed.zero_stage)
            if self.rank == 0:
                (Path(tmp) / STATE_FILE).write_text(json.dumps(self.state))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def run_epoch(self) -> None:
        """One pass over the shard (from the saved position), stopping at the step budget."""
        state, plan = self.state, self.plan
        skip = state["micro_in_epoch"]
        micro = 0
        for raw in self.train_it.iter_batches(batch_size=plan.optim.micro_batch_size, batch_format="numpy"):
            if micro >= plan.geometry.micro_batches_per_epoch or state["global_step"] >= self.total_steps:
                break
            micro += 1
            if micro <= skip:  # resume: these micro-batches were consumed before the checkpoint
                continue
            batch = {k: v.to(self.engine.device) for k, v in self._collate(raw).items()}
            loss, pair_sums = self._loss(batch)
            self.engine.backward(loss)
            self.engine.step()
            self.window["loss"] += float(loss.detach())
            for key, value in pair_sums.items():
                self.window["pairs"][key] = self.window["pairs"].get(key, 0.0) + value
            self.window["micro"] += 1
            self.window["tokens"] += int(batch["attention_mask"].sum())
            if micro % plan.optim.grad_accum == 0:  # DeepSpeed stepped the optimizer
                self._optimizer_step_done(micro)
        if micro == 0 and skip == 0:
            raise RuntimeError("training shard yielded no batches")
        # The pass ended because the shard ran out (or hit its per-epoch cap): next epoch.
        # Stopping at total_steps mid-epoch keeps the position for a rerun with more steps.
        if state["global_step"] < self.total_steps or micro >= plan.geometry.micro_batches_per_epoch:
            state["epoch"] += 1
            state["micro_in_epoch"] = 0

    def _optimizer_step_done(self, micro: int) -> None:
        """Record the step (train loss over every rank), evaluate, log and checkpoint on schedule."""
        state, plan = self.state, self.plan
        state["global_step"] += 1
        state["micro_in_epoch"] = micro
        step = state["global_step"]
        pair_keys = sorted(self.window["pairs"])
        totals = self._all_sum([self.window["loss"], self.window["micro"], self.window["tokens"]]
                               + [self.window["pairs"][k] for k in pair_keys])
        loss_sum, n_micro, tokens = totals[:3]
        elapsed = time.perf_counter() - self.window["t0"]
        self.last_train_loss = loss_sum / n_micro
        state["tokens"] += int(tokens)
        record = {"step": step, "train_loss": self.last_train_loss, "lr": self.engine.get_lr()[0],
                  "tokens_per_s": tokens / max(elapsed, 1e-9), "step_time_s": elapsed, "epoch": state["epoch"]}
        if pair_keys:  # DPO: reward accuracy, margins, chosen/rejected log-probs (per pair)
            from llmops_ray.train.dpo import mean_pair_metrics

            record.update(mean_pair_metrics(dict(zip(pair_keys, totals[3:]))))
        self._reset_window()
        is_ckpt = step % plan.checkpoint.every_steps == 0 and step < self.total_steps
        if is_ckpt:
            record["val_loss"] = self.evaluate()
            record.update(self.val_extra)
        state["history"].append(record)
        if step % plan.log_every == 0 or is_ckpt or step == self.total_steps:
            if self.tracker:
                self.tracker.log_metrics({k: v for k, v in record.items() if k not in ("step", "epoch")}, step)
            val = f" val_loss {record['val_loss']:.4f}" if record.get("val_loss") is not None else ""
            self._say(f"step {step}/{self.total_steps} loss {self.last_train_loss:.4f} "
                      f"lr {record['lr']:.2e} tok/s {record['tokens_per_s']:.0f}{val}")
        if is_ckpt:
            self.save_and_report(_report_metrics(record, state), final=False)
            self.window["t0"] = time.perf_counter()  # checkpoint time is not step time

    def finish(self) -> None:
        """Final validation, the final metrics, and the checkpoint that carries the export."""
        val_loss = self.evaluate()
        final = {"step": self.state["global_step"], "train_loss": self.last_train_loss, "epoch": self.state["epoch"]}
        if val_loss is not None:
            final["val_loss"] = val_loss
            final.update(self.val_extra)
        self.state["final"] = final
        if self.tracker:
            self.tracker.log_metrics({k: v for k, v in final.items() if k not in ("step", "epoch") and v is not None},
                                     self.state["global_step"], prefix="final_")
        self.save_and_report(_report_metrics(final, self.state), final=True)


def _report_metrics(record: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Metrics attached to a checkpoint (the score attribute must be present in every one)."""
    out = {k: v for k, v in record.items() if isinstance(v, (int, float)) and v is not None}
    out["step"] = state["global_step"]
    out["epoch"] = state["epoch"]
    out["restarts"] = state.get("restarts", 0)
    return out


def _export(engine, export_dir: Path, rank: int, zero_stage: int) -> None:
    """Save the adapter or the full model (HF format) from rank 0; all ranks take part in the
    ZeRO-3 gather because the parameters are partitioned across them."""
    import deepspeed

    module = engine.module
    gather = (
        deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)
        if zero_stage == 3
        else nullcontext()
    )
    with gather:
        if rank == 0:
            export_dir.mkdir(parents=True, exist_ok=True)
            module.save_pretrained(str(export_dir), safe_serialization=True)


# --------------------------------------------------------------------------- driver side


def build_trainer(
    plan: TrainPlan,
    datasets: dict[str, Any],
    *,
    run_config=None,
    callbacks: list | None = None,
    cpus_per_worker: float | None = None,
):
    """The ``TorchTrainer`` for a plan (see :func:`llmops_ray.train.sft.prepare`).

    ``run_config`` replaces the default RunConfig (name = run name, storage = runs root,
    best-K checkpoints by validation loss, FailureConfig(max_failures)); ``callbacks`` are
    appended to it (e.g. Tune's ``TuneReportCallback``); ``cpus_per_worker`` overrides the
    per-worker CPU share (Ray Tune on 2 CPUs: 0.99 per worker, 0.01 per trial).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from llmops_ray.cluster import runtime_env

    cpus = cpus_per_worker if cpus_per_worker is not None else plan.workers.cpus_per_worker
    resources = {"CPU": cpus}
    if plan.workers.use_gpu:
        resources["GPU"] = 1
    if run_config is None:
        run_config = RunConfig(
            name=plan.run_name,
            storage_path=plan.storage_path,
            checkpoint_config=CheckpointConfig(
                num_to_keep=plan.checkpoint.keep_best,
                checkpoint_score_attribute=plan.score_attribute,
                checkpoint_score_order="min",
            ),
            failure_config=FailureConfig(max_failures=plan.checkpoint.max_failures),
            worker_runtime_env=runtime_env(),
        )
    if callbacks:
        run_config.callbacks = list(run_config.callbacks or []) + list(callbacks)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=plan.model_dump(mode="json"),
        scaling_config=ScalingConfig(
            num_workers=plan.workers.num_workers, use_gpu=plan.workers.use_gpu, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend="nccl" if plan.workers.use_gpu else "gloo"),
        run_config=run_config,
        datasets=datasets,
    )


def read_checkpoint_state(checkpoint) -> dict[str, Any]:
    """``state.json`` of a Ray Train checkpoint (step, data position, history, final metrics)."""
    with checkpoint.as_directory() as d:
        return json.loads((Path(d) / STATE_FILE).read_text())


def checkpoint_export_dir(checkpoint) -> Path:
    """Local path of the final checkpoint's ``export/`` directory (local storage)."""
    path = Path(checkpoint.path) / EXPORT_DIR
    if not path.is_dir():
        raise RuntimeError(f"checkpoint {checkpoint.path} has no exported model")
    return path
