"""The per-replica observer: one object the gateway creates once and calls per request.

It ties together metrics (:mod:`.metrics`), cost (:mod:`.cost`) and the asynchronous
request log (:mod:`.request_log`). Everything it does on the request path is in-process and
non-blocking: metric records, a cost computation, and a ``put_nowait`` on the log queue.

Per request::

    trace = observer.start(stack="support", model="tiny-base", variant="canary",
                           tenant="acme", key_id="key-1", route="chat", stream=True,
                           request=body)
    trace.retrieval(0.012)                      # optional: KB search took 12 ms
    trace.rail("input.pii", "mask")             # optional: each guardrail decision
    trace.chunk(tokens=1)                       # each streamed chunk (first = first token)
    trace.finish(status=200, prompt_tokens=31, completion_tokens=64,
                 response_text="...", response_id="chatcmpl-...", citations=[...])
    # or, on an error / disconnect:  trace.finish(status=500, error="...")

``finish`` is idempotent (a disconnect handler and a ``finally`` may both call it). Call
``observer.close()`` when the replica shuts down (it flushes the log queue).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from llmops_ray.observe.cost import PriceTable, ReplicaMeter, load_prices, token_cost
from llmops_ray.observe.request_log import REQUESTS, USAGE, RequestLogger


def _rail_fields(decision: Any) -> tuple[str, str, dict[str, Any]]:
    """(rail, action, log dict) from a ``RailDecision``, a dict or a (rail, action) pair."""
    if hasattr(decision, "to_log"):
        entry = decision.to_log()
    elif isinstance(decision, dict):
        entry = dict(decision)
    else:
        rail, action = decision
        entry = {"rail": rail, "action": action}
    return str(entry.get("rail") or entry.get("name") or "-"), str(entry.get("action") or entry.get("decision") or "-"), entry


@dataclass
class RequestRecord:
    """One finished request, as the gateway (or a benchmark) saw it."""

    stack: str | None
    """Stack (or served model) of the request: the metric, cost and log label. A configured
    value, never the client's raw ``model`` text (see :func:`llmops_ray.observe.hook.request_labels`)."""
    latency_s: float
    """Seconds from arrival to the last byte."""
    model: str | None = None
    """Model (or ``base:adapter``) that served it."""
    variant: str | None = None
    """Canary / A-B variant that served it."""
    tenant: str | None = None
    """Tenant of the API key."""
    key_id: str | None = None
    """Public id of the API key."""
    route: str = "chat"
    """``chat``, ``completions`` or ``embeddings``."""
    stream: bool = False
    """Whether the response was streamed."""
    status: int = 200
    """HTTP status."""
    ttft_s: float | None = None
    """Seconds to the first token (None when no token was produced)."""
    tbt_s: float | None = None
    """Mean seconds between output tokens."""
    prompt_tokens: int = 0
    """Prompt tokens (the engine's count)."""
    completion_tokens: int = 0
    """Completion tokens."""
    request: Any = None
    """Logged part of the request body (PII-masked by the log writer)."""
    response_text: str | None = None
    """The answer's text."""
    error: str | None = None
    """Error message of a failed request."""
    citations: list[Any] | None = None
    """RAG citations returned with the answer."""
    rails: list[Any] | None = None
    """Rail decisions taken on the request."""
    retrieval_s: float | None = None
    """Seconds spent retrieving (RAG)."""
    request_id: str | None = None
    """Request id (``X-Request-Id``); a new one when None."""
    response_id: str | None = None
    """Id of the response (``chatcmpl-...``)."""
    ts: float | None = None
    """Unix time of arrival (default: now - latency)."""
    started: bool = False
    """:meth:`Observer.start` (or the gateway hook) already counted it in the queue-depth gauge."""
    inflight_stack: str | None = None
    """``stack`` label the queue-depth gauge was raised under at the start, when it may differ
    from ``stack`` (the hook starts a request before its model is resolved); None = ``stack``."""


