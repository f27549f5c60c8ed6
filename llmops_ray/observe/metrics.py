"""Our serving metrics, exported through ``ray.util.metrics`` to Ray's Prometheus endpoint.

vLLM's own engine metrics (TTFT, TPOT, KV-cache use) are exported by Ray Serve LLM already;
these are the gateway's view of a request: what a client saw, per stack / model / variant /
tenant. Every metric is declared once in :data:`METRICS`; the Grafana dashboard and the
Prometheus rules under ``deploy/`` reference only the names :func:`prometheus_names` returns
(the tests check that).

Ray metric objects must be created inside the process that records them (a Serve replica is
an actor), so a :class:`MetricsRecorder` is created once per replica, in its ``__init__``.
Recording is an in-process call (Ray's exporter aggregates and exports every few seconds),
cheap enough for the request path.

Prometheus names: Ray prefixes ``ray_``; counters get ``_total``; histograms give
``_bucket`` / ``_sum`` / ``_count``. Units are in the names (seconds, tokens).

Bounded labels: every label value is one a deployment configured, never text a client
chose. The callers pass resolved values (:mod:`.hook`: the stack the stack hook recognised,
the model the gateway resolved, else :data:`UNKNOWN`); ``status`` is one of
:data:`STATUS_CODES` or its class (``4xx``); and as a second line of defence each label
takes at most ``max_label_values`` distinct values per replica, later ones become
:data:`OTHER` (:class:`LabelGuard`). Each new label value is a new Prometheus series on
every metric, kept in Ray's exporter and in Prometheus for good.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

#: Tags on every per-request metric. ``stack`` is the configured stack that served the
#: request (or the served model when no stack is involved); ``model`` the model that served
#: it; both :data:`UNKNOWN` when the request failed before its model was resolved.
BASE_TAGS: tuple[str, ...] = ("stack", "model", "variant", "tenant")

#: Label value of a stack / model that was never resolved (unknown model, early error).
UNKNOWN = "(unknown)"
#: Label value that stands for every value past a label's cap (:class:`LabelGuard`).
OTHER = "(other)"
#: Label value of an absent tag (no variant, no tenant): Ray rejects missing tag keys.
ABSENT = "-"
#: Statuses the gateway answers with that get their own ``status`` label value; any other
#: code is recorded as its class (``2xx`` .. ``5xx``), so a bogus code cannot add series.
STATUS_CODES = frozenset(
    {200, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 499, 500, 501, 502, 503, 504}
)
#: Default cap on the distinct values of one label in one replica.
DEFAULT_MAX_LABEL_VALUES = 256

# Histogram boundaries in seconds. TTFT: 5 ms .. 30 s, with 0.5 / 1 / 2.5 s present because
# the SLO burn-rate rules in deploy/prometheus/ count requests under exactly those bounds.
TTFT_BOUNDARIES_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
# Time between tokens: 1 ms .. 2 s (a chunk may carry several tokens: gap / tokens).
TBT_BOUNDARIES_S = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.0]
# End-to-end latency: 10 ms .. 5 min (long generations on CPU take minutes).
LATENCY_BOUNDARIES_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
# Output tokens per second of one request (completion tokens / end-to-end latency).
TOKENS_PER_S_BOUNDARIES = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]
# Retrieval (KB search) latency: 1 ms .. 5 s.
RETRIEVAL_BOUNDARIES_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its kind, help text, tag keys and (histograms) bucket boundaries."""

    name: str
    kind: str  # "counter" | "histogram" | "gauge"
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...] = ()


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in [
        MetricSpec("llmops_requests", "counter", "Requests finished, by HTTP status.", BASE_TAGS + ("status",)),
        MetricSpec(
            "llmops_request_errors",
            "counter",
            "Requests that ended with an HTTP status >= 400, by status.",
            BASE_TAGS + ("status",),
        ),
        MetricSpec(
            "llmops_ttft_seconds",
            "histogram",
            "Time from request arrival at the gateway to the first output token (s).",
            BASE_TAGS,
            tuple(TTFT_BOUNDARIES_S),
        ),
        MetricSpec(
            "llmops_time_between_tokens_seconds",
            "histogram",
            "Gap between streamed output tokens (s); a chunk of n tokens counts gap/n.",
            BASE_TAGS,
            tuple(TBT_BOUNDARIES_S),
        ),
        MetricSpec(
            "llmops_request_latency_seconds",
            "histogram",
            "End-to-end request latency at the gateway (s).",
            BASE_TAGS,
            tuple(LATENCY_BOUNDARIES_S),
        ),
        MetricSpec("llmops_prompt_tokens", "counter", "Prompt tokens processed.", BASE_TAGS),
        MetricSpec("llmops_completion_tokens", "counter", "Completion tokens generated.", BASE_TAGS),
        MetricSpec(
            "llmops_output_tokens_per_second",
            "histogram",
            "Completion tokens / end-to-end latency of one request.",
            BASE_TAGS,
            tuple(TOKENS_PER_S_BOUNDARIES),
        ),
        MetricSpec(
            "llmops_queue_depth",
            "gauge",
            "Requests in flight in this gateway replica (started, not finished), by requested stack.",
            ("stack",),
        ),
        MetricSpec(
            "llmops_rail_decisions",
            "counter",
            "Guardrail decisions, by rail and decision (allow, mask, flag, block).",
            BASE_TAGS + ("rail", "decision"),
        ),
        MetricSpec(
            "llmops_retrieval_latency_seconds",
            "histogram",
            "Knowledge-base retrieval latency per request (s).",
            BASE_TAGS,
            tuple(RETRIEVAL_BOUNDARIES_S),
        ),
        MetricSpec("llmops_cost_usd", "counter", "Token cost of requests in USD (price table).", BASE_TAGS),
        MetricSpec(
            "llmops_replica_seconds",
            "counter",
            "Replica lifetime accrued by gateway replicas, by accelerator type (s).",
            ("stack", "variant", "accelerator"),
        ),
        MetricSpec(
            "llmops_request_log_dropped",
            "counter",
            "Request-log rows dropped because the writer's queue was full.",
            ("table",),
        ),
    ]
}


