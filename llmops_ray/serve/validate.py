"""Request checks of the gateway: every malformed body becomes a 400 with an OpenAI error
body before anything reaches vLLM (whose own models turn some shapes into 500s).

What is checked, and why here rather than in vLLM's request models:

- the JSON itself (:func:`parse_json_body`): nesting deeper than :data:`MAX_JSON_DEPTH`
  (Python's parser raises ``RecursionError`` near 1000 levels, and Ray's pickling of the
  request fails well before that), integers outside the 64-bit range the engine's
  MessagePack transport carries (a 5000-digit number makes ``int()`` raise ``ValueError``),
  ``NaN``/``Infinity`` (not JSON) and lone UTF-16 surrogates (``"\\ud800"`` decodes to a
  string no tokenizer can encode: ``TypeError`` in the engine and the embedder);
- the body size (:func:`read_body_capped`): 413 before the body sits whole in memory;
- every field the gateway, Ray or vLLM reads, by type: pydantic's lax mode would turn
  ``"seed": "1"`` into 1 and ``"echo": "y"`` into ``True``, and some fields (message content
  parts) are validated lazily, after the request has left the gateway, where a failure is
  a 500;
- bounds that cap the work one request can ask for: ``n`` and ``best_of`` at most
  :data:`MAX_N`, at most :data:`MAX_BATCH_INPUTS` embedding inputs or prompts, each
  embedding input at most :data:`MAX_EMBEDDING_INPUT_CHARS` characters, at most
  :data:`MAX_TOOLS` tools and :data:`MAX_STOP` stop strings.

Value ranges the engine checks itself (temperature, top_p, penalties, logprobs against the
engine's ``max_logprobs``, token ids against the vocabulary) are mirrored where OpenAI
documents them, so a client gets the same 400 whichever layer would have refused it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from llmops_ray.common.gateway_hooks import GatewayError

CHAT_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects in a body. OpenAI's bodies need about 10 (a tool's JSON
schema a few more); Ray's request pickling fails near 900 and Python's parser near 1000."""
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
"""Integers the engine's MessagePack transport carries (signed and unsigned 64-bit); a JSON
integer outside is refused while parsing, before ``int()`` spends quadratic time on it."""
_MAX_INT_CHARS = 21
"""Characters of the longest integer literal inside :data:`INT_MIN`..:data:`INT_MAX` (a sign
and 20 digits): longer literals are refused without converting them."""
MAX_N = 16
"""Upper bound of ``n`` (and ``best_of``): choices generated per prompt. OpenAI allows 128;
each choice is a full generation, so the gateway keeps a config-free bound that a chat
client never needs to exceed and that keeps one request's work within a few sequences."""
MAX_BATCH_INPUTS = 2048
"""Most items in an embeddings ``input`` list or a completions ``prompt`` list (OpenAI's
limit for embeddings)."""
MAX_EMBEDDING_INPUT_CHARS = 32_768
"""Longest embeddings input, in characters: OpenAI's 8192 tokens per input at about four
characters per token. Counted in characters because that needs no tokenizer and bounds the
tokenizer's own work (the embedder then truncates to its window)."""
MAX_STOP = 16
"""Most stop strings (OpenAI documents 4; vLLM takes any number; each is matched against
every new token's text)."""
MAX_TOOLS = 128
"""Most tools in a chat request (OpenAI's limit)."""
MAX_LOGPROBS = 20
"""Most alternatives per token in ``top_logprobs`` (chat) or ``logprobs`` (completions): OpenAI's
chat limit and vLLM's default ``max_logprobs``."""
MAX_TOKEN_ID = 2**31 - 1
"""Token ids (prompt token arrays, ``logit_bias`` keys) are non-negative 32-bit integers; the
engine refuses ids beyond its vocabulary with its own 400."""
CONTENT_PART_FIELDS: dict[str, tuple[str, dict[str, bool] | None]] = {
    "text": ("text", None),
    "refusal": ("refusal", None),
    "image_url": ("image_url", {"url": True, "detail": False}),
    "input_audio": ("input_audio", {"data": True, "format": True}),
    "file": ("file", {"file_data": False, "file_id": False, "filename": False}),
    "video_url": ("video_url", {"url": True}),
    "audio_url": ("audio_url", {"url": True}),
}
"""Message content parts: OpenAI's types plus vLLM's ``video_url`` and ``audio_url``. Each
names the field its payload sits in: a string (``None``), or an object of string fields
({name: required}). vLLM checks these only after the gateway (Ray's sanitizer materialises
the parts lazily: a wrong shape there was a 500); a text-only model answers a well-formed
media part with vLLM's own 400."""
CONTENT_PART_ENUMS = {("image_url", "detail"): {"auto", "low", "high", "original"},
                      ("input_audio", "format"): {"wav", "mp3"}}
