"""Model spec -> Ray Serve LLM ``LLMConfig`` (vLLM engine, accelerator, autoscaling, placement).

The one place that knows Ray Serve LLM's config shape. Everything hardware-specific comes
from the :class:`~llmops_ray.serve.config.ModelSpec` (i.e. from the YAML), so a CPU and a GPU
deployment differ only in their config files.
"""

from __future__ import annotations

from typing import Any

from llmops_ray.cluster import runtime_env
from llmops_ray.serve.config import ModelSpec


def llm_config_dict(spec: ModelSpec) -> dict[str, Any]:
    """The ``LLMConfig`` fields for one model as a plain dict (validated by Ray later).

    Local LoRA adapters are not given to Ray's ``LoraConfig`` (it accepts object-store URIs
    only): ``lora_config`` is set without a loading path, and our server class resolves
    ``<model_id>:<adapter>`` to ``<adapters_dir>/<adapter>`` itself.
    """
    engine_kwargs = dict(spec.engine_kwargs)
    lora_config = None
    if spec.lora is not None:
        engine_kwargs.setdefault("enable_lora", True)
        engine_kwargs.setdefault("max_lora_rank", spec.lora.max_lora_rank)
        engine_kwargs.setdefault("max_loras", spec.lora.max_adapters_per_replica)
        lora_config = {
            "dynamic_lora_loading_path": spec.lora.adapters_dir.rstrip("/") if spec.lora.is_remote() else None,
            "max_num_adapters_per_replica": spec.lora.max_adapters_per_replica,
        }

    env = runtime_env()["env_vars"]
    env.update(spec.runtime_env_vars)
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.model_id, "model_source": spec.resolved_source()},
        "engine_kwargs": engine_kwargs,
        "accelerator_config": {"kind": spec.accelerator},
        "deployment_config": {
            "autoscaling_config": spec.autoscaling.to_serve(),
            "max_ongoing_requests": spec.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": spec.num_cpus},
        },
        "runtime_env": {"env_vars": env},
        "experimental_configs": {"stream_batching_interval_ms": spec.stream_batching_interval_ms},
        "log_engine_metrics": True,
    }
    if spec.accelerator_type:
        config["accelerator_type"] = spec.accelerator_type
    if spec.placement_group_config:
        config["placement_group_config"] = spec.placement_group_config
    if lora_config:
        config["lora_config"] = lora_config
    return config


def build_llm_config(spec: ModelSpec):
    """A ``ray.serve.llm.LLMConfig`` for one model (CPU or GPU, as the spec says)."""
    from ray.serve.llm import LLMConfig

    return LLMConfig(**llm_config_dict(spec))
