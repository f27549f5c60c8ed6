"""Gateway hook that feeds metrics, cost and the request log from the serving path.

Add it LAST to ``gateway.hooks`` of a serve config (after keys, rails, RAG and canary, so
that it sees the tenant, variant, citations and rail decisions they set)::

    gateway:
      hooks:
        - path: llmops_ray.observe.hook:ObserveHook
          kwargs: {prices: null, log_requests: true}

What it reads from the request context (set by the gateway and the other hooks):
``ctx.model`` (the model the gateway resolved; None when the request failed before),
``ctx.extra["stack"]["name"]`` (set by the stack hook for a configured stack only),
``ctx.tenant``, ``ctx.variant``, ``ctx.principal`` (``key_id`` / ``id`` attribute or key),
``ctx.extra["citations"]`` (list of dicts), ``ctx.extra["rails"]`` (list of
``RailDecision`` or dicts with ``rail``/``action``), ``ctx.extra["retrieval_s"]`` (seconds).

Labels (metrics, cost, the log's ``stack`` / ``model`` columns) come only from those resolved
values, never from the client's ``model`` text: a request for a model that does not exist
is recorded under :data:`~llmops_ray.observe.metrics.UNKNOWN` (:func:`request_labels`), so
random model names cannot create Prometheus series. The raw body, model included, is
still in the log row's ``request`` column.

Streams: the gateway asks the engine for the usage chunk on every stream and drops it after
the hooks when the client did not ask for it; this hook passes every chunk through
unchanged and takes the token counts from it, so a streamed response is counted (and
costs) exactly like the non-streamed one.

Response ids: the log's ``response_id`` is the ``id`` of the payload (or first chunk) the
hooks are given, which must be the id the client receives (``POST /v1/feedback`` looks it up).

Everything runs in-process; the log write happens on the request logger's own thread.
``after_response`` is run by the gateway as a background task, after the client has its
answer.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from llmops_ray.config import StrictModel
from llmops_ray.observe.metrics import UNKNOWN
from llmops_ray.observe.observer import Observer, RequestRecord
from llmops_ray.common.gateway_hooks import GatewayHook, RequestContext

_USAGE = "observe_usage"
_RESPONSE_ID = "observe_response_id"
_STARTED = "observe_started"
# Body keys logged as the request (messages / prompt and generation parameters).
_LOGGED_KEYS = (
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n",
    "retrieval",
)


def _key_id(principal: Any) -> str | None:
    for name in ("key_id", "id"):
        value = principal.get(name) if isinstance(principal, dict) else getattr(principal, name, None)
        if value:
            return str(value)
    return None


def _stack_name(ctx: RequestContext) -> str | None:
    """The configured stack the stack hook recognised (``ctx.extra["stack"]["name"]``)."""
    info = ctx.extra.get("stack")
    name = info.get("name") if isinstance(info, dict) else None
    return name if isinstance(name, str) and name else None


def request_labels(ctx: RequestContext) -> tuple[str, str]:
    """``(stack, model)`` labels of a request, from values the deployment configured only.

    ``model``: the model the gateway resolved (``ctx.model``: a served model id, a local
    ``base:adapter``, the embedding model), else :data:`UNKNOWN`. ``stack``: the configured
    stack that served it, else the model label. ``ctx.requested_model`` (the client's text)
    is never used.
    """
    model = ctx.model if isinstance(ctx.model, str) and ctx.model else UNKNOWN
    return _stack_name(ctx) or model, model


class ObserveHookConfig(StrictModel):
    """Keyword arguments of :class:`ObserveHook` (``gateway.hooks[].kwargs``), checked at load time."""

    prices: str | None = None
    """Price table YAML (None = the shipped ``prices`` config)."""
    log_requests: bool = True
    """Write one request-log row per request (PII-masked)."""
    metrics: bool = True
    """Record Prometheus metrics (``ray_llmops_*``)."""
    db_dir: str | None = None
    """Request-log LanceDB directory (None = ``<workspace>/logs``)."""
    replica: str | None = None
    """Name of this replica in the log rows (None = host and process id)."""
    max_queue: int = Field(10_000, ge=1)
    """Rows the log writer holds before it drops (and counts) new ones."""
    batch_size: int = Field(256, ge=1)
    """Rows per LanceDB write."""
    flush_interval_s: float = Field(0.5, gt=0)
    """Longest a row waits before it is written."""
    usage_interval_s: float = Field(60.0, gt=0)
    """Interval of replica-seconds rows (cost per replica-hour)."""
    max_label_values: int = Field(256, ge=1)
    """Most distinct values one metric label takes in one replica; later values are recorded
    as ``(other)`` (a second bound behind the resolved-values-only rule)."""


class ObserveHook(GatewayHook):
    """Per-request metrics, cost and request-log rows for the gateway (one per replica)."""

    Config = ObserveHookConfig

    def __init__(self, **kwargs: Any):
        self.observer = Observer(**ObserveHookConfig(**kwargs).model_dump())
        # Models this replica has served (resolved ids only; bounded like a label), so that
        # the in-flight gauge can name a plain model before the gateway resolves it.
        self._served: set[str] = set()
        self._max_served = self.observer.metrics.labels.max_values if self.observer.metrics else 0

    async def before_request(self, ctx: RequestContext) -> None:
        # The request is in flight from here: under its stack when the stack hook recognised
        # one, under a model this replica has already served when the body names one (the
        # gateway resolves the model only after the hooks), else under UNKNOWN. The label
        # is remembered so that the end of the request lowers the same gauge.
        m = self.observer.metrics
        if m is None:
            return
        label = _stack_name(ctx)
        if label is None:
            named = ctx.body.get("model")
            label = named if isinstance(named, str) and named in self._served else UNKNOWN
        m.request_started(m.tags(label, None, None, None))
        ctx.extra[_STARTED] = label

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if _RESPONSE_ID not in ctx.extra and chunk.get("id"):
            ctx.extra[_RESPONSE_ID] = chunk["id"]
        if chunk.get("usage"):
            ctx.extra[_USAGE] = chunk["usage"]
        return chunk

    def on_response(self, ctx: RequestContext, response: dict[str, Any]) -> dict[str, Any]:
        ctx.extra[_RESPONSE_ID] = response.get("id")
        return response

    async def after_response(self, ctx: RequestContext) -> None:
        self.record_context(ctx)

    def record_context(self, ctx: RequestContext) -> dict[str, Any]:
        """Record one finished request from the gateway's context; returns the log row."""
        finished = ctx.finished_at or time.perf_counter()
        latency = max(0.0, finished - ctx.started)
        usage = ctx.extra.get(_USAGE) or ctx.usage or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        ttft = tbt = None
        if ctx.first_chunk_at is not None:
            ttft = ctx.first_chunk_at - ctx.started
            if completion_tokens > 1:
                tbt = (finished - ctx.first_chunk_at) / (completion_tokens - 1)
        elif ctx.status < 400 and completion_tokens > 0:
            ttft = latency  # non-streamed: the client sees every token at the end
        request = {k: ctx.body[k] for k in _LOGGED_KEYS if k in ctx.body}
        stack, model = request_labels(ctx)
        if model != UNKNOWN and model not in self._served and len(self._served) < self._max_served:
            self._served.add(model)
        started = ctx.extra.get(_STARTED)
        return self.observer.record(RequestRecord(
            stack=stack,
            model=model,
            variant=ctx.variant,
            tenant=ctx.tenant,
            key_id=_key_id(ctx.principal),
            route=ctx.route,
            stream=ctx.stream,
            status=ctx.status,
            latency_s=latency,
            ttft_s=ttft,
            tbt_s=tbt,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            request=request or None,
            response_text="".join(ctx.output_text),
            error=ctx.error,
            citations=ctx.extra.get("citations"),
            rails=ctx.extra.get("rails"),
            retrieval_s=ctx.extra.get("retrieval_s"),
            request_id=ctx.request_id,
            response_id=ctx.extra.get(_RESPONSE_ID),
            ts=ctx.started_wall,
            started=started is not None,
            inflight_stack=started,
        ))

    def close(self) -> None:
        """Flush the request log (replica shutdown)."""
        self.observer.close()
