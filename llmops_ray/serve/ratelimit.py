"""Per-key rate limits: requests per minute and tokens per minute, with ``Retry-After``.

Algorithm: two token buckets per key. Each holds at most one minute's allowance
(``capacity = limit``) and refills continuously at ``limit / 60`` per second, so a key may
burst up to its per-minute limit and is then held to the average rate.

- ``acquire(key_id, rpm, tpm, tokens)`` at admission takes 1 request and the request's
  *prompt* tokens (known before generation). If either bucket is short, nothing is taken
  and the decision carries ``retry_after``: the seconds until both buckets would cover
  the request (what the 429's ``Retry-After`` header says, rounded up).
- ``commit(key_id, tpm, tokens)`` after the response charges the *completion* tokens.
  The bucket may go negative ("debt"): the next requests of that key wait until it has
  refilled, so the token rate holds over time without guessing output lengths up front.

Where the limiter runs (several gateway replicas): **one shared Ray actor** by default
(:func:`shared_limiter`: a named, detached actor with ``num_cpus=0``, created by the first
replica that asks and found by the others), so a key's limit is global and exact whatever
the number of replicas; one ``acquire`` is one actor call (~0.3-1 ms, awaited
asynchronously by the gateway), far below a generation. The alternative for very high
request rates is a :class:`RateLimiter` inside each replica with ``split=<replicas>``:
no network hop, but each replica enforces ``limit / replicas``, which is exact only when
the proxy spreads a key's requests evenly. Both use the same class, so switching is one
line. State is in memory: a restarted limiter starts with full buckets (fail-open for
at most one minute of allowance), which is acceptable for quotas that are per minute.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class RateDecision:
    """Outcome of one admission check."""

    allowed: bool
    retry_after: float = 0.0
    """Seconds until the request would be admitted (0 when allowed)."""
    reason: str = ""
    """``requests`` or ``tokens``: which limit refused (empty when allowed)."""
    remaining_requests: float | None = None
    remaining_tokens: float | None = None

    @property
    def retry_after_header(self) -> str:
        """Value of the ``Retry-After`` header: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after - 1e-9)))

    def headers(self) -> dict[str, str]:
        """Response headers for a 429 (and informative ``x-ratelimit-*`` ones)."""
        out: dict[str, str] = {}
        if not self.allowed:
            out["Retry-After"] = self.retry_after_header
        if self.remaining_requests is not None:
            out["x-ratelimit-remaining-requests"] = str(max(0, int(self.remaining_requests)))
        if self.remaining_tokens is not None:
            out["x-ratelimit-remaining-tokens"] = str(max(0, int(self.remaining_tokens)))
        return out

    def message(self, key_id: str = "") -> str:
        who = f"API key {key_id}" if key_id else "API key"
        limit = "requests per minute" if self.reason == "requests" else "tokens per minute"
        return f"rate limit exceeded: {who} is over its {limit}; retry after {self.retry_after_header} s"

    def to_body(self, key_id: str = "") -> dict[str, Any]:
        """OpenAI error body for the 429."""
        return {"error": {"message": self.message(key_id), "type": "rate_limit_error", "param": None,
                          "code": "rate_limit_exceeded"}}


class _Bucket:
    __slots__ = ("level", "stamp", "capacity")

    def __init__(self, capacity: float, now: float):
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def refill(self, capacity: float, now: float) -> None:
        if capacity != self.capacity:  # the key's limit changed: keep the level, new bound
            self.capacity = capacity
        rate = capacity / 60.0
        self.level = min(capacity, self.level + (now - self.stamp) * rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``level >= amount`` at the refill rate."""
        if self.level >= amount:
            return 0.0
        return (amount - self.level) / (self.capacity / 60.0)


class RateLimiter:
    """Token buckets per key (thread-safe; also usable as a Ray actor class).

    ``split`` divides every limit (per-replica mode); ``clock`` is injectable for tests.
    """

    def __init__(self, split: int = 1, clock: Callable[[], float] = time.monotonic):
        if split < 1:
            raise ValueError("split must be >= 1")
        self.split = split
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, key_id: str, kind: str, limit: int, now: float) -> _Bucket:
        capacity = limit / self.split
        bucket = self._buckets.get((key_id, kind))
        if bucket is None:
            bucket = self._buckets[(key_id, kind)] = _Bucket(capacity, now)
        else:
            bucket.refill(capacity, now)
        return bucket

    def acquire(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int = 0) -> RateDecision:
        """Admit one request of ``tokens`` prompt tokens, or say how long to wait."""
        with self._lock:
            now = self._clock()
            waits: list[tuple[float, str]] = []
            req = tok = None
            if rpm:
                req = self._bucket(key_id, "req", rpm, now)
                waits.append((req.wait_for(1.0), "requests"))
            need = 0.0
            if tpm:
                tok = self._bucket(key_id, "tok", tpm, now)
                # A prompt larger than a minute's allowance waits for a full bucket, not forever;
                # a bucket in debt (<= 0) admits nothing until it is positive again.
                need = float(min(max(tokens, 0), tok.capacity))
                waits.append((tok.wait_for(max(need, 1e-6)), "tokens"))
            wait, reason = max(waits, default=(0.0, ""))
            if wait > 0:
                return RateDecision(False, wait, reason,
                                    req.level if req else None, tok.level if tok else None)
            if req is not None:
                req.level -= 1.0
            if tok is not None:
                tok.level -= need
            return RateDecision(True, 0.0, "", req.level if req else None, tok.level if tok else None)

    def commit(self, key_id: str, tpm: int | None, tokens: int) -> None:
        """Charge tokens used after admission (completion tokens); may leave the bucket in debt.

        A negative ``tokens`` refunds an over-estimate taken at admission (never above capacity).
        """
        if not tpm or not tokens:
            return
        with self._lock:
            tok = self._bucket(key_id, "tok", tpm, self._clock())
            tok.level = min(tok.capacity, tok.level - float(tokens))

    def reset(self, key_id: str | None = None) -> None:
        """Forget the buckets of one key (or all)."""
        with self._lock:
            if key_id is None:
                self._buckets.clear()
            else:
                for kind in ("req", "tok"):
                    self._buckets.pop((key_id, kind), None)


LIMITER_ACTOR_NAME = "llmops-ratelimiter"
LIMITER_NAMESPACE = "llmops"


def shared_limiter(name: str = LIMITER_ACTOR_NAME, namespace: str = LIMITER_NAMESPACE, detached: bool = True):
    """Handle of the cluster-wide limiter actor (created on first use, then found by name).

    ``num_cpus=0``: it does microseconds of work per call and must never wait for a core
    that vLLM holds. Calls: ``await handle.acquire.remote(key_id, rpm, tpm, tokens)`` ->
    :class:`RateDecision`; ``handle.commit.remote(key_id, tpm, tokens)`` (fire and forget).
    """
    import ray

    actor_cls = ray.remote(num_cpus=0, max_restarts=-1)(RateLimiter)
    options: dict[str, Any] = {"name": name, "namespace": namespace, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    return actor_cls.options(**options).remote()
