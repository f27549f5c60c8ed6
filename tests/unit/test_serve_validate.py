"""The gateway's request checks (serve/validate.py): every malformed body is a 400 (413 when
too large) with an OpenAI error body, and what they let through does not break Ray or vLLM.

Each case here was a 500 from the running gateway before the checks covered it (found by
``benchmarks/openapi_fuzz.py`` and the probes listed in its report), or a body that pydantic's
lax mode silently turned into something else.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from llmops_ray.common.gateway_hooks import GatewayError
from llmops_ray.serve import validate as V


def _status(fn, *args) -> int | None:
    try:
        fn(*args)
    except GatewayError as exc:
        body = exc.body()["error"]
        assert isinstance(body["message"], str) and isinstance(body["type"], str)
        return exc.status
    return None


def chat(**fields) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **fields}


# --------------------------------------------------------------------------- the JSON


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,  # RecursionError in json.loads: was a 500
        b'{"a": ' + b"[" * 900 + b"]" * 900 + b"}",  # parsed, then Ray's pickling failed: 500
        b'{"max_tokens": ' + b"9" * 5000 + b"}",  # ValueError (int digits limit): 500
        b'{"seed": 18446744073709551616}',  # 2**64: beyond what the engine's transport carries
        b'{"temperature": NaN}',
        b'{"temperature": -Infinity}',
        b'{"temperature": 1e999}',
        b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}',  # lone surrogate: TypeError in the tokenizer, 500
        b'{"input": "x\\udfff"}',
        b'{"\\udc00": 1}',
        b"{",
        b"[]",
        b"\xff\xfe\x00",
        b"",
    ],
)
def test_parse_json_body_refuses_with_400(raw):
    with pytest.raises(GatewayError) as err:
        V.parse_json_body(raw)
    assert err.value.status == 400 and err.value.code == "invalid_json"


def test_parse_json_body_accepts_what_is_valid():
    assert V.parse_json_body(b'{"a": "\\ud83d\\ude00", "b": 9223372036854775807, "c": -9223372036854775808}') == {
        "a": "\U0001f600", "b": 2**63 - 1, "c": -(2**63)}
    assert V.parse_json_body(b'{"u": 18446744073709551615, "f": 1.5e300}')["u"] == 2**64 - 1
    nested = "[" * (V.MAX_JSON_DEPTH - 1) + "]" * (V.MAX_JSON_DEPTH - 1)
    assert V.parse_json_body(f'{{"a": {nested}}}'.encode())
    with pytest.raises(GatewayError):
        V.parse_json_body(f'{{"a": [{nested}]}}'.encode())


def test_parse_json_body_is_fast_on_hostile_input():
    """Numbers are refused by length before int() converts them (quadratic in digits)."""
    start = time.perf_counter()
    for raw in (b'{"a": ' + b"1" * 4000 + b"}", b"[" * 200_000, b'{"a": "' + "\\ud800" .encode() * 50_000 + b'"}'):
        with pytest.raises(GatewayError):
            V.parse_json_body(raw)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- body size


class _Req:
    """What read_body_capped reads of a Starlette request: headers and the body stream."""

    def __init__(self, chunks, headers=None):
        self.headers = headers or {}
        self._chunks = chunks
        self.read = 0

    async def stream(self):
        for chunk in self._chunks:
            self.read += 1
            yield chunk


def test_read_body_capped():
    assert asyncio.run(V.read_body_capped(_Req([b'{"a"', b": 1}"]), 100)) == b'{"a": 1}'
    # Content-Length over the cap: refused before reading anything.
    req = _Req([b"x" * 10], {"content-length": "101"})
    with pytest.raises(GatewayError) as err:
        asyncio.run(V.read_body_capped(req, 100))
    assert err.value.status == 413 and err.value.code == "request_too_large" and req.read == 0
    # No Content-Length (chunked): refused as soon as the sum is over, not after the rest.
    endless = _Req(b"x" * 64 for _ in range(10**6))
    with pytest.raises(GatewayError) as err:
        asyncio.run(V.read_body_capped(endless, 1000))
    assert err.value.status == 413 and endless.read == 16
    for bad in ("abc", "-1", "\xb2", "1e3"):  # "\xb2" ("²") passes str.isdigit() but not int()
        with pytest.raises(GatewayError) as err:
            asyncio.run(V.read_body_capped(_Req([b"{}"], {"content-length": bad}), 100))
        assert err.value.status == 400
    with pytest.raises(GatewayError) as err:
        asyncio.run(V.read_body_capped(_Req([b"{}"], {"content-length": "9" * 40}), 100))
    assert err.value.status == 413


# --------------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    "body",
    [
        chat(stream=True, stream_options="x"),  # was an AttributeError (500) inside a hook
        chat(stream=True, stream_options={"include_usage": "yes"}),
        chat(n=V.MAX_N + 1),
        chat(n=0),
        chat(n=True),
        chat(seed="1"),  # pydantic would take it as 1
        chat(seed=2**63),
        chat(temperature=5),
        chat(temperature="0.5"),
        chat(top_p=1.5),
        chat(presence_penalty=-3),
        chat(user=3),
        chat(model=["tiny"]),
        chat(stop=[1]),
        chat(stop={"a": 1}),
        chat(stop=["s"] * (V.MAX_STOP + 1)),
        chat(logit_bias=[1]),
        chat(logit_bias={"abc": 1}),
        chat(logit_bias={"-1": 1}),
        chat(logit_bias={"99999999999": 1}),
        chat(logit_bias={"5": 1e6}),
        chat(logit_bias={"5": "1"}),
        chat(response_format="json"),
        chat(response_format={"type": "xml"}),
        chat(response_format={"type": "json_schema"}),
        chat(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}),
    ],
)
def test_check_common_refuses(body):
    assert _status(V.check_common, body) == 400


def test_check_common_accepts_openai_bodies():
    for body in (
        chat(),
        chat(stream=True, stream_options={"include_usage": True}, temperature=0.7, top_p=1, n=V.MAX_N, seed=-5,
             stop="\n", user="u1", presence_penalty=2, frequency_penalty=-2.0, logit_bias={"50256": -100}),
        chat(stop=None, stream_options=None, response_format={"type": "json_object"}),
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
    ):
        V.check_common(body)


@pytest.mark.parametrize(
    "content",
    [
        [[1]],  # Ray's sanitizer raised ValueError: 500
        [{"": None}],  # no type: 500
        [{"text": "a"}],
        [{"type": "text", "text": 5}],  # 500
        [{"type": "text"}],
        [{"type": "image_url", "image_url": "http://x"}],
        [{"type": "image_url", "image_url": {"detail": "low"}}],
        [{"type": "video"}],
        [{"type": "file", "file": {"file_id": {}, "file_data": ""}}],  # found by the fuzzer: a 500 in Ray's sanitizer
        [{"type": "file", "file": "f"}],
        [{"type": "input_audio", "input_audio": {"data": "AA"}}],
        [{"type": "image_url", "image_url": {"url": "http://x", "detail": 1}}],
        [{"type": "image_url", "image_url": {"url": "http://x", "detail": "xyz"}}],
        [{"type": "input_audio", "input_audio": {"data": "AA", "format": "ogg"}}],
        # found by fuzzing offline (OpenAI schema -> checks -> vLLM model -> Ray's sanitizer):
        [{"type": "text", "text": "a", "prompt_cache_breakpoint": [[]]}],
        [{"type": "text", "text": "a", "prompt_cache_breakpoint": None}],
        [{"type": "text", "text": "a", "prompt_cache_breakpoint": {"mode": "x"}}],
        [{"type": "file", "file": {}, "prompt_cache_breakpoint": {"ttl": "1d"}}],
        ["plain string part"],
        {"type": "text", "text": "a"},
        3,
    ],
)
def test_check_chat_body_refuses_content(content):
    assert _status(V.check_chat_body, chat(messages=[{"role": "user", "content": content}])) == 400


@pytest.mark.parametrize(
    "body",
    [
        chat(messages=[{"role": "assistant", "tool_calls": "x"}]),
        chat(messages=[{"role": "assistant", "tool_calls": [[1]]}]),
        chat(messages=[{"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f"}}]}]),
        chat(messages=[{"role": "assistant", "tool_calls": [{"id": 1, "type": "function",
                                                              "function": {"name": "f", "arguments": "{}"}}]}]),
        chat(messages=[{"role": "assistant", "function_call": {"name": 3, "arguments": "{}"}}]),
        chat(messages=[{"role": "tool", "content": "x", "tool_call_id": 7}]),
        chat(messages=[{"role": "user", "content": "x", "name": ["n"]}]),
        chat(messages=[{"role": "robot", "content": "x"}]),
        chat(messages=[]),
        chat(messages="hi"),
        chat(logprobs="yes"),
        chat(logprobs=True, top_logprobs=V.MAX_LOGPROBS + 1),
        chat(parallel_tool_calls=1),
        chat(tools="x"),
        chat(tools=[{"type": "function", "function": {"name": 3}}]),
        chat(tools=[{"type": "function", "function": {"name": ""}}]),
        chat(tools=[{"type": "custom", "custom": {"name": "f"}}]),
        chat(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        chat(tools=[{"type": "function", "function": {"name": f"f{i}"}} for i in range(V.MAX_TOOLS + 1)]),
        chat(tool_choice="maybe"),
        chat(tool_choice={"type": "function", "function": {"name": 1}}),
        chat(tool_choice=3),
    ],
)
def test_check_chat_body_refuses(body):
    assert _status(V.check_chat_body, body) == 400


def test_check_chat_body_accepts_openai_bodies():
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"},
                                             "strict": False}}
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
    ]
    V.check_chat_body(chat(messages=messages, tools=[tool], tool_choice="auto", logprobs=True, top_logprobs=5,
                           parallel_tool_calls=False))
    V.check_chat_body(chat(tools=[tool], tool_choice={"type": "function", "function": {"name": "f"}}))


def test_accepted_content_parts_survive_rays_sanitizer():
    """What check_chat_body lets through, vLLM's model and Ray's sanitizer (which materialises
    content parts after the gateway, where a failure was a 500) accept too; what they would
    have failed on, the check refuses first."""
    from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request

    from llmops_ray.common.ray_compat import ChatCompletionRequest

    accepted = [
        [{"type": "text", "text": "a"}, {"type": "text", "text": ""}],
        [{"type": "refusal", "refusal": "no"}],
        [{"type": "image_url", "image_url": {"url": "http://x/y.png", "detail": "low"}}],
        [{"type": "file", "file": {"file_id": "f1"}}, {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}],
        [{"type": "text", "text": "a", "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "12h"}},
         {"type": "refusal", "refusal": "no", "prompt_cache_breakpoint": []}],
        [],
    ]
    for content in accepted:
        body = chat(messages=[{"role": "user", "content": content}])
        V.check_chat_body(body)
        _sanitize_chat_completion_request(ChatCompletionRequest.model_validate(body))
    for content in ([[1]], [{"": None}], [{"type": "text", "text": 5}], [{"type": "file", "file": {"file_id": {}}}],
                    [{"type": "text", "text": "a", "prompt_cache_breakpoint": [[]]}],
                    [{"type": "image_url", "image_url": {"url": "u", "detail": "xyz"}}]):
        body = chat(messages=[{"role": "user", "content": content}])
        assert _status(V.check_chat_body, body) == 400
        with pytest.raises(ValueError):  # what used to escape as a 500
            _sanitize_chat_completion_request(ChatCompletionRequest.model_validate(body))


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x", "echo": "y"},  # pydantic would take it as True
        {"prompt": "x", "suffix": 1},
        {"prompt": "x", "logprobs": V.MAX_LOGPROBS + 1},
        {"prompt": "x", "logprobs": True},
        {"prompt": "x", "n": 3, "best_of": 2},
        {"prompt": "x", "best_of": V.MAX_N + 1},
        {"prompt": [-1, 5]},
        {"prompt": [[1], [2**31]]},
        {"prompt": ["a"] * (V.MAX_BATCH_INPUTS + 1)},
        {"prompt": [[]]},
        {"prompt": []},
        {"prompt": [True]},
        {"prompt": None},
    ],
)
def test_check_completion_body_refuses(body):
    assert _status(V.check_completion_body, body) == 400


def test_check_completion_body_accepts():
    for body in ({"prompt": "x", "logprobs": 5, "echo": True, "n": 2, "best_of": 3}, {"prompt": [1, 2, 3]},
                 {"prompt": ["a", "b"]}, {"prompt": [[1, 2], [3]]}, {"prompt": ["a"] * V.MAX_BATCH_INPUTS}):
        V.check_completion_body(body)


@pytest.mark.parametrize(
    "body",
    [
        {"input": ["a"] * (V.MAX_BATCH_INPUTS + 1)},
        {"input": "x" * (V.MAX_EMBEDDING_INPUT_CHARS + 1)},
        {"input": ["ok", "x" * (V.MAX_EMBEDDING_INPUT_CHARS + 1)]},
        {"input": [1, 2, 3]},
        {"input": [[1, 2]]},
        {"input": ""},
        {"input": ["a", ""]},
        {"input": ["a", 1]},
        {"input": []},
        {"input": "a", "encoding_format": "int8"},
        {"input": "a", "dimensions": "x"},
        {"input": "a", "dimensions": 0},
    ],
)
def test_check_embeddings_body_refuses(body):
    assert _status(V.check_embeddings_body, body) == 400


def test_check_embeddings_body_accepts():
    assert V.check_embeddings_body({"input": "a"}) == (["a"], "float")
    texts, fmt = V.check_embeddings_body({"input": ["x" * V.MAX_EMBEDDING_INPUT_CHARS] + ["b"] * (V.MAX_BATCH_INPUTS - 1),
                                          "encoding_format": "base64", "dimensions": 384})
    assert len(texts) == V.MAX_BATCH_INPUTS and fmt == "base64"


def test_checks_raise_only_gateway_errors_on_random_json():
    """Property: on any JSON object, the checks pass or raise a 400 GatewayError (never
    another exception, which the gateway would answer with a 500)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    # Field names at every level (and their usual string values), so that random values land
    # where the checks look: messages[i].role, content[j].type, tool_choice.function.name...
    names = ["model", "messages", "prompt", "input", "n", "stop", "logit_bias", "tools", "tool_choice", "stream_options",
             "include_usage", "response_format", "json_schema", "schema", "logprobs", "top_logprobs", "seed", "best_of",
             "echo", "encoding_format", "dimensions", "temperature", "user", "content", "role", "type", "text",
             "image_url", "url", "function", "name", "arguments", "tool_calls", "id", "parameters"]
    words = ["user", "assistant", "tool", "text", "image_url", "function", "json_schema", "auto", "float", "5"]
    keys = st.sampled_from(names)
    scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
               | st.sampled_from(words) | st.text(max_size=4))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                          max_leaves=12)
    # Message-shaped values where the chat checks walk: messages[i] and its content parts.
    part = st.dictionaries(st.sampled_from(["type", "text", "image_url", "refusal"]), values, max_size=3)
    message = st.dictionaries(st.sampled_from(["role", "content", "tool_calls", "name", "function_call"]),
                              values | st.lists(part | values, max_size=3), max_size=4)
    bodies = st.dictionaries(keys, values, max_size=6) | st.fixed_dictionaries(
        {"messages": st.lists(message | values, min_size=1, max_size=3)},
        optional={k: values for k in ("tools", "tool_choice", "stream_options", "logit_bias", "response_format")})

    @hypothesis.settings(max_examples=500, deadline=None, database=None, derandomize=True)
    @hypothesis.given(bodies)
    def run(body):
        raw = json.dumps(body).encode()
        try:
            parsed = V.parse_json_body(raw)
        except GatewayError as exc:
            assert exc.status == 400
            return
        for check in (V.check_common, V.check_chat_body, V.check_completion_body, V.check_embeddings_body):
            try:
                check(parsed)
            except GatewayError as exc:
                assert exc.status == 400

    run()


