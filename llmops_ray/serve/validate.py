"""Request checks of the gateway: every malformed body becomes a 400 with an OpenAI error
body before anything reaches vLLM (whose own models turn some shapes into 500s)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from llmops_ray.common.gateway_hooks import GatewayError

CHAT_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


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


def check_chat_body(body: dict[str, Any]) -> None:
    """Shape checks vLLM's own models would let through or turn into 500s."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' must be a non-empty list of messages", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise GatewayError(400, f"messages[{i}] must be an object", param="messages")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise GatewayError(
                400, f"messages[{i}].role {role!r} is not one of {sorted(CHAT_ROLES)}", param="messages"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise GatewayError(400, f"messages[{i}].content must be a string or a list of parts", param="messages")


def check_completion_body(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    ok = isinstance(prompt, str) or (
        isinstance(prompt, list)
        and prompt
        and (
            all(isinstance(p, str) for p in prompt)
            or all(isinstance(p, int) and not isinstance(p, bool) for p in prompt)
            or all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt)
        )
    )
    if not ok:
        raise GatewayError(400, "'prompt' must be a string, a list of strings or a list of token ids", param="prompt")


def check_common(body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise GatewayError(400, "'model' must be a string", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise GatewayError(400, "'stream' must be a boolean", param="stream")
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise GatewayError(400, f"'{key}' must be a number", param=key)
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise GatewayError(400, "'n' must be an integer >= 1", param="n")


async def read_json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object", code="invalid_json")
    return body


def _validation_message(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"invalid value for '{loc}': {first.get('msg')}" if loc else str(first.get("msg"))
