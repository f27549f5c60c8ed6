"""The CPU engine runs in one process: Ray's ``mp`` executor is switched to vLLM's ``uni``.

Uses the vLLM config Ray Serve LLM itself builds for the model (``_get_vllm_engine_config``),
so a change in what Ray forces on CPU shows up here.
"""

from __future__ import annotations

import pytest
from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine, _get_vllm_engine_config

from llmops_ray.config import build_config
from llmops_ray.serve.config import ModelSpec
from llmops_ray.serve.llm import build_llm_config
from llmops_ray.serve.server import GatewayLLMServer, single_process_engine_class, use_uni_executor


def _vllm_config(model_dir, **engine):
    spec = build_config(ModelSpec, {
        "model_id": "tiny", "source": str(model_dir),
        "engine_kwargs": {"max_model_len": 256, "gpu_memory_utilization": 0.05, "enforce_eager": True, **engine},
    })
    _args, config = _get_vllm_engine_config(build_llm_config(spec))
    return config


def test_ray_forces_mp_on_cpu_and_we_switch_to_uni(tiny_model_dir):
    config = _vllm_config(tiny_model_dir)
    # What Ray Serve LLM does on CPU: the multiprocess executor (busy-polled worker process).
    assert config.parallel_config.distributed_executor_backend == "mp"
    assert use_uni_executor(config) is True
    assert config.parallel_config.distributed_executor_backend == "uni"
    assert use_uni_executor(config) is False  # idempotent

    from vllm.v1.executor.abstract import Executor
    from vllm.v1.executor.uniproc_executor import UniProcExecutor

    assert Executor.get_class(config) is UniProcExecutor


def test_parallel_or_gpu_configs_are_left_alone(tiny_model_dir):
    config = _vllm_config(tiny_model_dir)
    config.parallel_config.world_size = 2  # tensor/pipeline parallel: needs several workers
    assert use_uni_executor(config) is False
    assert config.parallel_config.distributed_executor_backend == "mp"

    config = _vllm_config(tiny_model_dir)
    config.device_config.device_type = "cuda"
    assert use_uni_executor(config) is False


def test_server_picks_the_engine_class(monkeypatch):
    server = GatewayLLMServer.__new__(GatewayLLMServer)  # no engine start: only the class choice
    server._default_engine_cls = None
    monkeypatch.delenv("RAYLLM_VLLM_ENGINE_CLS", raising=False)
    server._single_process_engine = True
    cls = server._get_default_engine_class()
    assert issubclass(cls, VLLMEngine) and cls is not VLLMEngine
    assert cls._start_async_llm_engine is not VLLMEngine._start_async_llm_engine
    server._single_process_engine = False
    assert server._get_default_engine_class() is VLLMEngine
    assert issubclass(single_process_engine_class(), VLLMEngine)


@pytest.mark.parametrize("value", [True, False])
def test_spec_field_round_trips(value):
    spec = build_config(ModelSpec, {"model_id": "m", "source": "/x", "single_process_engine": value})
    assert spec.single_process_engine is value