def prometheus_names() -> set[str]:
    """Every series name our metrics have on a Prometheus endpoint (``ray_`` prefix added)."""
    names: set[str] = set()
    for spec in METRICS.values():
        base = f"ray_{spec.name}"
        if spec.kind == "counter":
            names.add(f"{base}_total")
        elif spec.kind == "histogram":
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count"})
        else:
            names.add(base)
    return names


def _tag(value: Any) -> str:
    """Tag values must be strings; missing ones become ``"-"`` (Ray rejects absent keys)."""
    if value is None or value == "":
        return ABSENT
    return str(value)


def status_label(status: Any) -> str:
    """The ``status`` label of an HTTP status: the code when it is one of
    :data:`STATUS_CODES`, else its class (``4xx``), else :data:`OTHER`."""
    try:
        code = int(status)
    except (TypeError, ValueError):
        return OTHER
    if code in STATUS_CODES:
        return str(code)
    if 100 <= code <= 599:
        return f"{code // 100}xx"
    return OTHER


class LabelGuard:
    """At most ``max_values`` distinct values per label name; later values map to :data:`OTHER`.

    A value once admitted stays admitted and one refused stays refused (the set only grows
    to its cap), so a request's labels are the same at its start and at its end. The
    reserved values (:data:`UNKNOWN`, :data:`OTHER`, :data:`ABSENT`) never use up the cap.
    Thread-safe; a value already seen costs one set lookup (no lock).
    """

    RESERVED = frozenset({UNKNOWN, OTHER, ABSENT})

    def __init__(self, max_values: int = DEFAULT_MAX_LABEL_VALUES) -> None:
        if max_values < 1:
            raise ValueError("max_values must be >= 1")
        self.max_values = max_values
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: Any) -> str:
        """The value to record for ``label`` (``None`` / ``""`` become :data:`ABSENT`)."""
        text = _tag(value)
        seen = self._seen.get(label)
        if text in self.RESERVED or (seen is not None and text in seen):
            return text
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if text in seen:
                return text
            if len(seen) >= self.max_values:
                return OTHER
            seen.add(text)
            return text

    def values(self, label: str) -> set[str]:
        """The values admitted for ``label`` so far (a copy)."""
        with self._lock:
            return set(self._seen.get(label, ()))


