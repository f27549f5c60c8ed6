"""Gateway pieces that need no Ray: input checks, error bodies, hooks, local adapters, SSE pass-through."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmops_ray.common.gateway_hooks import GatewayError, GatewayHook, RequestContext, load_hook, overrides


def test_gateway_error_body_is_openai_shaped():
    err = GatewayError(429, "slow down", headers={"Retry-After": "3"})
    body = err.body()["error"]
    assert body["message"] == "slow down" and body["type"] == "rate_limit_error" and body["code"] == "rate_limit_exceeded"
    assert err.headers == {"Retry-After": "3"}
    assert GatewayError(400, "x", code="content_blocked").body()["error"]["code"] == "content_blocked"


def test_load_hook_by_module_and_file(tmp_path):
    class_file = tmp_path / "my_hook.py"
    class_file.write_text(
        "from llmops_ray.common.gateway_hooks import GatewayHook\n"
        "class H(GatewayHook):\n"
        "    def __init__(self, n=0):\n        self.n = n\n"
        "    def on_chunk(self, ctx, chunk):\n        return chunk\n"
    )
    hook = load_hook(f"{class_file}:H", {"n": 3})
    assert hook.n == 3 and overrides(hook, "on_chunk") and not overrides(hook, "after_response")
    assert isinstance(load_hook("llmops_ray.common.gateway_hooks:GatewayHook"), GatewayHook)
    with pytest.raises(ValueError):
        load_hook("nodots")


def test_request_context_defaults():
    ctx = RequestContext(route="chat", body={}, headers={})
    assert len(ctx.request_id) == 32 and ctx.status == 200 and ctx.finished_at is None


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 3}]}, "content"),
    ],
)
def test_check_chat_body_rejects(body, needle):
    from llmops_ray.serve.validate import check_chat_body

    with pytest.raises(GatewayError) as err:
        check_chat_body(body)
    assert err.value.status == 400 and needle in err.value.message


def test_check_limits_and_types():
    from llmops_ray.serve.validate import _positive_int, check_common, check_completion_body

    _positive_int({"max_tokens": 10}, "max_tokens", 1024)
    for value in (0, -1, "5", True, 1.5):
        with pytest.raises(GatewayError):
            _positive_int({"max_tokens": value}, "max_tokens", 1024)
    with pytest.raises(GatewayError, match="1024"):
        _positive_int({"max_tokens": 1024}, "max_tokens", 1024)
    with pytest.raises(GatewayError, match="stream"):
        check_common({"stream": "true"})
    with pytest.raises(GatewayError, match="'n'"):
        check_common({"n": 0})
    check_completion_body({"prompt": [1, 2, 3]})
    check_completion_body({"prompt": ["a", "b"]})
    with pytest.raises(GatewayError):
        check_completion_body({"prompt": [[]]})


def test_read_json_body_errors():
    from llmops_ray.serve.validate import read_json_body

    class Req:
        def __init__(self, raw):
            self.raw = raw

        async def body(self):
            return self.raw

    assert asyncio.run(read_json_body(Req(b'{"a": 1}'))) == {"a": 1}
    for raw in (b"{", b"[]", b"\xff\xfe"):
        with pytest.raises(GatewayError) as err:
            asyncio.run(read_json_body(Req(raw)))
        assert err.value.status == 400 and err.value.code == "invalid_json"


def test_local_adapters(tmp_path):
    from llmops_ray.serve.server import list_local_adapters, local_adapter_path

    (tmp_path / "a1").mkdir()
    (tmp_path / "a1" / "adapter_config.json").write_text("{}")
    (tmp_path / "full-model").mkdir()
    (tmp_path / "full-model" / "config.json").write_text("{}")
    assert list_local_adapters(str(tmp_path)) == ["a1"]
    assert local_adapter_path(str(tmp_path), "base:a1") == str(tmp_path / "a1")
    assert local_adapter_path(str(tmp_path), "base:full-model") is None
    assert local_adapter_path(str(tmp_path), "base:../a1") is None
    assert list_local_adapters(str(tmp_path / "missing")) == []


def _gateway(hooks=None):
    from llmops_ray.serve.gateway import Gateway

    return Gateway({}, {}, settings={"hooks": hooks or []})


def test_plain_stream_passes_engine_sse_through_and_ends_with_done():
    gw = _gateway()
    ctx = RequestContext(route="chat", body={}, headers={})

    async def engine():
        yield ['data: {"choices": [{"delta": {"content": "a"}}]}\n\n']
        yield ['data: {"choices": [{"delta": {"content": "b"}}]}\n\n', 'data: {"choices": []}\n\n']

    async def collect():
        return [p async for p in gw._stream_plain(ctx, engine())]

    out = asyncio.run(collect())
    assert out[-1] == "data: [DONE]\n\n" and len(out) == 3
    assert ctx.finished_at is not None


def test_hooked_stream_runs_chunk_hooks_and_collects_usage(tmp_path):
    hook_file = tmp_path / "h.py"
    hook_file.write_text(
        "from llmops_ray.common.gateway_hooks import GatewayHook\n"
        "class Upper(GatewayHook):\n"
        "    def on_chunk(self, ctx, chunk):\n"
        "        for c in chunk.get('choices', []):\n"
        "            if c['delta'].get('content') == 'drop':\n                return None\n"
        "            c['delta']['content'] = (c['delta'].get('content') or '').upper()\n"
        "        return chunk\n"
        "    def end_stream(self, ctx):\n"
        "        return [{'choices': [{'delta': {'content': '!'}}]}]\n"
    )
    gw = _gateway([{"path": f"{hook_file}:Upper"}])
    ctx = RequestContext(route="chat", body={}, headers={})

    async def engine():
        yield ['data: {"choices": [{"delta": {"content": "ab"}}]}\n\n']
        yield ['data: {"choices": [{"delta": {"content": "drop"}}]}\n\n']
        yield ['data: {"choices": [], "usage": {"completion_tokens": 2}}\n\ndata: [DONE]\n\n']

    async def collect():
        return "".join([p async for p in gw._stream_with_hooks(ctx, engine())])

    text = asyncio.run(collect())
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1
    assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "AB"
    assert "drop" not in text.lower()
    assert ctx.usage == {"completion_tokens": 2} and "".join(ctx.output_text) == "AB!"
