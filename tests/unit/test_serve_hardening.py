"""Gateway hardening pieces that need no Ray: body cap, auth defaults in configs, prompt
token counting, the quota's view of a finished request, engine client errors, usage chunks."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmops_ray.common.gateway_hooks import GatewayError, RequestContext
from llmops_ray.config import UserError as ConfigError, build_config
from llmops_ray.serve.config import KEY_HOOK, ServeAppConfig
from llmops_ray.serve.keys import generation_slots, tokens_used
from llmops_ray.serve.tokens import PromptCounter, upper_bound_tokens
from llmops_ray.serve.validate import read_body_capped

MODEL = {"model_id": "m", "source": "/nonexistent/m"}


class FakeStreamRequest:
    """A Starlette-like request: headers and an async body stream (what the gateway reads)."""

    def __init__(self, parts: list[bytes], content_length: int | None = None):
        self.headers = {} if content_length is None else {"content-length": str(content_length)}
        self.parts = parts
        self.read = 0

    async def stream(self):
        for part in self.parts:
            self.read += 1
            yield part


def test_body_cap_refuses_before_reading_and_while_streaming():
    declared = FakeStreamRequest([b"x" * 10], content_length=5000)
    with pytest.raises(GatewayError) as exc:
        asyncio.run(read_body_capped(declared, 4096))
    assert exc.value.status == 413 and exc.value.code == "request_too_large" and declared.read == 0
    chunked = FakeStreamRequest([b"x" * 1000] * 100)
    with pytest.raises(GatewayError) as exc:
        asyncio.run(read_body_capped(chunked, 4096))
    assert exc.value.status == 413 and chunked.read == 5  # stopped at the first part over the cap
    assert asyncio.run(read_body_capped(FakeStreamRequest([b"{}"], 2), 4096)) == b"{}"
    bad = FakeStreamRequest([b"{}"])
    bad.headers = {"content-length": "12abc"}
    with pytest.raises(GatewayError) as exc:
        asyncio.run(read_body_capped(bad, 4096))
    assert exc.value.status == 400


def test_keys_are_the_default_and_auth_none_is_explicit():
    cfg = build_config(ServeAppConfig, {"models": [MODEL]})
    assert cfg.gateway.auth == "keys" and cfg.gateway.hooks[0].path == KEY_HOOK
    open_cfg = build_config(ServeAppConfig, {"models": [MODEL], "gateway": {"auth": "none"}})
    assert open_cfg.gateway.hooks == []
    with pytest.raises(ConfigError, match="auth is 'none'"):
        build_config(ServeAppConfig, {"models": [MODEL], "gateway": {"auth": "none", "hooks": [{"path": KEY_HOOK}]}})
    with pytest.raises(ConfigError, match="must come first"):
        build_config(ServeAppConfig, {"models": [MODEL], "gateway": {"hooks": [
            {"path": "llmops_ray.safety.hook:RailsHook"}, {"path": KEY_HOOK}]}})
    with pytest.raises(ConfigError, match="on_limiter_error"):
        build_config(ServeAppConfig, {"models": [MODEL], "gateway": {"hooks": [
            {"path": KEY_HOOK, "kwargs": {"on_limiter_error": "maybe"}}]}})


def test_shipped_configs_that_listen_beyond_loopback_check_keys():
    from llmops_ray.serve.config import SERVE_CONFIGS_DIR, load_serve_config

    for path in sorted(SERVE_CONFIGS_DIR.glob("*.yaml")):
        cfg = load_serve_config(path)
        assert cfg.gateway.auth == "keys", path.name
        key_hook = cfg.gateway.hooks[0]
        assert key_hook.path == KEY_HOOK, path.name
        # Quotas are cluster-wide in every shipped config (the default limiter is the actor).
        assert key_hook.kwargs.get("limiter", "actor") == "actor", path.name
        assert key_hook.kwargs.get("on_limiter_error", "closed") == "closed", path.name


def test_prompt_tokens_counted_with_the_model_tokenizer(tiny_tokenizer_dir):
    counter = PromptCounter({"m": str(tiny_tokenizer_dir)})
    digits = "1 2 3 4 5 6 7 8 9 0 " * 20
    chat = {"messages": [{"role": "user", "content": digits}]}
    counted = counter.count_sync("m", "chat", chat)
    assert counted > len(digits) // 4  # a characters/4 estimate would let this prompt under-reserve
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    ids = tok.apply_chat_template(chat["messages"], tokenize=True, add_generation_prompt=True)
    assert counted == len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert counter.count_sync("m", "completions", {"prompt": [1, 2, 3]}) == 3
    assert counter.count_sync("m", "completions", {"prompt": ["ab", "cd"]}) >= 2
    # No tokenizer: an upper bound (a token per UTF-8 byte), never an underestimate.
    blind = PromptCounter({})
    assert blind.count_sync("x", "completions", {"prompt": "保修期是多久"}) == upper_bound_tokens(["保修期是多久"]) + 1
    assert asyncio.run(blind.count("x", "chat", chat)) >= counted


@pytest.fixture(scope="module")
def tiny_tokenizer_dir(tiny_model_dir):
    return tiny_model_dir


def test_tokens_used_prefers_engine_usage_then_streamed_pieces():
    ctx = RequestContext(route="chat", body={}, headers={})
    assert tokens_used(ctx) == 0  # refused by the engine: nothing generated
    ctx.prompt_tokens, ctx.output_text = 30, ["a", "b", "c"]
    assert tokens_used(ctx) == 33  # cut off before the usage chunk
    ctx.usage = {"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36}
    assert tokens_used(ctx) == 36
    assert generation_slots({"n": 3}, "chat") == 3
    assert generation_slots({"n": 2, "prompt": ["a", "b", "c"]}, "completions") == 6
    assert generation_slots({"prompt": [1, 2, 3]}, "completions") == 1


def test_engine_validation_errors_are_client_errors():
    from llmops_ray.serve.gateway import engine_client_error

    class VLLMValidationError(ValueError):
        pass

    class RayTaskError(Exception):
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    assert engine_client_error(RayTaskError(VLLMValidationError("top_logprobs must be <= 20"))) == \
        "top_logprobs must be <= 20"
    try:
        try:
            raise VLLMValidationError("bad stop")
        except VLLMValidationError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert engine_client_error(outer) == "bad stop"
    assert engine_client_error(RuntimeError("boom")) is None


def test_usage_chunk_the_gateway_asked_for_is_not_sent_to_the_client():
    from llmops_ray.serve.gateway import Gateway

    gw = Gateway({}, {}, settings={"hooks": [{"path": "llmops_ray.common.gateway_hooks:GatewayHook"}]})
    ctx = RequestContext(route="chat", body={"stream": True, "messages": []}, headers={})
    ctx.stream = True
    body = gw._engine_body(ctx)
    assert body["stream_options"] == {"include_usage": True} and body["request_id"] == ctx.request_id

    async def engine():
        yield ['data: {"choices": [{"delta": {"content": "hi"}}]}\n\n']
        yield ['data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}\n\n']

    async def collect():
        return "".join([p async for p in gw._stream_with_hooks(ctx, engine())])

    text = asyncio.run(collect())
    assert "usage" not in text and text.endswith("data: [DONE]\n\n")
    assert ctx.usage["total_tokens"] == 4  # recorded for quotas and logs all the same
    asked = RequestContext(route="chat", body={"stream": True, "stream_options": {"include_usage": True}}, headers={})
    asked.stream = True
    gw._engine_body(asked)
    assert asked.extra["client_wants_usage"] is True
    json.dumps(body)
