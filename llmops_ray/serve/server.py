"""Our ``LLMServer``: Ray Serve LLM's vLLM replica with two changes.

1. **LoRA adapters from local or shared directories.** Ray 2.60's ``LoraConfig`` accepts
   only object-store URIs; fine-tuning writes peft adapters into the workspace. For a
   request ``model = "<base>:<adapter>"`` (Serve multiplexing routes it to a replica that
   has, or will load, that adapter) :class:`LocalLoraLoader` returns
   ``<adapters_dir>/<adapter>`` in place, with no copy; vLLM loads it from there.
2. **One engine process on CPU.** For ``accelerator: cpu`` Ray forces vLLM's ``mp``
   executor: the model runs in a separate worker process and the engine-core process
   busy-polls it over shared memory, burning about 0.75 of a core (measured: EngineCore 75%
   + Worker 85% CPU at 32 streams on 2 cores). With one worker (tensor x pipeline parallel
   = 1) we switch it to vLLM's ``uni`` executor, as ``vllm serve`` does: the model runs in
   the engine-core process and that core goes back to the matmuls.
3. **First streamed chunk at once.** Ray batches streamed tokens into one handle message
   per ``stream_batching_interval_ms`` (fewer messages across the two Ray hops = more
   throughput on busy cores), which also delays the first token by up to that interval.
   We send the first chunk immediately and batch the rest, keeping both.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, AsyncGenerator, Optional

from fastapi import HTTPException
from ray.serve.llm import LLMServer

# Ray internals: each is listed (and checked against the installed Ray) in common/ray_compat.py,
# and so is every private LLMServer / VLLMEngine method overridden below.
from llmops_ray.common.ray_compat import (
    RAYLLM_VLLM_ENGINE_CLS_ENV,
    Batcher,
    DiskMultiplexConfig,
    LoraModelLoader,
    get_base_model_id,
    get_lora_id,
    global_id_manager,
)

ADAPTER_CONFIG = "adapter_config.json"


def local_adapter_path(adapters_dir: str, model_id: str) -> str | None:
    """``<adapters_dir>/<adapter>`` for ``base:adapter`` when it is a peft adapter dir, else None."""
    adapter = get_lora_id(model_id)
    if not adapter or "/" in adapter or adapter.startswith("."):
        return None
    path = os.path.join(adapters_dir, adapter)
    return path if os.path.isfile(os.path.join(path, ADAPTER_CONFIG)) else None


def list_local_adapters(adapters_dir: str) -> list[str]:
    """Names of the peft adapter directories directly under ``adapters_dir``."""
    try:
        names = sorted(os.listdir(adapters_dir))
    except OSError:
        return []
    return [n for n in names if os.path.isfile(os.path.join(adapters_dir, n, ADAPTER_CONFIG))]


class AdapterOwners:
    """The tenant that owns each local adapter (``tenant`` in its ``lineage.json``, written
    by fine-tuning with ``tenant: NAME``), re-read at most every ``ttl_s`` seconds: the
    gateway asks on every request and listing, so the file is not read each time."""

    def __init__(self, ttl_s: float = 10.0):
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str | None]] = {}

    def owner(self, local_lora_dirs: dict[str, str], model_id: str | None) -> str | None:
        if not model_id or ":" not in model_id:
            return None
        lora_dir = local_lora_dirs.get(get_base_model_id(model_id))
        path = local_adapter_path(lora_dir, model_id) if lora_dir else None
        if path is None:
            return None
        now = time.monotonic()
        cached = self._cache.get(path)
        if cached is None or now - cached[0] > self.ttl_s:
            owner = None
            try:
                with open(os.path.join(path, "lineage.json"), encoding="utf-8") as f:
                    owner = json.load(f).get("tenant") or None
            except (OSError, ValueError, AttributeError):
                owner = None  # no lineage (an adapter copied in by hand): shared
            cached = self._cache[path] = (now, owner)
        return cached[1]


class LocalLoraLoader(LoraModelLoader):
    """Resolves adapters in a local/shared directory instead of downloading them."""

    def __init__(self, adapters_dir: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.adapters_dir = adapters_dir

    async def load_model_from_config(self, lora_model_id: str, llm_config) -> DiskMultiplexConfig:
        if lora_model_id in self.disk_cache:
            return self.disk_cache[lora_model_id]
        path = local_adapter_path(self.adapters_dir, lora_model_id)
        if path is None:
            raise HTTPException(404, f'Could not find LoRA adapter "{get_lora_id(lora_model_id)}" in {self.adapters_dir}.')
        config = DiskMultiplexConfig(
            model_id=lora_model_id,
            max_total_tokens=None,
            local_path=path,
            lora_assigned_int_id=global_id_manager.next(),
        )
        self.disk_cache[lora_model_id] = config
        return config


def start_usage_meter(llm_config) -> Any:
    """An observer that accrues this replica's seconds (one replica per process) and writes
    them to the ``replica_usage`` log every minute and at shutdown; no request rows."""
    from llmops_ray.observe.observer import Observer

    kind = getattr(llm_config.accelerator_config, "kind", "gpu")  # CPUConfig / GPUConfig / TPUConfig
    accelerator = "cpu" if kind == "cpu" else (llm_config.accelerator_type or kind)
    observer = Observer(metrics=True, log_requests=True)
    observer.meter(llm_config.model_id, variant="", accelerator=accelerator, replicas=1)
    return observer


@functools.lru_cache(maxsize=None)
def single_process_engine_class():
    """``VLLMEngine`` that runs a one-worker CPU model in the engine-core process (``uni`` executor)."""
    from llmops_ray.common.ray_compat import VLLMEngine

    class SingleProcessCPUEngine(VLLMEngine):
        def _start_async_llm_engine(self, vllm_engine_args, vllm_engine_config, placement_group):
            use_uni_executor(vllm_engine_config)
            return super()._start_async_llm_engine(vllm_engine_args, vllm_engine_config, placement_group)

    return SingleProcessCPUEngine


def use_uni_executor(vllm_config) -> bool:
    """Switch a CPU, one-worker vLLM config from the ``mp`` to the ``uni`` executor; True if switched."""
    parallel = vllm_config.parallel_config
    on_cpu = getattr(vllm_config.device_config, "device_type", None) == "cpu"
    if on_cpu and parallel.world_size == 1 and parallel.distributed_executor_backend == "mp":
        parallel.distributed_executor_backend = "uni"
        return True
    return False


class GatewayLLMServer(LLMServer):
    """``LLMServer`` with local LoRA adapters and an immediate first streamed chunk."""

    async def __init__(
        self,
        llm_config,
        *,
        local_lora_dir: Optional[str] = None,
        first_chunk_immediate: bool = True,
        meter_usage: bool = False,
        single_process_engine: bool = True,
    ):
        self._single_process_engine = single_process_engine
        self._local_lora_dir = local_lora_dir
        self._first_chunk_immediate = first_chunk_immediate
        self._usage_observer = None
        await super().__init__(llm_config)
        if meter_usage:
            self._usage_observer = start_usage_meter(llm_config)

    async def __del__(self) -> None:
        # The final replica-seconds row is written when the observer closes.
        if self._usage_observer is not None:
            self._usage_observer.close()
        await super().__del__()

    def _get_default_engine_class(self):
        # Ray's engine-class environment variable (a test/patch escape hatch) still wins.
        if getattr(self, "_single_process_engine", False) and not os.environ.get(RAYLLM_VLLM_ENGINE_CLS_ENV):
            return single_process_engine_class()
        return super()._get_default_engine_class()

    def _init_multiplex_loader(self, model_downloader_cls=None):
        if getattr(self, "_local_lora_dir", None):
            model_downloader_cls = functools.partial(LocalLoraLoader, self._local_lora_dir)
        super()._init_multiplex_loader(model_downloader_cls)

    async def _batch_output_stream(self, generator: AsyncGenerator[Any, None]) -> AsyncGenerator[list, None]:
        interval_ms = self._get_batch_interval_ms()
        if not interval_ms:
            async for item in generator:
                yield [item]
            return
        if self._first_chunk_immediate:
            try:
                first = await generator.__anext__()
            except StopAsyncIteration:
                return
            yield [first]
        async for batch in Batcher(generator, interval_ms=interval_ms).stream():
            yield batch
