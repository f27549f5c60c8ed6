"""Canary / A-B routing of a stack between registry aliases, and automatic rollback.

* :func:`pick_variant`: weighted and sticky. The caller's identity (the request's ``user``
  field, else the API key id, else the request id) is hashed with the stack name into a
  point in [0, 1); the point falls into one variant's share of the weights. The same user
  therefore always lands on the same variant while the weights stay the same, and over
  many users the split matches the weights.
* :class:`SloWindow`: per (stack, variant) outcomes of the last ``window_s`` seconds in
  the gateway replica's memory (status, latency; bounded deque). Only outcomes the server
  is answerable for are kept: a client error (any 4xx, 499 = the client went away) never
  enters the window, so clients can neither add failures, nor make up the
  ``min_requests`` that lets one real 5xx breach, nor push real outcomes out of the deque.
* :func:`auto_rollback`: when the canary breaches the stack's SLO policy (error rate or
  p95 latency, :mod:`llmops_ray.observe.slo` definitions; a failure is what
  :func:`~llmops_ray.observe.slo.is_server_fault` says) it calls the registry's
  :func:`~llmops_ray.registry.rollback` on the ``canary`` alias (or removes the alias
  when it has no earlier version) and appends ``registry.auto_rollback`` to the audit log.
  Several gateway replicas may see the same breach: a file lock in the workspace plus a
  re-check that the alias still points at the breaching version make it happen once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections import deque
from typing import Any, Iterable

from llmops_ray.observe.slo import is_client_error

PRODUCTION = "production"
CANARY = "canary"


def stickiness_key(body: dict[str, Any], principal: Any, request_id: str) -> str:
    """Who the request is for: ``user`` field, else the API key id, else the request id."""
    user = body.get("user")
    if isinstance(user, str) and user:
        return f"user:{user}"
    key_id = getattr(principal, "key_id", None)
    if key_id:
        return f"key:{key_id}"
    return f"request:{request_id}"


def hash_point(stack: str, key: str) -> float:
    """A stable point in [0, 1) for (stack, key) (first 8 bytes of SHA-256)."""
    digest = hashlib.sha256(f"{stack}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_variant(weights: dict[str, float], point: float) -> str:
    """The variant whose cumulative share of ``weights`` (order as given) contains ``point``."""
    live = [(name, float(w)) for name, w in weights.items() if w > 0]
    if not live:
        raise ValueError("no variant has a positive weight")
    total = sum(w for _, w in live)
    acc = 0.0
    for name, w in live:
        acc += w / total
        if point < acc:
            return name
    return live[-1][0]


class SloWindow:
    """Recent outcomes per (stack, variant), for the rollback watcher (one per replica)."""

    def __init__(self, max_rows: int = 10000):
        self.max_rows = max_rows
        self._rows: dict[tuple[str, str], deque] = {}

    def add(self, stack: str, variant: str, version: int | None, status: int, latency_s: float,
            ts: float | None = None) -> bool:
        """Record one outcome; False (and nothing kept) for a client error, which is never
        the variant's fault."""
        if is_client_error(status):
            return False
        rows = self._rows.setdefault((stack, variant), deque(maxlen=self.max_rows))
        rows.append({"ts": ts if ts is not None else time.time(), "version": version, "status": int(status),
                     "latency_s": float(latency_s)})
        return True

    def rows(self, stack: str, variant: str, window_s: float, version: int | None = None,
             now: float | None = None) -> list[dict[str, Any]]:
        """Rows of the last ``window_s`` seconds (of one stack version when given)."""
        now = now if now is not None else time.time()
        rows = self._rows.get((stack, variant)) or ()
        return [r for r in rows if now - r["ts"] <= window_s and (version is None or r["version"] == version)]

    def clear(self, stack: str, variant: str) -> None:
        self._rows.pop((stack, variant), None)


def canary_breaches(rows: Iterable[dict[str, Any]], slo: Any, min_requests: int) -> tuple[list[str], dict[str, Any]]:
    """(breached target names, figures) of the canary's rows against the stack's SLO policy.

    Only ``error_rate`` and ``p95_latency_ms`` trigger a rollback (TTFT is watched by the
    SLO report, not acted on). Client errors (4xx, 499) are left out before anything is
    counted, so fewer than ``min_requests`` outcomes the server answered for breach nothing.
    """
    from llmops_ray.observe.slo import SloTargets, check_targets, slo_figures

    rows = list(rows)
    judged = [r for r in rows if not is_client_error(r.get("status"))]
    figures = slo_figures(judged)
    figures["client_errors"] = len(rows) - len(judged)
    if figures["requests"] < min_requests:
        return [], figures
    data = slo.model_dump() if hasattr(slo, "model_dump") else dict(slo or {})
    targets = SloTargets(error_rate=data.get("error_rate"), p95_latency_ms=data.get("p95_latency_ms"),
                         p95_ttft_ms=None, window_s=int(data.get("window_s") or 300))
    return check_targets(figures, targets), figures


def auto_rollback(stack: str, bad_version: int, breaches: list[str], figures: dict[str, Any],
                  alias: str = CANARY) -> dict[str, Any] | None:
    """Roll ``stack``'s ``alias`` away from ``bad_version`` once (idempotent across replicas).

    Returns the audit record, or None when another replica (or a person) already moved the
    alias. Blocking (MLflow): call it from a thread.
    """
    from llmops_ray.config import UserError, workspace_path
    from llmops_ray.common.audit import audit
    from llmops_ray.registry import resolve_stack, rollback
    from llmops_ray.registry.store import delete_alias

    lock_path = workspace_path("registry") / f"auto_rollback.{stack}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = resolve_stack(f"{stack}@{alias}").version
        except UserError:
            return None
        if current != bad_version:
            return None
        reason = f"automatic: {alias} version {bad_version} breached SLO ({', '.join(breaches)})"
        try:
            to_version: int | None = rollback(stack, alias=alias, reason=reason).version
        except UserError:
            # No earlier version of the alias: stop sending traffic to it at all.
            delete_alias(stack, alias, reason=reason)
            to_version = None
        keep = ("requests", "errors", "error_rate", "latency_p95_ms")
        return audit("registry.auto_rollback", stack=stack, alias=alias, version=to_version,
                     previous=bad_version, breaches=breaches, figures={k: figures.get(k) for k in keep},
                     reason=reason)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