"""String fields of part payloads that OpenAI's types (which vLLM validates them with) restrict."""
CACHE_BREAKPOINT_PARTS = {"text", "image_url", "input_audio", "file"}
"""Parts whose OpenAI type has an optional ``prompt_cache_breakpoint``: ``{"mode": "explicit",
"ttl": "30m" | "12h"}``; when the key is there (even null) it must be such an object."""
RESPONSE_FORMATS = {"text", "json_object", "json_schema", "structural_tag"}
TOOL_CHOICES = {"none", "auto", "required"}
EMBEDDING_FORMATS = {"float", "base64"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_DECIMAL = re.compile(r"[0-9]+")


# --------------------------------------------------------------------------- the body as JSON


class _BadNumber(ValueError):
    """A JSON number the gateway refuses (raised from inside ``json.loads``)."""


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS:
        raise _BadNumber(f"integer {text[:12]}... ({len(text)} characters) is out of range")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise _BadNumber(f"integer {text} is out of range [-2**63, 2**64 - 1]")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"number {text[:24]} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not valid JSON")


def _check_tree(root: Any) -> None:
    """Depth and strings of a parsed body, iteratively (the body may be as deep as the parser
    let through): nesting up to :data:`MAX_JSON_DEPTH`, no lone surrogates in keys or values."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise GatewayError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(key, str) and _SURROGATE.search(key):
                raise _surrogate_error()
            if isinstance(value, str):
                if not value.isascii() and _SURROGATE.search(value):
                    raise _surrogate_error()
            elif isinstance(value, (dict, list)):
                stack.append((value, depth + 1))


def _surrogate_error() -> GatewayError:
    return GatewayError(400, "request body has a lone UTF-16 surrogate escape (\\ud800-\\udfff): not valid Unicode text",
                        code="invalid_json")


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ``invalid_json``: not JSON, not UTF-8,
    nested too deep, a number out of range, ``NaN``/``Infinity``, a lone surrogate, or not
    an object."""
    try:
        body = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _BadNumber as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise GatewayError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise GatewayError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object", code="invalid_json")
    _check_tree(body)
    return body


async def read_json_body(request: Request) -> dict[str, Any]:
    return parse_json_body(await request.body())


