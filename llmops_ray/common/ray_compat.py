"""Every place where llmops-ray touches Ray's internals, in one module.

Ray's public API covers most of what we use (``ray.serve.llm``: ``LLMServer``,
``build_llm_deployment``; ``ray.serve.llm.ingress``: ``OpenAiIngress``,
``make_fastapi_ingress``). What it does not cover is listed here, and
``tests/unit/test_ray_compat.py`` checks each entry against the installed Ray, naming the Ray
symbol that moved or changed, so that a Ray upgrade fails there first and loudly:

* :data:`LLM_INTERNALS` -- names from ``ray.llm._internal`` (Serve LLM's LoRA loading, OpenAI
  models, stream batching, the vLLM engine class), importable from this module by name
  (``from llmops_ray.common.ray_compat import Batcher``); each is imported on first use, since
  importing Serve LLM needs vLLM.
* :data:`LLM_SERVER_OVERRIDES` / :data:`INGRESS_ATTRIBUTES` -- private methods of
  ``LLMServer`` that ``serve/server.py`` overrides (with the parameters it relies on) and the
  private attributes of ``OpenAiIngress`` that ``serve/gateway.py`` reads.
* :func:`gcs_actor_rows`, :func:`gcs_placement_group_rows` -- the GCS tables that the Tune
  sweep reads (``ray._private.state``; the State API needs the dashboard, which a local
  ``ray.init`` does not start).
* :func:`placement_group_by_id` -- a handle on a placement group another process created
  (``ray._raylet.PlacementGroupID``), to remove a Tune trial's orphaned group.
* :func:`serve_http_address`, :func:`serve_http_certfile` -- the running Serve proxy's host
  and port, and the certificate it serves HTTPS with (Serve's HTTP options are cluster-wide
  and not readable through ``serve.status``).
* :func:`forget_ray_address` -- the local "current cluster" address file a stopped head leaves.
"""

from __future__ import annotations

import importlib
from typing import Any

#: name -> module in ``ray.llm._internal`` it is imported from.
LLM_INTERNALS: dict[str, str] = {
    "global_id_manager": "ray.llm._internal.common.models",
    "get_lora_id": "ray.llm._internal.common.utils.lora_utils",
    "get_base_model_id": "ray.llm._internal.common.utils.lora_utils",
    "RAYLLM_VLLM_ENGINE_CLS_ENV": "ray.llm._internal.serve.constants",
    "DiskMultiplexConfig": "ray.llm._internal.serve.core.configs.llm_config",
    "Batcher": "ray.llm._internal.serve.utils.batcher",
    "LoraModelLoader": "ray.llm._internal.serve.utils.lora_serve_utils",
    "VLLMEngine": "ray.llm._internal.serve.engines.vllm.vllm_engine",
    "to_model_metadata": "ray.llm._internal.serve.core.configs.openai_api_models",
    "ChatCompletionRequest": "ray.llm._internal.serve.core.configs.openai_api_models",
    "CompletionRequest": "ray.llm._internal.serve.core.configs.openai_api_models",
    "ErrorResponse": "ray.llm._internal.serve.core.configs.openai_api_models",
    "ModelCard": "ray.llm._internal.serve.core.configs.openai_api_models",
    "ModelList": "ray.llm._internal.serve.core.configs.openai_api_models",
    "OpenAIHTTPException": "ray.llm._internal.serve.core.configs.openai_api_models",
    "NON_STREAMING_RESPONSE_TYPES": "ray.llm._internal.serve.core.ingress.utils",
    "apply_openai_json_format": "ray.llm._internal.serve.core.ingress.utils:_apply_openai_json_format",
    "peek_at_generator": "ray.llm._internal.serve.core.ingress.utils:_peek_at_generator",
}

#: ``LLMServer`` private method -> the parameters (after ``self``) our override takes and passes on.
LLM_SERVER_OVERRIDES: dict[str, tuple[str, ...]] = {
    "_get_default_engine_class": (),
    "_init_multiplex_loader": ("model_downloader_cls",),
    "_batch_output_stream": ("generator",),
    "_get_batch_interval_ms": (),
}
#: ``VLLMEngine`` private method -> parameters, overridden by the single-process CPU engine.
ENGINE_OVERRIDES: dict[str, tuple[str, ...]] = {
    "_start_async_llm_engine": ("vllm_engine_args", "vllm_engine_config", "placement_group"),
}
#: ``OpenAiIngress`` attributes set by its ``__init__`` that the gateway reads.
INGRESS_ATTRIBUTES: tuple[str, ...] = ("_model_cards", "_lora_paths")


def __getattr__(name: str) -> Any:
    """``from llmops_ray.common.ray_compat import X`` for X in :data:`LLM_INTERNALS`."""
    if name not in LLM_INTERNALS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attr = LLM_INTERNALS[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def gcs_actor_rows() -> list:
    """Every row of the GCS actor table (``gcs_pb2.ActorTableData``)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    return [gcs_pb2.ActorTableData.FromString(raw) for raw in state._connect_and_get_accessor().get_actor_table(None, None)]


def gcs_placement_group_rows() -> list:
    """Every row of the GCS placement-group table (``gcs_pb2.PlacementGroupTableData``)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    return [gcs_pb2.PlacementGroupTableData.FromString(raw)
            for raw in state._connect_and_get_accessor().get_placement_group_table()]


def placement_group_by_id(hex_id: str):
    """A ``PlacementGroup`` handle for the group with this hex id (for ``remove_placement_group``)."""
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id)))


def _serve_http_config():
    """Ray's ``HTTPOptions`` of the Serve instance running on the connected cluster, or None."""
    from ray.serve.context import _get_global_client

    try:
        client = _get_global_client(raise_if_no_controller_running=False)
    except Exception:  # noqa: BLE001 - no Serve controller (or no cluster): nothing runs
        return None
    return None if client is None else client.http_config


def serve_http_address() -> tuple[str, int] | None:
    """(host, port) of the Serve proxy already running on the connected cluster, if any."""
    config = _serve_http_config()
    return None if config is None else (config.host, int(config.port))


def serve_http_certfile() -> str | None:
    """Certificate file of the running Serve proxy when it serves HTTPS; None when it serves
    plain HTTP or no Serve runs."""
    config = _serve_http_config()
    if config is None or not (config.ssl_certfile and config.ssl_keyfile):
        return None
    return config.ssl_certfile


def forget_ray_address(port: int) -> None:
    """Remove the local "current cluster" address file when it names ``port`` (a stopped head):
    a later ``ray.init()`` without an address would try to join it."""
    from pathlib import Path

    from ray._common.utils import get_ray_address_file, reset_ray_address

    address_file = Path(get_ray_address_file(None))
    address = address_file.read_text().strip() if address_file.exists() else ""
    if address.rsplit(":", 1)[-1] == str(port):
        reset_ray_address()
