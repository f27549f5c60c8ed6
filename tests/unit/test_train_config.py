"""DeepSpeed config building, schedules, config loading and the shipped YAMLs."""

from __future__ import annotations

import pytest

from llmops_ray.config import CONFIGS_DIR, UserError, load_config
from llmops_ray.train.bootstrap import BootstrapConfig
from llmops_ray.train.config import DeepSpeedSettings, FinetuneConfig, OptimConfig
from llmops_ray.train.deepspeed_config import build_deepspeed_config, lr_lambda, resolve_precision
from llmops_ray.train.runner import steps_geometry

SHIPPED = {
    "sft_lora_tiny_cpu": FinetuneConfig,
    "sft_full_tiny_cpu": FinetuneConfig,
    "sft_lora_qwen2.5_0.5b_gpu": FinetuneConfig,
    "bootstrap_tiny_cpu": BootstrapConfig,
}


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_config_per_stage(stage):
    optim = OptimConfig(micro_batch_size=4, grad_accum=3, lr=1e-3, grad_clip=0.5)
    cfg = build_deepspeed_config(DeepSpeedSettings(zero_stage=stage), optim, use_gpu=False)
    assert cfg["zero_optimization"]["stage"] == stage
    assert cfg["train_micro_batch_size_per_gpu"] == 4 and cfg["gradient_accumulation_steps"] == 3
    assert cfg["gradient_clipping"] == 0.5
    assert cfg["optimizer"] == {"type": "AdamW", "params": {"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.0, "torch_adam": True}}
    assert cfg["bf16"] == {"enabled": False}
    assert ("stage3_gather_16bit_weights_on_model_save" in cfg["zero_optimization"]) == (stage == 3)


def test_offload_and_precision_pass_through():
    ds = DeepSpeedSettings(zero_stage=3, offload_optimizer="cpu", offload_param="cpu", precision="auto", extra={"zero_optimization": {"stage3_max_live_parameters": 1000}})
    cfg = build_deepspeed_config(ds, OptimConfig(), use_gpu=True, bf16_supported=True)
    zero = cfg["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert zero["stage3_max_live_parameters"] == 1000 and zero["stage"] == 3
    assert cfg["bf16"]["enabled"] is True
    assert "torch_adam" not in cfg["optimizer"]["params"]  # DeepSpeed's CPU Adam runs offloaded states
    assert resolve_precision(DeepSpeedSettings(), use_gpu=False) == "fp32"
    assert resolve_precision(DeepSpeedSettings(), use_gpu=True, bf16_supported=False) == "fp32"
    with pytest.raises(UserError, match="offload_param needs zero_stage 3"):
        build_deepspeed_config(DeepSpeedSettings(zero_stage=2, offload_param="cpu"), OptimConfig(), use_gpu=False)


def test_unknown_stage_and_unknown_key_are_one_line_errors():
    with pytest.raises(UserError, match="unknown ZeRO stage 4"):
        load_config(FinetuneConfig, "sft_lora_tiny_cpu", ["deepspeed.zero_stage=4"])
    with pytest.raises(UserError, match="unknown key 'optim.lrr'"):
        load_config(FinetuneConfig, "sft_lora_tiny_cpu", ["optim.lrr=1"])
    with pytest.raises(UserError, match="run_name"):
        load_config(FinetuneConfig, None, ["run_name=../escape"])


def test_schedules():
    cos = lr_lambda(OptimConfig(warmup_steps=2, schedule="cosine", min_lr_ratio=0.1), total_steps=10)
    assert [round(cos(s), 3) for s in (0, 1)] == [0.5, 1.0]
    assert cos(2) == pytest.approx(1.0) and cos(10) == pytest.approx(0.1)
    values = [cos(s) for s in range(2, 11)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    lin = lr_lambda(OptimConfig(warmup_ratio=0.0, schedule="linear", min_lr_ratio=0.0), total_steps=4)
    assert [lin(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_steps_geometry():
    geo = steps_geometry(100, OptimConfig(micro_batch_size=4, grad_accum=2, epochs=3), num_workers=2)
    # 50 rows per worker -> 13 micro-batches -> 6 whole accumulation groups per epoch.
    assert geo == {"micro_batches_per_epoch": 12, "steps_per_epoch": 6, "total_steps": 18}
    assert steps_geometry(100, OptimConfig(max_steps=7), 2)["total_steps"] == 7
    with pytest.raises(UserError, match="too few"):
        steps_geometry(4, OptimConfig(micro_batch_size=1, grad_accum=4), 2)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_yaml_loads_and_documents_its_command(name):
    path = CONFIGS_DIR / f"{name}.yaml"
    text = path.read_text()
    assert text.startswith("#") and "llmops " in text.split("\n\n")[0]
    cfg = load_config(SHIPPED[name], name)
    assert cfg == load_config(SHIPPED[name], str(path))
    if isinstance(cfg, FinetuneConfig):
        build_deepspeed_config(cfg.deepspeed, cfg.optim, cfg.workers.use_gpu, bf16_supported=True)
    else:
        assert cfg.model.hidden_size // cfg.model.num_attention_heads == 64  # vLLM CPU attention
    assert load_config(FinetuneConfig, "sft_lora_qwen2.5_0.5b_gpu").deepspeed.zero_stage == 2
