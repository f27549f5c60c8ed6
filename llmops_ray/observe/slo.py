"""SLO report: availability, error rate, p50/p95 TTFT and latency per stack over a window,
against the stack's policy targets.

Definitions (request-based, over the request-log rows of the window):

* ``error_rate`` = requests with status >= 500 / all requests (server failures, decided by
  :func:`is_server_fault`, the one definition the canary rollback uses too; 4xx are the
  client's: bad input, auth, quota, too large, blocked content, 499 = the client went away;
  reported as ``client_error_rate``);
* ``availability`` = 1 - ``error_rate``;
* TTFT and latency percentiles over successful requests (status < 400) only, by linear
  interpolation between closest ranks (numpy's default): for sorted values ``v[0..n-1]``,
  ``p(q) = v[i] + (v[i+1] - v[i]) * f`` with ``i + f = q * (n - 1)``. Milliseconds.

Targets are the registry's ``policy.slo`` (``error_rate``, ``p95_latency_ms``,
``p95_ttft_ms``, ``window_s``), passed as a dict or any pydantic model; keys this module
does not know are ignored so that the policy can grow.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from pydantic import Field

from llmops_ray.config import StrictModel, build_config


class SloTargets(StrictModel):
    """Targets one stack is held to (the registry's ``policy.slo`` keys, plus optional ones)."""

    error_rate: float | None = Field(0.01, ge=0.0, le=1.0)
    """Largest fraction of requests failing with a 5xx; none = not checked."""
    availability: float | None = Field(None, ge=0.0, le=1.0)
    """Smallest fraction of requests answered without a 5xx; none = not checked."""
    p95_ttft_ms: float | None = Field(1000.0, gt=0.0)
    """95th percentile time to first token, milliseconds; none = not checked."""
    p50_ttft_ms: float | None = Field(None, gt=0.0)
    """Median time to first token, milliseconds; none = not checked."""
    p95_latency_ms: float | None = Field(5000.0, gt=0.0)
    """95th percentile end-to-end latency, milliseconds; none = not checked."""
    p50_latency_ms: float | None = Field(None, gt=0.0)
    """Median end-to-end latency, milliseconds; none = not checked."""
    window_s: int = Field(300, ge=1)
    """Window the targets are measured over, seconds (used when no explicit window is given)."""


def is_server_fault(status: Any) -> bool:
    """Whether a response status is the server's failure (5xx, or any status above).

    The one test of "counts against availability / an automatic rollback": every 4xx is the
    client's (malformed body, bad key, quota, 413, 429) and so is 499, a client that went
    away before the answer was complete. A missing or unreadable status is no fault.
    """
    try:
        return int(status) >= 500
    except (TypeError, ValueError):
        return False


def is_client_error(status: Any) -> bool:
    """Whether a response status is the client's doing (400..499, 499 = client disconnected)."""
    try:
        return 400 <= int(status) < 500
    except (TypeError, ValueError):
        return False


def coerce_targets(targets: Any) -> SloTargets:
    """:class:`SloTargets` from a dict, a pydantic model (e.g. the registry's) or None."""
    if targets is None:
        return SloTargets()
    if isinstance(targets, SloTargets):
        return targets
    if hasattr(targets, "model_dump"):
        targets = targets.model_dump()
    if not isinstance(targets, dict):
        raise TypeError(f"SLO targets must be a mapping, got {type(targets).__name__}")
    known = {k: v for k, v in targets.items() if k in SloTargets.model_fields}
    return build_config(SloTargets, known, "SLO targets")


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    data = sorted(values)
    pos = q * (len(data) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def slo_figures(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The SLO figures of one group of request-log rows."""
    total = errors = client_errors = 0
    ttft: list[float] = []
    latency: list[float] = []
    for r in rows:
        total += 1
        status = r.get("status")
        if is_server_fault(status):
            errors += 1
        elif is_client_error(status):
            client_errors += 1
        else:
            if r.get("latency_s") is not None and not _nan(r["latency_s"]):
                latency.append(float(r["latency_s"]) * 1000.0)
            if r.get("ttft_s") is not None and not _nan(r["ttft_s"]):
                ttft.append(float(r["ttft_s"]) * 1000.0)
    return {
        "requests": total,
        "errors": errors,
        "client_errors": client_errors,
        "error_rate": errors / total if total else None,
        "client_error_rate": client_errors / total if total else None,
        "availability": 1.0 - errors / total if total else None,
        "ttft_p50_ms": percentile(ttft, 0.50),
        "ttft_p95_ms": percentile(ttft, 0.95),
        "latency_p50_ms": percentile(latency, 0.50),
        "latency_p95_ms": percentile(latency, 0.95),
    }


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# (figure, target, direction): a breach when the figure is above ("max") / below ("min").
_CHECKS = [
    ("error_rate", "error_rate", "max"),
    ("availability", "availability", "min"),
    ("ttft_p95_ms", "p95_ttft_ms", "max"),
    ("ttft_p50_ms", "p50_ttft_ms", "max"),
    ("latency_p95_ms", "p95_latency_ms", "max"),
    ("latency_p50_ms", "p50_latency_ms", "max"),
]


def check_targets(figures: dict[str, Any], targets: SloTargets) -> list[str]:
    """Names of the targets the figures breach (figures without data breach nothing)."""
    breaches = []
    for figure, target, direction in _CHECKS:
        bound, value = getattr(targets, target), figures.get(figure)
        if bound is None or value is None:
            continue
        if (direction == "max" and value > bound) or (direction == "min" and value < bound):
            breaches.append(target)
    return breaches


def slo_report(
    rows: Iterable[dict[str, Any]],
    targets: dict[str, Any] | Any = None,
    by_variant: bool = False,
) -> list[dict[str, Any]]:
    """One entry per stack (or per stack and variant) with figures, targets and breaches.

    ``targets`` is a mapping ``stack -> targets`` (dict / model; key ``"default"`` for stacks
    not listed) or one targets object for every stack. Rows must already be the window's.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        key = (r.get("stack") or "-", r.get("variant") or "") if by_variant else (r.get("stack") or "-",)
        groups[key].append(r)
    report = []
    for key in sorted(groups):
        stack_targets = coerce_targets(_targets_for(targets, key[0]))
        figures = slo_figures(groups[key])
        breaches = check_targets(figures, stack_targets)
        entry: dict[str, Any] = {"stack": key[0]}
        if by_variant:
            entry["variant"] = key[1]
        entry.update(figures)
        entry["targets"] = stack_targets.model_dump(exclude_none=True)
        entry["breaches"] = breaches
        entry["ok"] = not breaches
        report.append(entry)
    return report


def _targets_for(targets: Any, stack: str) -> Any:
    """The targets of ``stack`` from a per-stack mapping, or ``targets`` itself."""
    if isinstance(targets, dict) and targets and all(isinstance(v, (dict, StrictModel)) or hasattr(v, "model_dump") for v in targets.values()):
        if stack in targets:
            return targets[stack]
        return targets.get("default")
    return targets