class Observer:
    """Metrics + cost + request log for one gateway replica (create it in ``__init__``)."""

    def __init__(
        self,
        prices: PriceTable | str | None = None,
        metrics: bool = True,
        log_requests: bool = True,
        db_dir: str | None = None,
        replica: str | None = None,
        max_queue: int = 10_000,
        batch_size: int = 256,
        flush_interval_s: float = 0.5,
        usage_interval_s: float = 60.0,
        max_label_values: int = 256,
    ) -> None:
        self.prices = prices if isinstance(prices, PriceTable) else load_prices(prices)
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = None
        if metrics:
            from llmops_ray.observe.metrics import MetricsRecorder

            self.metrics = MetricsRecorder(max_label_values)
        self.logger = None
        if log_requests:
            on_drop = self.metrics.log_dropped if self.metrics else None
            self.logger = RequestLogger(
                db_dir, max_queue=max_queue, batch_size=batch_size, flush_interval_s=flush_interval_s, on_drop=on_drop
            )
            self.logger.every(usage_interval_s, self._usage_rows)
        self._meters: dict[tuple[str, str, str], ReplicaMeter] = {}

    # -- replica-seconds ----------------------------------------------------------------
    def meter(self, stack: str, variant: str = "", accelerator: str = "cpu", replicas: int = 1) -> ReplicaMeter:
        """The replica-second meter of one deployment (created on first use); call
        ``.set_replicas(n)`` on it when the deployment's replica count changes."""
        key = (stack, variant, accelerator)
        if key not in self._meters:
            self._meters[key] = ReplicaMeter(stack, variant, accelerator, replicas, replica_id=self.replica)
        return self._meters[key]

    def _usage_rows(self) -> list[tuple[str, dict[str, Any]]]:
        rows = []
        for meter in list(self._meters.values()):
            row = meter.take()
            if row:
                rows.append((USAGE, row))
                if self.metrics:
                    self.metrics.replica_seconds(row["stack"], row["variant"], row["accelerator"], row["replica_seconds"])
        return rows

    # -- per request --------------------------------------------------------------------
    def start(
        self,
        stack: str | None,
        model: str | None = None,
        variant: str | None = None,
        tenant: str | None = None,
        key_id: str | None = None,
        route: str = "chat",
        stream: bool = False,
        request: Any = None,
        request_id: str | None = None,
    ) -> "RequestTrace":
        """A request arrived (call first thing in the handler)."""
        return RequestTrace(self, stack, model, variant, tenant, key_id, route, stream, request, request_id)

    def record(self, rec: "RequestRecord") -> dict[str, Any]:
        """Record one finished request in one call (metrics, cost, log row); returns the
        row queued for the log (``cost_usd`` included)."""
        stack, model, variant, tenant = rec.stack, rec.model, rec.variant, rec.tenant
        latency_s, ttft_s, tbt_s = rec.latency_s, rec.ttft_s, rec.tbt_s
        prompt_tokens, completion_tokens = int(rec.prompt_tokens or 0), int(rec.completion_tokens or 0)
        cost = token_cost(self.prices, prompt_tokens, completion_tokens, stack=stack, model=model)
        rail_logs = []
        m = self.metrics
        tags = m.tags(stack, model, variant, tenant) if m else None
        for decision in rec.rails or []:
            rail, action, entry = _rail_fields(decision)
            rail_logs.append(entry)
            if m:
                m.rail_decision(tags, rail, action)
        if m:
            if not rec.started:
                m.request_started(tags)
            if rec.retrieval_s is not None:
                m.retrieval(tags, rec.retrieval_s)
            if tbt_s is not None:
                m.token_gap(tags, tbt_s)
            inflight = None
            if rec.started and rec.inflight_stack is not None:
                inflight = m.labels("stack", rec.inflight_stack)
            m.request_finished(tags, rec.status, latency_s, ttft_s, prompt_tokens, completion_tokens, cost,
                               inflight_stack=inflight)
        row = {
            "request_id": rec.request_id or uuid.uuid4().hex,
            "response_id": rec.response_id or "",
            "ts": rec.ts if rec.ts is not None else time.time() - latency_s,
            "tenant": tenant or "",
            "key_id": rec.key_id or "",
            "stack": stack or "",
            "model": model or "",
            "variant": variant or "",
            "route": rec.route,
            "stream": bool(rec.stream),
            "status": int(rec.status),
            "error": rec.error or "",
            "latency_s": float(latency_s),
            "ttft_s": None if ttft_s is None else float(ttft_s),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost,
            "request": rec.request,
            "response": rec.response_text or "",
            "citations": rec.citations or [],
            "rails": rail_logs,
            "replica": self.replica,
        }
        if self.logger is not None:
            self.logger.log(row, REQUESTS)
        return row

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the log rows queued so far are written (tests, shutdown; not per request)."""
        return self.logger.flush(timeout) if self.logger else True

    def close(self) -> None:
        """Flush and stop the log writer (replica shutdown)."""
        if self.logger is not None:
            self.logger.close()


class RequestTrace:
    """Timing and decisions of one request, turned into one :meth:`Observer.record` at finish."""

    def __init__(self, observer, stack, model, variant, tenant, key_id, route, stream, request, request_id):
        self.observer = observer
        self.stack, self.model, self.variant, self.tenant, self.key_id = stack, model, variant, tenant, key_id
        self.route, self.stream, self.request = route, stream, request
        self.request_id = request_id or uuid.uuid4().hex
        self.ts = time.time()
        self.t0 = time.perf_counter()
        self.first_token_at: float | None = None
        self.last_chunk_at: float | None = None
        self.tokens_seen = 0
        self.rails: list[Any] = []
        self.retrieval_s: float | None = None
        self.summary: dict[str, Any] | None = None
        if observer.metrics:
            observer.metrics.request_started(observer.metrics.tags(stack, model, variant, tenant))

    def first_token(self) -> None:
        """The first output token is ready to send (idempotent)."""
        if self.first_token_at is None:
            self.first_token_at = self.last_chunk_at = time.perf_counter()

    def chunk(self, tokens: int = 1) -> None:
        """A streamed chunk carrying ``tokens`` output tokens is being sent."""
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        elif self.observer.metrics and tokens > 0:
            m = self.observer.metrics
            m.token_gap(m.tags(self.stack, self.model, self.variant, self.tenant), now - self.last_chunk_at, tokens)
        self.last_chunk_at = now
        self.tokens_seen += tokens

    def rail(self, rail: str | Any, decision: str | None = None) -> None:
        """A guardrail decision (a ``RailDecision``, a dict, or ``rail, decision`` strings)."""
        self.rails.append(rail if decision is None else (rail, decision))

    def retrieval(self, seconds: float) -> None:
        """KB retrieval for this request took ``seconds``."""
        self.retrieval_s = seconds

    def finish(
        self,
        status: int = 200,
        prompt_tokens: int = 0,
        completion_tokens: int | None = None,
        response_text: str | None = None,
        response_id: str | None = None,
        citations: list[Any] | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """The response is complete (or failed): record it once; later calls return the same row.

        TTFT: the first chunk's time for streams; for a successful non-streamed response the
        whole latency (that is when the client sees its first token)."""
        if self.summary is not None:
            return self.summary
        latency = time.perf_counter() - self.t0
        if completion_tokens is None:
            completion_tokens = self.tokens_seen
        if self.first_token_at is not None:
            ttft = self.first_token_at - self.t0
        elif status < 400 and completion_tokens > 0:
            ttft = latency
        else:
            ttft = None
        self.summary = self.observer.record(RequestRecord(
            stack=self.stack,
            model=self.model,
            variant=self.variant,
            tenant=self.tenant,
            key_id=self.key_id,
            route=self.route,
            stream=self.stream,
            status=status,
            latency_s=latency,
            ttft_s=ttft,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            request=self.request,
            response_text=response_text,
            error=error,
            citations=citations,
            rails=self.rails,
            retrieval_s=self.retrieval_s,
            request_id=self.request_id,
            response_id=response_id,
            ts=self.ts,
            started=True,
        ))
        return self.summary