async def read_body_capped(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``max_bytes``: from
    ``Content-Length`` before reading anything, else while it streams in (chunked uploads),
    so an oversized body never sits whole in the replica's memory."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        # ASCII digits only: str.isdigit() also accepts e.g. "²", which int() refuses.
        if not _DECIMAL.fullmatch(declared):
            raise GatewayError(400, "invalid Content-Length header", code="invalid_request")
        if len(declared) > 20 or int(declared) > max_bytes:
            raise GatewayError(413, f"request body of {declared[:24]} bytes is over the limit of {max_bytes} bytes",
                               code="request_too_large")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > max_bytes:
            raise GatewayError(413, f"request body is over the limit of {max_bytes} bytes", code="request_too_large")
        parts.append(part)
    return b"".join(parts)


# --------------------------------------------------------------------------- field helpers


def _bad(key: str, message: str) -> GatewayError:
    return GatewayError(400, f"'{key}' {message}", param=key.split("[")[0].split(".")[0])


def _one_of(value: Any, choices) -> bool:
    """``value in choices`` for a JSON value (``{} in a_set`` raises TypeError: unhashable)."""
    return isinstance(value, str) and value in choices


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _typed(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``body[key]`` when present and not null, after checking its JSON type."""
    value = body.get(key)
    if value is None:
        return None
    if kind is int:
        ok = _is_int(value)
    elif kind is float:
        ok = _is_number(value)
    else:
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok:
        raise _bad(key, f"must be {what}, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _in_range(body: dict[str, Any], key: str, low: float, high: float, integer: bool = False) -> None:
    value = _typed(body, key, int if integer else float, "an integer" if integer else "a number")
    if value is not None and not low <= value <= high:
        raise _bad(key, f"must be between {low:g} and {high:g}, got {value}")


def _positive_int(body: dict[str, Any], key: str, limit: int | None) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayError(400, f"'{key}' must be an integer, got {type(value).__name__}", param=key)
    if value <= 0:
        raise GatewayError(400, f"'{key}' must be >= 1, got {value}", param=key)
    if limit is not None and value >= limit:
        raise GatewayError(
            400,
            f"'{key}' = {value} does not fit this model's maximum context length of {limit} tokens "
            f"(prompt + {key} must be <= {limit})",
            code="context_length_exceeded",
            param=key,
        )


# --------------------------------------------------------------------------- every route


def check_common(body: dict[str, Any]) -> None:
    """Fields chat and completions share (and embeddings' ``model`` and ``user``)."""
    _typed(body, "model", str, "a string")
    _typed(body, "user", str, "a string")
    _typed(body, "stream", bool, "a boolean")
    options = _typed(body, "stream_options", dict, "an object")
    for key, value in (options or {}).items():
        if key in ("include_usage", "continuous_usage_stats", "include_obfuscation") and not isinstance(value, bool | None):
            raise _bad(f"stream_options.{key}", f"must be a boolean, got {_json_type(value)}")
    # OpenAI's documented ranges (vLLM checks the same ones later, as 400s too).
    _in_range(body, "temperature", 0, 2)
    _in_range(body, "top_p", 0, 1)
    _in_range(body, "presence_penalty", -2, 2)
    _in_range(body, "frequency_penalty", -2, 2)
    _in_range(body, "n", 1, MAX_N, integer=True)
    _in_range(body, "seed", INT_MIN, 2**63 - 1, integer=True)
    _check_stop(body)
    _check_logit_bias(body)
    _check_response_format(body)


def _check_stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _bad("stop", "must be a string or an array of strings")
    if len(stop) > MAX_STOP:
        raise _bad("stop", f"has {len(stop)} strings; at most {MAX_STOP}")


def _check_logit_bias(body: dict[str, Any]) -> None:
    bias = _typed(body, "logit_bias", dict, "an object of token id -> bias")
    for key, value in (bias or {}).items():
        if not _DECIMAL.fullmatch(key) or len(key) > 10 or int(key) > MAX_TOKEN_ID:
            raise _bad("logit_bias", f"keys must be token ids (non-negative integers), got {key[:32]!r}")
        if not _is_number(value) or not -100 <= value <= 100:
            raise _bad("logit_bias", f"values must be numbers between -100 and 100, got {value!r}"[:200])


def _check_response_format(body: dict[str, Any]) -> None:
    fmt = _typed(body, "response_format", dict, "an object")
    if fmt is None:
        return
    kind = fmt.get("type")
    if not _one_of(kind, RESPONSE_FORMATS):
        raise _bad("response_format", f"type must be one of {sorted(RESPONSE_FORMATS)}, got {kind!r}"[:200])
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise _bad("response_format", "of type 'json_schema' needs a 'json_schema' object")
        if not isinstance(spec.get("name"), str):
            raise _bad("response_format", "json_schema.name must be a string")
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict | bool):
            raise _bad("response_format", "json_schema.schema must be a JSON schema object")


# --------------------------------------------------------------------------- chat


def check_chat_body(body: dict[str, Any]) -> None:
    """Chat fields: messages (with their content parts and tool calls, which Ray and vLLM
    validate only after the gateway, where a failure is a 500), logprobs, tools."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' must be a non-empty list of messages", param="messages")
    for i, message in enumerate(messages):
        _check_message(i, message)
    _typed(body, "logprobs", bool, "a boolean")
    _in_range(body, "top_logprobs", 0, MAX_LOGPROBS, integer=True)
    _typed(body, "parallel_tool_calls", bool, "a boolean")
    _check_tools(body)


def _check_message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise GatewayError(400, f"{where} must be an object", param="messages")
    role = message.get("role")
    if not _one_of(role, CHAT_ROLES):
        raise GatewayError(400, f"{where}.role {role!r} is not one of {sorted(CHAT_ROLES)}"[:300], param="messages")
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise GatewayError(400, f"{where}.content must be a string or a list of parts", param="messages")
    for j, part in enumerate(content if isinstance(content, list) else ()):
        _check_content_part(f"{where}.content[{j}]", part)
    for key in ("name", "tool_call_id"):
        if message.get(key) is not None and not isinstance(message[key], str):
            raise GatewayError(400, f"{where}.{key} must be a string", param="messages")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise GatewayError(400, f"{where}.tool_calls must be an array", param="messages")
        for j, call in enumerate(tool_calls):
            _check_function_call(f"{where}.tool_calls[{j}]", call, nested=True)
    if message.get("function_call") is not None:
        _check_function_call(f"{where}.function_call", message["function_call"], nested=False)


def _check_content_part(where: str, part: Any) -> None:
    if not isinstance(part, dict):
        raise GatewayError(400, f"{where} must be an object with a 'type'", param="messages")
    kind = part.get("type")
    if not _one_of(kind, CONTENT_PART_FIELDS):
        raise GatewayError(400, f"{where}.type {kind!r} is not one of {sorted(CONTENT_PART_FIELDS)}"[:300],
                           param="messages")
    field, subfields = CONTENT_PART_FIELDS[kind]
    payload = part.get(field)
    if subfields is None:
        if not isinstance(payload, str):
            raise GatewayError(400, f"{where}.{field} must be a string", param="messages")
        _check_cache_breakpoint(where, part)
        return
    if not isinstance(payload, dict):
        raise GatewayError(400, f"{where}.{field} must be an object", param="messages")
    for name, required in subfields.items():
        value = payload.get(name)
        if (value is None and required) or (value is not None and not isinstance(value, str)):
            raise GatewayError(400, f"{where}.{field}.{name} must be a string", param="messages")
        allowed = CONTENT_PART_ENUMS.get((kind, name))
        if value is not None and allowed and value not in allowed:
            raise GatewayError(400, f"{where}.{field}.{name} must be one of {sorted(allowed)}", param="messages")
    _check_cache_breakpoint(where, part)


def _check_cache_breakpoint(where: str, part: dict[str, Any]) -> None:
    if part["type"] not in CACHE_BREAKPOINT_PARTS or "prompt_cache_breakpoint" not in part:
        return
    breakpoint_ = part["prompt_cache_breakpoint"]
    ok = (
        isinstance(breakpoint_, dict)
        and breakpoint_.get("mode", "explicit") == "explicit"
        and _one_of(breakpoint_.get("ttl", "30m"), {"30m", "12h"})
    )
    if not ok:
        raise GatewayError(400, f"{where}.prompt_cache_breakpoint must be {{'mode': 'explicit', 'ttl': '30m' | '12h'}}",
                           param="messages")


def _check_function_call(where: str, call: Any, nested: bool) -> None:
    """A tool call (``{"id", "type": "function", "function": {"name", "arguments"}}``) or,
    with ``nested=False``, the legacy ``function_call`` (``{"name", "arguments"}``)."""
    if not isinstance(call, dict):
        raise GatewayError(400, f"{where} must be an object", param="messages")
    if nested:
        if call.get("type", "function") != "function":
            raise GatewayError(400, f"{where}.type must be 'function'", param="messages")
        if call.get("id") is not None and not isinstance(call["id"], str):
            raise GatewayError(400, f"{where}.id must be a string", param="messages")
        function = call.get("function")
        if not isinstance(function, dict):
            raise GatewayError(400, f"{where}.function must be an object", param="messages")
        where, call = f"{where}.function", function
    for key in ("name", "arguments"):
        if not isinstance(call.get(key), str):
            raise GatewayError(400, f"{where}.{key} must be a string", param="messages")


def _check_tools(body: dict[str, Any]) -> None:
    tools = _typed(body, "tools", list, "an array")
    if tools is not None and len(tools) > MAX_TOOLS:
        raise _bad("tools", f"has {len(tools)} tools; at most {MAX_TOOLS}")
    for i, tool in enumerate(tools or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _bad(where, "must be an object of type 'function'")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _bad(where, "needs a 'function' object with a non-empty 'name'")
        if function.get("description") is not None and not isinstance(function["description"], str):
            raise _bad(where, "function.description must be a string")
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            raise _bad(where, "function.parameters must be a JSON schema object")
        if function.get("strict") is not None and not isinstance(function["strict"], bool):
            raise _bad(where, "function.strict must be a boolean")
    choice = body.get("tool_choice")
    if choice is None or _one_of(choice, TOOL_CHOICES):
        return
    named = (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    )
    if not named:
        raise _bad("tool_choice", f"must be one of {sorted(TOOL_CHOICES)} or "
                                  "{'type': 'function', 'function': {'name': ...}}")


# --------------------------------------------------------------------------- completions


def check_completion_body(body: dict[str, Any]) -> None:
    """Completions fields: the prompt (text, texts, token ids or lists of them), logprobs,
    echo, suffix, best_of."""
    prompt = body.get("prompt")
    ok = isinstance(prompt, str) or (
        isinstance(prompt, list)
        and prompt
        and (
            all(isinstance(p, str) for p in prompt)
            or all(_is_int(p) for p in prompt)
            or all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt)
        )
    )
    if not ok:
        raise GatewayError(400, "'prompt' must be a string, a list of strings or a list of token ids", param="prompt")
    if isinstance(prompt, list):
        if isinstance(prompt[0], list) or isinstance(prompt[0], str):
            if len(prompt) > MAX_BATCH_INPUTS:
                raise _bad("prompt", f"has {len(prompt)} prompts; at most {MAX_BATCH_INPUTS}")
        ids = (t for p in prompt for t in p) if isinstance(prompt[0], list) else prompt
        if not isinstance(prompt[0], str) and not all(0 <= t <= MAX_TOKEN_ID for t in ids):
            raise _bad("prompt", "token ids must be non-negative 32-bit integers")
    _in_range(body, "logprobs", 0, MAX_LOGPROBS, integer=True)
    _typed(body, "echo", bool, "a boolean")
    _typed(body, "suffix", str, "a string")
    best_of = _typed(body, "best_of", int, "an integer")
    if best_of is not None:
        n = body.get("n") or 1
        if not n <= best_of <= MAX_N:
            raise _bad("best_of", f"must be between n ({n}) and {MAX_N}, got {best_of}")


# --------------------------------------------------------------------------- embeddings


def check_embeddings_body(body: dict[str, Any]) -> tuple[list[str], str]:
    """``(texts, encoding_format)`` of an embeddings request, or a 400: at most
    :data:`MAX_BATCH_INPUTS` non-empty strings of at most :data:`MAX_EMBEDDING_INPUT_CHARS`
    characters each (token-id inputs are not served: the embedder has its own tokenizer)."""
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, list) and texts and all(_is_int(t) or isinstance(t, list) for t in texts):
        raise GatewayError(400, "'input' as token ids is not supported here: send text", param="input")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise GatewayError(400, "'input' must be a non-empty string or a list of non-empty strings", param="input")
    if len(texts) > MAX_BATCH_INPUTS:
        raise GatewayError(400, f"'input' has {len(texts)} items; at most {MAX_BATCH_INPUTS}", param="input")
    longest = max(len(t) for t in texts)
    if longest > MAX_EMBEDDING_INPUT_CHARS:
        raise GatewayError(400, f"an 'input' item has {longest} characters; at most {MAX_EMBEDDING_INPUT_CHARS}",
                           param="input")
    fmt = body.get("encoding_format") or "float"
    if not _one_of(fmt, EMBEDDING_FORMATS):
        raise GatewayError(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    _in_range(body, "dimensions", 1, 1 << 20, integer=True)
    return texts, fmt


def _validation_message(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"invalid value for '{loc}': {first.get('msg')}" if loc else str(first.get("msg"))
