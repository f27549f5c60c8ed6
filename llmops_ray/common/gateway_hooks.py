"""Plug-in points of the gateway's request path (keys, rails, RAG, canary, metrics, logs).

A hook is a small class with any of the methods of :class:`GatewayHook`; the gateway
calls them in the order the config lists the hooks (``gateway.hooks`` in a serve YAML):

====================  ==========================================================================
``authenticate``      first, for every ``/v1`` route, before the body is read (only
                      ``ctx.headers`` is known): raise ``GatewayError(401, ...)``
``before_request``    after the shape checks, before the model is resolved: may rewrite
                      ``ctx.body`` (mask PII, add RAG context, pick a canary variant by
                      setting ``body["model"]``) or block with ``GatewayError(400, ...,
                      code="content_blocked")``
``admit``             after the model is resolved (``ctx.model``; ``ctx.prompt_tokens`` counted
                      with the model's tokenizer, ``ctx.max_output_tokens``): permission on
                      the model (403) and quota reservation (429); the place for anything
                      that must know what the request will cost
``allows_model``      whether the caller (``ctx.principal``) may see/use a model; filters
                      ``/v1/models``
``on_chunk``          each streamed chunk (the parsed JSON of one SSE event); return the
                      chunk (changed or not) or ``None`` to drop it; runs on the hot path:
                      keep it cheap and bounded
``end_stream``        after the engine's last chunk, before ``data: [DONE]``: extra chunks to
                      send (text a windowed filter still holds back)
``on_response``       the whole non-streamed response body (dict); return it (changed or not);
                      runs in a worker thread, off the event loop
``after_response``    once the response is finished (ok or error), as a background task that
                      never delays the client; exceptions are logged and dropped
``extra_models``      model names the hook serves itself (stacks), listed in ``/v1/models``
====================  ==========================================================================

A hook class may also define a classmethod ``deployments(kwargs) -> {name: bound app}``:
the app builder deploys those with the gateway (the RAG retriever of the stack hook).

Hooks share per-request state through :class:`RequestContext` (``principal``, ``tenant``,
``variant``, ``extra``, ``response_headers``) and are built once per gateway replica from
``HookSpec(path, kwargs)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping


class GatewayError(Exception):
    """An HTTP error with an OpenAI error body: ``{"error": {"message", "type", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _DEFAULT_CODES.get(status, "error")
        self.type = type or _DEFAULT_TYPES.get(status, "invalid_request_error")
        self.headers = dict(headers or {})
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}
_DEFAULT_CODES = {
    400: "invalid_parameter",
    401: "invalid_api_key",
    403: "permission_denied",
    404: "model_not_found",
    408: "timeout",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
}


@dataclass
class RequestContext:
    """Everything one request carries through the gateway; hooks read and write it."""

    route: str
    """``chat``, ``completions``, ``embeddings`` or ``models``."""
    body: dict[str, Any]
    """Parsed JSON body; hooks may change it before the model is called."""
    headers: Mapping[str, str]
    """Request headers (lower-case names)."""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Id of this request (also the ``X-Request-Id`` response header)."""
    requested_model: str | None = None
    """``model`` as the client sent it."""
    model: str | None = None
    """Model (or ``base:adapter``) that served the request, once resolved."""
    stream: bool = False
    """Whether the client asked for SSE."""
    principal: Any = None
    """Who is calling (set by the authentication hook, e.g. an API-key record)."""
    tenant: str | None = None
    """Tenant of the caller (set by the authentication hook)."""
    variant: str | None = None
    """Canary/A-B variant that served the request (set by the routing hook)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form state shared between hooks (citations, rail decisions, ...)."""
    response_headers: dict[str, str] = field(default_factory=dict)
    """Headers added to the response (e.g. the variant)."""
    status: int = 200
    """HTTP status of the response."""
    error: str | None = None
    """Error message when the response is an error."""
    usage: dict[str, Any] | None = None
    """OpenAI ``usage`` (prompt/completion tokens) when the engine reported it."""
    output_text: list[str] = field(default_factory=list)
    """Generated text pieces (filled when hooks are configured, for logs and rails)."""
    started: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when the request arrived."""
    first_chunk_at: float | None = None
    """``perf_counter`` of the first streamed chunk (time to first token = this - started)."""
    finished_at: float | None = None
    """``perf_counter`` when the response was complete."""
    started_wall: float = field(default_factory=time.time)
    """Unix time when the request arrived."""
    prompt_tokens: int | None = None
    """Prompt tokens of the request as the engine will see it (after RAG and rails), counted
    with the model's tokenizer before the engine is called; None when no hook needs it."""
    max_output_tokens: int = 0
    """Most tokens the request may generate: ``max_tokens`` x ``n`` (0 for embeddings)."""


class GatewayHook:
    """Base class with no-op methods: override the ones a hook needs."""

    async def authenticate(self, ctx: RequestContext) -> None:
        return None

    async def before_request(self, ctx: RequestContext) -> None:
        return None

    async def admit(self, ctx: RequestContext) -> None:
        return None

    def allows_model(self, ctx: RequestContext, model_id: str) -> bool:
        return True

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> dict[str, Any] | None:
        return chunk

    def end_stream(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return []

    def on_response(self, ctx: RequestContext, response: dict[str, Any]) -> dict[str, Any]:
        return response

    async def after_response(self, ctx: RequestContext) -> None:
        return None

    def extra_models(self) -> list[str]:
        return []


def overrides(hook: Any, method: str) -> bool:
    """Whether ``hook`` defines ``method`` other than :class:`GatewayHook`'s no-op."""
    impl = getattr(type(hook), method, None)
    return impl is not None and impl is not getattr(GatewayHook, method, None)


def hook_class(path: str) -> Any:
    """Import ``pkg.mod:Name`` (or ``pkg.mod.Name``, or ``/path/file.py:Name``) and return it."""
    module_name, _, attr = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"hook path {path!r} is not of the form package.module:Name")
    if module_name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"llmops_hook_{abs(hash(module_name))}", module_name)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load hook file {module_name!r}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, attr)


def load_hook(path: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Import ``pkg.mod:Name`` (or ``pkg.mod.Name``, or ``/path/file.py:Name``) and call it
    with ``kwargs``. A file path must be readable on every node (workspace or repo)."""
    return hook_class(path)(**dict(kwargs or {}))


def hook_deployments(hooks: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Serve deployments that hooks need in the gateway's application (e.g. the RAG
    retriever): each hook class may define ``deployments(kwargs) -> {name: bound app}``.
    Bound into the gateway's init arguments, they are deployed with the app and reached
    from the hook by ``serve.get_deployment_handle(name, app_name)``."""
    out: dict[str, Any] = {}
    for spec in hooks:
        cls = hook_class(spec["path"])
        factory = getattr(cls, "deployments", None)
        if callable(factory):
            out.update(factory(dict(spec.get("kwargs") or {})))
    return out