class MetricsRecorder:
    """Ray metric objects for one process (a Serve replica); create it once, in ``__init__``.

    Every method takes plain values and never raises on the request path for a bad tag:
    tag values are stringified, ``None`` becomes ``"-"``, and each label is capped at
    ``max_label_values`` distinct values (:class:`LabelGuard`).
    """

    def __init__(self, max_label_values: int = DEFAULT_MAX_LABEL_VALUES) -> None:
        from ray.util import metrics as ray_metrics

        self.labels = LabelGuard(max_label_values)

        self._m: dict[str, Any] = {}
        for spec in METRICS.values():
            if spec.kind == "counter":
                metric = ray_metrics.Counter(spec.name, spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == "histogram":
                metric = ray_metrics.Histogram(
                    spec.name, spec.description, boundaries=list(spec.boundaries), tag_keys=spec.tag_keys
                )
            else:
                metric = ray_metrics.Gauge(spec.name, spec.description, tag_keys=spec.tag_keys)
            self._m[spec.name] = metric
        # In-flight counts per (stack, model, variant): the queue-depth gauge's value.
        self._inflight: dict[str, int] = {}
        self._lock = threading.Lock()

    def tags(self, stack: Any, model: Any, variant: Any, tenant: Any) -> dict[str, str]:
        """The base tag dict for one request (each value capped by the label guard)."""
        g = self.labels
        return {"stack": g("stack", stack), "model": g("model", model), "variant": g("variant", variant),
                "tenant": g("tenant", tenant)}

    # -- per request -------------------------------------------------------------------
    def request_started(self, tags: dict[str, str]) -> None:
        """One more request in flight (queue-depth gauge, keyed by the ``stack`` tag)."""
        key = tags["stack"]
        with self._lock:
            self._inflight[key] = self._inflight.get(key, 0) + 1
            self._set_depth(key)

    def request_finished(
        self,
        tags: dict[str, str],
        status: int,
        latency_s: float,
        ttft_s: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float = 0.0,
        inflight_stack: str | None = None,
    ) -> None:
        """Record the end of a request: counts, latency, tokens, tokens/s, cost; one fewer in
        flight under ``inflight_stack`` (the ``stack`` tag it was started under; default
        ``tags["stack"]``)."""
        key = tags["stack"] if inflight_stack is None else inflight_stack
        with self._lock:
            if key in self._inflight:
                self._inflight[key] = max(0, self._inflight[key] - 1)
                self._set_depth(key)
        with_status = {**tags, "status": status_label(status)}
        self._m["llmops_requests"].inc(1, tags=with_status)
        if int(status) >= 400:
            self._m["llmops_request_errors"].inc(1, tags=with_status)
        if latency_s >= 0:
            self._m["llmops_request_latency_seconds"].observe(latency_s, tags=tags)
        if ttft_s is not None and ttft_s >= 0:
            self._m["llmops_ttft_seconds"].observe(ttft_s, tags=tags)
        if prompt_tokens > 0:
            self._m["llmops_prompt_tokens"].inc(prompt_tokens, tags=tags)
        if completion_tokens > 0:
            self._m["llmops_completion_tokens"].inc(completion_tokens, tags=tags)
            if latency_s > 0:
                self._m["llmops_output_tokens_per_second"].observe(completion_tokens / latency_s, tags=tags)
        if cost_usd > 0:
            self._m["llmops_cost_usd"].inc(cost_usd, tags=tags)

    def token_gap(self, tags: dict[str, str], gap_s: float, tokens: int = 1) -> None:
        """A streamed chunk of ``tokens`` tokens arrived ``gap_s`` after the previous one."""
        if gap_s >= 0 and tokens > 0:
            self._m["llmops_time_between_tokens_seconds"].observe(gap_s / tokens, tags=tags)

    def rail_decision(self, tags: dict[str, str], rail: str, decision: str) -> None:
        """A guardrail decided (``decision``: allow, mask, flag, block)."""
        labels = {"rail": self.labels("rail", rail), "decision": self.labels("decision", decision)}
        self._m["llmops_rail_decisions"].inc(1, tags={**tags, **labels})

    def retrieval(self, tags: dict[str, str], seconds: float) -> None:
        """A knowledge-base retrieval took ``seconds``."""
        if seconds >= 0:
            self._m["llmops_retrieval_latency_seconds"].observe(seconds, tags=tags)

    # -- per replica -------------------------------------------------------------------
    def replica_seconds(self, stack: str, variant: str, accelerator: str, seconds: float) -> None:
        """Accrue replica lifetime (for hardware cost dashboards)."""
        if seconds > 0:
            self._m["llmops_replica_seconds"].inc(
                seconds,
                tags={"stack": self.labels("stack", stack), "variant": self.labels("variant", variant),
                      "accelerator": self.labels("accelerator", accelerator)},
            )

    def log_dropped(self, table: str, count: int) -> None:
        """Request-log rows dropped by a full queue."""
        if count > 0:
            self._m["llmops_request_log_dropped"].inc(count, tags={"table": self.labels("table", table)})

    def _set_depth(self, stack: str) -> None:
        self._m["llmops_queue_depth"].set(self._inflight[stack], tags={"stack": stack})
