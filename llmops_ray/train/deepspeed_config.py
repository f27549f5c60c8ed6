"""DeepSpeed config and learning-rate schedule built from our typed settings (pure functions)."""

from __future__ import annotations

import math
from typing import Any

from llmops_ray.config import UserError, deep_merge
from llmops_ray.train.config import DeepSpeedSettings, OptimConfig


def resolve_precision(settings: DeepSpeedSettings, use_gpu: bool, bf16_supported: bool | None = None) -> str:
    """``bf16`` or ``fp32``: ``auto`` picks bf16 only on GPUs that support it."""
    if settings.precision != "auto":
        return settings.precision
    if not use_gpu:
        return "fp32"
    if bf16_supported is None:
        import torch

        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if bf16_supported else "fp32"


def build_deepspeed_config(
    ds: DeepSpeedSettings, optim: OptimConfig, use_gpu: bool, bf16_supported: bool | None = None
) -> dict[str, Any]:
    """The DeepSpeed JSON config for one worker.

    The optimizer is declared here (DeepSpeed builds it, so ZeRO partitions its states);
    the schedule is ours (:func:`lr_lambda`), handed to ``deepspeed.initialize`` as a callable.
    """
    if ds.zero_stage not in (0, 1, 2, 3):
        raise UserError(f"unknown ZeRO stage {ds.zero_stage} (use 0, 1, 2 or 3)")
    if ds.offload_param != "none" and ds.zero_stage != 3:
        raise UserError("deepspeed.offload_param needs zero_stage 3")
    if ds.offload_optimizer != "none" and ds.zero_stage == 0:
        raise UserError("deepspeed.offload_optimizer needs zero_stage 1, 2 or 3")
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage >= 2:
        zero.update({"overlap_comm": False, "contiguous_gradients": True})
    if ds.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": ds.offload_optimizer, "pin_memory": use_gpu}
    if ds.offload_param != "none":
        zero["offload_param"] = {"device": ds.offload_param, "pin_memory": use_gpu}
    if ds.zero_stage == 3:
        # Gather the full weights on save so the exported model is a normal HF checkpoint.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    adam_params: dict[str, Any] = {
        "lr": optim.lr,
        "betas": list(optim.betas),
        "eps": 1e-8,
        "weight_decay": optim.weight_decay,
    }
    # DeepSpeed's CPU Adam (needed with optimizer offload) ignores torch_adam; otherwise
    # torch_adam avoids the JIT build of the fused Adam op.
    if ds.offload_optimizer == "none":
        adam_params["torch_adam"] = ds.torch_adam
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": optim.micro_batch_size,
        "gradient_accumulation_steps": optim.grad_accum,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": adam_params},
        "bf16": {"enabled": resolve_precision(ds, use_gpu, bf16_supported) == "bf16"},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if ds.zero_stage == 0 or ds.offload_optimizer != "none":
        # ZeRO 0 has no stage-specific optimizer wrapper; CPU offload needs the "untested" flag
        # for a client-side AdamW type name.
        config["zero_allow_untested_optimizer"] = True
    return deep_merge(config, ds.extra)


def warmup_steps(optim: OptimConfig, total_steps: int) -> int:
    """Warmup length in optimizer steps."""
    if optim.warmup_steps:
        return min(optim.warmup_steps, total_steps)
    return int(round(optim.warmup_ratio * total_steps))


def lr_lambda(optim: OptimConfig, total_steps: int):
    """Multiplier of ``lr`` at optimizer step ``s`` (0-based): linear warmup, then decay."""
    warm = warmup_steps(optim, total_steps)
    floor = optim.min_lr_ratio

    def fn(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if optim.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        if optim.schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn
