"""Each Ray internal we use (common/ray_compat.py) still exists in the installed Ray with the shape
we rely on. A Ray upgrade that moves or changes one fails here, naming the Ray symbol."""

from __future__ import annotations

import importlib
import inspect

import pytest

from llmops_ray.common import ray_compat


@pytest.mark.parametrize("name", sorted(ray_compat.LLM_INTERNALS))
def test_llm_internal_is_importable(name):
    module, _, attr = ray_compat.LLM_INTERNALS[name].partition(":")
    symbol = f"{module}.{attr or name}"
    try:
        found = getattr(importlib.import_module(module), attr or name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"Ray moved or removed {symbol}: {exc}")
    assert getattr(ray_compat, name) is found


def _params(cls, method: str) -> list[str]:
    fn = getattr(cls, method, None)
    if fn is None:
        pytest.fail(f"Ray removed {cls.__module__}.{cls.__qualname__}.{method}, which llmops-ray overrides")
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@pytest.mark.parametrize("method", sorted(ray_compat.LLM_SERVER_OVERRIDES))
def test_llm_server_private_method_keeps_its_parameters(method):
    from ray.serve.llm import LLMServer

    expected = list(ray_compat.LLM_SERVER_OVERRIDES[method])
    got = _params(LLMServer, method)
    assert got[: len(expected)] == expected, (
        f"ray.serve.llm.LLMServer.{method} now takes {got}, llmops-ray's override passes {expected}")


@pytest.mark.parametrize("method", sorted(ray_compat.ENGINE_OVERRIDES))
def test_vllm_engine_private_method_keeps_its_parameters(method):
    expected = list(ray_compat.ENGINE_OVERRIDES[method])
    got = _params(ray_compat.VLLMEngine, method)
    assert got == expected, f"VLLMEngine.{method} now takes {got}, llmops-ray's override passes {expected}"


def test_our_overrides_are_the_listed_ones():
    """Every private method our subclasses override is listed (and so checked above)."""
    from llmops_ray.serve.server import GatewayLLMServer, single_process_engine_class

    ours = {n for n, v in vars(GatewayLLMServer).items() if callable(v) and n.startswith("_") and not n.startswith("__")}
    assert ours <= set(ray_compat.LLM_SERVER_OVERRIDES), f"unlisted LLMServer overrides: {ours - set(ray_compat.LLM_SERVER_OVERRIDES)}"
    engine = {n for n, v in vars(single_process_engine_class()).items()
              if callable(v) and n.startswith("_") and not n.startswith("__")}
    assert engine <= set(ray_compat.ENGINE_OVERRIDES)


@pytest.mark.parametrize("attribute", ray_compat.INGRESS_ATTRIBUTES)
def test_ingress_still_sets_the_attributes_the_gateway_reads(attribute):
    from ray.serve.llm.ingress import OpenAiIngress

    sources = "".join(inspect.getsource(cls.__init__) for cls in OpenAiIngress.__mro__
                      if inspect.isfunction(vars(cls).get("__init__")))
    assert f"self.{attribute} =" in sources or f"self.{attribute}:" in sources, (
        f"OpenAiIngress.__init__ no longer sets {attribute}, which serve/gateway.py reads")


def test_address_file_helpers_exist():
    from ray._common import utils

    assert callable(utils.get_ray_address_file) and callable(utils.reset_ray_address), (
        "ray._common.utils.get_ray_address_file / reset_ray_address moved")


def test_unknown_names_are_an_attribute_error():
    with pytest.raises(AttributeError):
        ray_compat.NoSuchThing  # noqa: B018
