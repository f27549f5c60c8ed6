"""The Ray Train loop shared by fine-tuning and bootstrap pretraining, and the TorchTrainer around it.

Worker side (:func:`train_loop_per_worker`): load the model (optionally wrap it in a peft
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

STATE_FILE = "state.json"
DS_TAG = "ds"
EXPORT_DIR = "export"


def train_loop_per_worker(plan: dict[str, Any]) -> None:
    """Body of every Ray Train worker; ``plan`` comes from :func:`make_plan` (JSON-safe)."""
    import deepspeed
    import ray.train
    import torch
    from transformers import AutoModelForCausalLM

    from llmops_ray.train.config import DeepSpeedSettings, OptimConfig
    from llmops_ray.train.data import collate
    from llmops_ray.train.deepspeed_config import build_deepspeed_config, lr_lambda

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.set_num_threads(plan["torch_threads"])
    optim = OptimConfig.model_validate(plan["optim"])
    ds_settings = DeepSpeedSettings.model_validate(plan["deepspeed"])
    torch.manual_seed(optim.seed)

    ds_config = build_deepspeed_config(ds_settings, optim, plan["use_gpu"])
    dtype = torch.bfloat16 if ds_config["bf16"]["enabled"] else torch.float32
    model = AutoModelForCausalLM.from_pretrained(plan["model_dir"], dtype=dtype)
    model.config.use_cache = False
    if plan["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        lora = plan["lora"]
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora["rank"],
                lora_alpha=lora["alpha"],
                lora_dropout=lora["dropout"],
                target_modules=lora["target_modules"],
                task_type="CAUSAL_LM",
            ),
        )
    total_steps = plan["total_steps"]
    schedule = lr_lambda(optim, total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=ds_config,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
    )
    device = engine.device

    state: dict[str, Any] = {"global_step": 0, "epoch": 0, "micro_in_epoch": 0, "tokens": 0, "history": [], "restarts": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            engine.load_checkpoint(ckpt_dir, tag=DS_TAG)
            state = json.loads((Path(ckpt_dir) / STATE_FILE).read_text())
        state["restarts"] = state.get("restarts", 0) + 1
        if rank == 0:
            print(f"[{plan['label']}] resumed at step {state['global_step']} "
                  f"(epoch {state['epoch']}, micro-batch {state['micro_in_epoch']})", flush=True)

    tracker = TrackedRun.from_plan(plan.get("mlflow")) if rank == 0 else None  # rank 0 records
    # The validation shard is small: read it once and keep it in memory.
    val_batches = []
    if plan["has_val"]:
        val_it = ray.train.get_dataset_shard("validation")
        val_batches = [collate(b, plan["pad_id"]) for b in val_it.iter_batches(batch_size=optim.micro_batch_size, batch_format="numpy")]

    def all_sum(values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def evaluate() -> float | None:
        if not val_batches:
            return None
        engine.eval()
        loss_sum = count = 0.0
        with torch.no_grad():
            for batch in val_batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                out = engine(**batch)
                n = float((batch["labels"][:, 1:] != -100).sum())  # shifted targets
                loss_sum += float(out.loss) * n
                count += n
        engine.train()
        loss_sum, count = all_sum([loss_sum, count])
        return loss_sum / max(count, 1.0)

    def save_and_report(metrics: dict[str, Any], final: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="llmops-ckpt-") as tmp:
            engine.save_checkpoint(tmp, tag=DS_TAG)
            if final:
                _export(engine, Path(tmp) / EXPORT_DIR, rank, ds_settings.zero_stage)
            if rank == 0:
                (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    accum = optim.grad_accum
    micro_per_epoch = plan["micro_batches_per_epoch"]
    train_it = ray.train.get_dataset_shard("train")
    engine.train()
    last_train_loss = state["history"][-1]["train_loss"] if state["history"] else None
    window = {"loss": 0.0, "micro": 0, "tokens": 0, "t0": time.perf_counter()}
    while state["global_step"] < total_steps:
        skip = state["micro_in_epoch"]
        micro = 0
        for raw in train_it.iter_batches(batch_size=optim.micro_batch_size, batch_format="numpy"):
            if micro >= micro_per_epoch or state["global_step"] >= total_steps:
                break
            micro += 1
            if micro <= skip:  # resume: these micro-batches were consumed before the checkpoint
                continue
            batch = {k: v.to(device) for k, v in collate(raw, plan["pad_id"]).items()}
            out = engine(**batch)
            engine.backward(out.loss)
            engine.step()
            window["loss"] += float(out.loss.detach())
            window["micro"] += 1
            window["tokens"] += int(batch["attention_mask"].sum())
            if micro % accum:
                continue
            # An optimizer step finished (DeepSpeed steps at every accum-th micro-batch).
            state["global_step"] += 1
            state["micro_in_epoch"] = micro
            step = state["global_step"]
            loss_sum, n_micro, tokens = all_sum([window["loss"], window["micro"], window["tokens"]])
            elapsed = time.perf_counter() - window["t0"]
            last_train_loss = loss_sum / n_micro
            state["tokens"] += int(tokens)
            record = {
                "step": step,
                "train_loss": last_train_loss,
                "lr": engine.get_lr()[0],
                "tokens_per_s": tokens / max(elapsed, 1e-9),
                "step_time_s": elapsed,
                "epoch": state["epoch"],
            }
            window = {"loss": 0.0, "micro": 0, "tokens": 0, "t0": time.perf_counter()}
            is_ckpt = step % plan["checkpoint_every"] == 0 and step < total_steps
            if is_ckpt:
                record["val_loss"] = evaluate()
            state["history"].append(record)
            if step % plan["log_every"] == 0 or is_ckpt or step == total_steps:
                if tracker:
                    tracker.log_metrics({k: v for k, v in record.items() if k not in ("step", "epoch")}, step)
                if rank == 0:
                    val = f" val_loss {record['val_loss']:.4f}" if record.get("val_loss") is not None else ""
                    print(f"[{plan['label']}] step {step}/{total_steps} loss {last_train_loss:.4f} "
                          f"lr {record['lr']:.2e} tok/s {record['tokens_per_s']:.0f}{val}", flush=True)
            if is_ckpt:
                save_and_report(_report_metrics(record, state), final=False)
                window["t0"] = time.perf_counter()  # checkpoint time is not step time
        if micro == 0 and skip == 0:
            raise RuntimeError("training shard yielded no batches")
        # The pass ended because the shard ran out (or hit its per-epoch cap): next epoch.
        # Stopping at total_steps mid-epoch keeps the position for a rerun with more steps.
        if state["global_step"] < total_steps or micro >= micro_per_epoch:
            state["epoch"] += 1
            state["micro_in_epoch"] = 0

    val_loss = evaluate()
    final = {"step": state["global_step"], "train_loss": last_train_loss, "epoch": state["epoch"]}
    if val_loss is not None:
        final["val_loss"] = val_loss
    state["final"] = final
    if tracker:
        tracker.log_metrics({k: v for k, v in final.items() if k.endswith("loss")}, state["global_step"], prefix="final_")
    save_and_report(_report_metrics(final, state), final=True)


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
    plan: dict[str, Any],
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

    cpus = cpus_per_worker if cpus_per_worker is not None else plan["cpus_per_worker"]
    resources = {"CPU": cpus}
    if plan["use_gpu"]:
        resources["GPU"] = 1
    if run_config is None:
        run_config = RunConfig(
            name=plan["run_name"],
            storage_path=plan["storage_path"],
            checkpoint_config=CheckpointConfig(
                num_to_keep=plan["keep_best"],
                checkpoint_score_attribute=plan["score_attribute"],
                checkpoint_score_order="min",
            ),
            failure_config=FailureConfig(max_failures=plan["max_failures"]),
            worker_runtime_env=runtime_env(),
        )
    if callbacks:
        run_config.callbacks = list(run_config.callbacks or []) + list(callbacks)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=plan,
        scaling_config=ScalingConfig(
            num_workers=plan["num_workers"], use_gpu=plan["use_gpu"], resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend="nccl" if plan["use_gpu"] else "gloo"),
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


def torch_threads_for(cpus_per_worker: float, requested: int = 0) -> int:
    """Intra-op threads: as many as the worker's CPU share rounds to, at least 1."""
    return requested or max(1, int(round(cpus_per_worker)))