@pytest.mark.parametrize(
    "check, body",
    [
        (V.check_chat_body, chat(messages=[{"role": {"a": 1}, "content": "x"}])),  # TypeError (unhashable): was a 500
        (V.check_chat_body, chat(messages=[{"role": ["user"], "content": "x"}])),
        (V.check_chat_body, chat(messages=[{"role": "user", "content": [{"type": {}, "text": "x"}]}])),
        (V.check_chat_body, chat(tool_choice={"type": "function", "function": {"name": 1}})),
        (V.check_chat_body, chat(tool_choice=["auto"])),
        (V.check_common, chat(response_format={"type": ["text"]})),
        (V.check_embeddings_body, {"input": "a", "encoding_format": ["float"]}),
    ],
)
def test_unhashable_values_are_400s(check, body):
    assert _status(check, body) == 400


def test_accepted_content_parts_survive_rays_sanitizer_property():
    """Property: any message content check_chat_body accepts, vLLM's model and Ray's
    sanitizer accept too (a failure there happens after the gateway: a 500)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from pydantic import ValidationError
    from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request

    from llmops_ray.common.ray_compat import ChatCompletionRequest

    types = ["text", "refusal", "image_url", "input_audio", "file", "video_url", "audio_url"]
    words = ["a", "explicit", "30m", "1d", "wav", "ogg", "low", "xyz", "http://x"]
    scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(words)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=2)
                          | st.dictionaries(st.sampled_from(["mode", "ttl", "url", "x"]), inner, max_size=2),
                          max_leaves=6)
    # Mostly well-formed parts with one or two fields off: where the lazy validation bites.
    strings = st.sampled_from(words) | values
    payload = st.dictionaries(st.sampled_from(["url", "detail", "data", "format", "file_id", "file_data", "filename"]),
                              strings, max_size=3) | values
    part = st.fixed_dictionaries(
        {"type": st.sampled_from(types) | values},
        optional={"text": strings, "refusal": strings, "image_url": payload, "input_audio": payload, "file": payload,
                  "video_url": payload, "audio_url": payload,
                  "prompt_cache_breakpoint": st.dictionaries(st.sampled_from(["mode", "ttl"]), strings) | values},
    )
    parts = st.lists(part | values, min_size=1, max_size=3)
    roles = st.sampled_from(["system", "user", "assistant", "tool"])

    @hypothesis.settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @hypothesis.given(roles, parts)
    def run(role, content):
        message = {"role": role, "content": content, **({"tool_call_id": "1"} if role == "tool" else {})}
        body = chat(messages=[message])
        try:
            V.check_chat_body(body)
        except GatewayError:
            return
        try:
            parsed = ChatCompletionRequest.model_validate(body)
        except ValidationError:  # eager pydantic errors are 400s in the gateway
            return
        _sanitize_chat_completion_request(parsed)

    run()


def test_fuzz_checks_catch_what_they_are_for():
    """benchmarks/openapi_fuzz.py's response checks: a 5xx, a non-OpenAI error body and a
    server error inside a 200 stream are counted; OpenAI-shaped refusals are not."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "openapi_fuzz.py"
    spec = importlib.util.spec_from_file_location("openapi_fuzz_checks", path)
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fuzz
    spec.loader.exec_module(fuzz)

    report = fuzz.Report()
    ok_error = json.dumps({"error": {"message": "m", "type": "invalid_request_error", "code": None, "param": None}})
    fuzz.check_response(report, "op", "key", 400, ok_error, "application/json", "curl")
    fuzz.check_response(report, "op", "key", 200, "data: {\"choices\": []}\n\ndata: [DONE]\n\n", "text/event-stream", "c")
    assert report.server_errors == report.bad_error_bodies == 0 and not report.failures
    fuzz.check_response(report, "op", "key", 500, ok_error, "application/json", "curl")
    fuzz.check_response(report, "op", "key", 422, '{"detail": "x"}', "application/json", "curl")
    fuzz.check_response(report, "op", "key", 502, "Internal Server Error", "text/plain", "curl")
    sse = 'data: {"error": {"message": "boom", "type": "InternalServerError", "code": 500}}\n\n'
    fuzz.check_response(report, "op", "key", 200, sse, "text/event-stream; charset=utf-8", "curl")
    assert report.requests == 6 and report.server_errors == 3 and report.bad_error_bodies == 2
    assert len(report.failures) == 4
    assert report.summary()["statuses"] == {"200": 2, "400": 1, "422": 1, "500": 1, "502": 1}
    # adapt_body keeps the work small but never repairs a malformed value.
    import random

    rng = random.Random(0)
    body = fuzz.adapt_body({"model": 3, "max_tokens": 500, "n": 10**9, "best_of": "2"}, "/completions", "tiny", "e", rng)
    assert body == {"model": 3, "max_tokens": fuzz.MAX_TOKENS_CAP, "n": 10**9, "best_of": "2"}
