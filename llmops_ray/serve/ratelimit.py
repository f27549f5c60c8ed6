"""Per-key quotas: requests and tokens per minute, token budgets per day and month, and a
cap on concurrent requests, enforced by reserve-then-reconcile.

Admission (:meth:`RateLimiter.admit`) happens once the gateway knows what a request can
cost at most: its prompt tokens (counted with the model's tokenizer, RAG context
included) plus ``max_tokens`` x ``n``. That whole amount is *reserved*: taken from the
key's tokens-per-minute bucket and counted against the day's and month's budgets, and
the request holds one of the key's concurrency slots. When the request ends (finished,
failed or cut off by the client), :meth:`RateLimiter.settle` replaces the reservation by
the tokens really used: the difference goes back to the bucket, the budgets keep only
the real usage, the slot is freed. Because a request can never use more than it
reserved, the tokens a key is served stay within its limits whatever the concurrency,
the number of gateway replicas or whether a stream reports usage.

Buckets: each holds at most one minute's allowance (``capacity = limit``) and refills at
``limit / 60`` per second; a request larger than a whole minute's allowance waits for a
full bucket (then takes it all), never forever.

Budgets: calendar periods in UTC (``d:2026-12-05``, ``m:2026-12``). Settled usage is
written through to the key store's ``key_usage`` table (``usage_db``), so a restarted
limiter (or ``llmops keys usage``) sees what was spent; buckets and in-flight
reservations are in memory (a restart refills at most one minute's allowance).

Where it runs: one named, detached Ray actor (:func:`shared_limiter`, ``num_cpus=0``), so
a key's limits are cluster-wide and exact for any number of gateway replicas; one call per
admission and one (fire-and-forget) per settlement. ``limiter: local`` keeps a
:class:`RateLimiter` per replica with every per-minute limit divided by ``split``, for a
single replica or tests. What the gateway does when the actor cannot be reached is the key
hook's ``on_limiter_error`` (``closed``, the default: 503 with ``Retry-After``).
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

_REASONS = {
    "requests": "requests per minute",
    "tokens": "tokens per minute",
    "concurrency": "concurrent requests",
    "day": "daily token budget",
    "month": "monthly token budget",
    "too_large": "tokens per minute",
}


@dataclass(frozen=True)
class KeyLimits:
    """The limits of one key (None = unlimited)."""

    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    max_concurrent: int | None = None

    def any(self) -> bool:
        return any(v for v in (self.rpm, self.tpm, self.tokens_per_day, self.tokens_per_month, self.max_concurrent))


@dataclass(frozen=True)
class RateDecision:
    """Outcome of one admission."""

    allowed: bool
    retry_after: float = 0.0
    """Seconds until the request could be admitted (0 when allowed)."""
    reason: str = ""
    """Which limit refused: ``requests``, ``tokens``, ``concurrency``, ``day``, ``month``."""
    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    lease: str | None = None
    """Id of the reservation to settle (when allowed)."""
    reserved: int = 0
    """Tokens reserved for the request."""

    @property
    def retry_after_header(self) -> str:
        """Value of the ``Retry-After`` header: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after - 1e-9)))

    def headers(self) -> dict[str, str]:
        """Headers for a 429 (``Retry-After``) and the informative ``x-ratelimit-*`` ones."""
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
        limit = _REASONS.get(self.reason, self.reason)
        return f"rate limit exceeded: {who} is over its {limit}; retry after {self.retry_after_header} s"


class _Bucket:
    __slots__ = ("level", "stamp", "capacity")

    def __init__(self, capacity: float, now: float):
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def refill(self, capacity: float, now: float) -> None:
        self.capacity = capacity  # the key's limit may have changed: keep the level, new bound
        self.level = min(capacity, self.level + (now - self.stamp) * capacity / 60.0)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``level >= amount`` at the refill rate."""
        if self.level >= amount:
            return 0.0
        return (amount - self.level) / (self.capacity / 60.0)


@dataclass
class _Lease:
    key_id: str
    reserved: int
    periods: tuple[str, ...]
    tpm: int | None
    started: float = field(default=0.0)


def periods_of(wall: float) -> tuple[str, str]:
    """The day and month budget periods (UTC) that contain Unix time ``wall``."""
    t = datetime.fromtimestamp(wall, timezone.utc)
    return f"d:{t:%Y-%m-%d}", f"m:{t:%Y-%m}"


def seconds_to_period_end(period: str, wall: float) -> float:
    t = datetime.fromtimestamp(wall, timezone.utc)
    if period.startswith("d:"):
        end = datetime(t.year, t.month, t.day, tzinfo=timezone.utc) + timedelta(days=1)
    else:
        end = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=timezone.utc)
    return max(1.0, end.timestamp() - wall)


class UsageLedger:
    """Settled token usage per key and budget period, in the key store's SQLite file
    (table ``key_usage``); one connection per thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS key_usage (key_id TEXT NOT NULL, period TEXT NOT NULL,"
                " tokens INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,"
                " PRIMARY KEY (key_id, period))"
            )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, timeout=30.0)
        return conn

    def get(self, key_id: str, period: str) -> int:
        row = self._conn().execute(
            "SELECT tokens FROM key_usage WHERE key_id = ? AND period = ?", (key_id, period)
        ).fetchone()
        return int(row[0]) if row else 0

    def add(self, key_id: str, periods: tuple[str, ...], tokens: int) -> None:
        conn = self._conn()
        with conn:
            for period in periods:
                conn.execute(
                    "INSERT INTO key_usage (key_id, period, tokens, requests) VALUES (?, ?, ?, 1)"
                    " ON CONFLICT(key_id, period) DO UPDATE SET tokens = tokens + excluded.tokens,"
                    " requests = requests + 1",
                    (key_id, period, int(tokens)),
                )

    def usage(self, key_id: str) -> dict[str, dict[str, int]]:
        rows = self._conn().execute(
            "SELECT period, tokens, requests FROM key_usage WHERE key_id = ? ORDER BY period", (key_id,)
        ).fetchall()
        return {p: {"tokens": int(t), "requests": int(r)} for p, t, r in rows}


class RateLimiter:
    """Quotas of every key (thread-safe; also the class of the shared Ray actor).

    ``split`` divides the per-minute limits and the concurrency cap (per-replica mode);
    ``usage_db`` persists settled usage for the day/month budgets (None: in memory only);
    ``lease_ttl_s`` frees the slot of a request whose gateway replica died before settling
    (its whole reservation is then counted as used); ``clock``/``wall`` are injectable.
    """

    def __init__(self, split: int = 1, usage_db: str | None = None, lease_ttl_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        if split < 1:
            raise ValueError("split must be >= 1")
        self.split = split
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._ledger = UsageLedger(usage_db) if usage_db else None
        self._settled: dict[tuple[str, str], int] = {}  # (key, period) -> settled tokens
        self._reserved: dict[tuple[str, str], int] = {}  # (key, period) -> in-flight reservations
        self._inflight: dict[str, int] = {}
        self._leases: dict[str, _Lease] = {}

    def _bucket(self, key_id: str, kind: str, limit: int, now: float) -> _Bucket:
        capacity = limit / self.split
        bucket = self._buckets.get((key_id, kind))
        if bucket is None:
            bucket = self._buckets[(key_id, kind)] = _Bucket(capacity, now)
        else:
            bucket.refill(capacity, now)
        return bucket

    def _spent(self, key_id: str, period: str) -> int:
        if (key_id, period) not in self._settled:
            self._settled[(key_id, period)] = self._ledger.get(key_id, period) if self._ledger else 0
        return self._settled[(key_id, period)] + self._reserved.get((key_id, period), 0)

    def _expire_leases(self, now: float) -> None:
        for lease_id in [i for i, lease in self._leases.items() if now - lease.started > self.lease_ttl_s]:
            self._settle_locked(lease_id, None)

    def admit(self, key_id: str, limits: KeyLimits, tokens: int = 0) -> RateDecision:
        """Admit one request that may cost up to ``tokens`` tokens, or say how long to wait."""
        with self._lock:
            now, wall = self._clock(), self._wall()
            self._expire_leases(now)
            tokens = max(int(tokens), 0)
            waits: list[tuple[float, str]] = []
            req = tok = None
            if limits.rpm:
                req = self._bucket(key_id, "req", limits.rpm, now)
                waits.append((req.wait_for(1.0), "requests"))
            take = 0.0
            if limits.tpm:
                tok = self._bucket(key_id, "tok", limits.tpm, now)
                take = float(min(tokens, tok.capacity))
                waits.append((tok.wait_for(max(take, 1e-6)), "tokens"))
            if limits.max_concurrent:
                cap = max(1, limits.max_concurrent // self.split)
                if self._inflight.get(key_id, 0) >= cap:
                    waits.append((1.0, "concurrency"))
            day, month = periods_of(wall)
            for period, budget, reason in ((day, limits.tokens_per_day, "day"), (month, limits.tokens_per_month, "month")):
                if budget and self._spent(key_id, period) + tokens > budget:
                    waits.append((seconds_to_period_end(period, wall), reason))
            wait, reason = max(waits, default=(0.0, ""))
            if wait > 0:
                return RateDecision(False, wait, reason, req.level if req else None, tok.level if tok else None)
            if req is not None:
                req.level -= 1.0
            if tok is not None:
                tok.level -= take
            lease_id = uuid.uuid4().hex
            periods = (day, month)
            for period in periods:
                self._reserved[(key_id, period)] = self._reserved.get((key_id, period), 0) + tokens
            self._inflight[key_id] = self._inflight.get(key_id, 0) + 1
            self._leases[lease_id] = _Lease(key_id, tokens, periods, limits.tpm, now)
            return RateDecision(True, 0.0, "", req.level if req else None, tok.level if tok else None,
                                lease=lease_id, reserved=tokens)

    def settle(self, lease_id: str, used: int | None) -> None:
        """The request of ``lease_id`` ended having used ``used`` tokens (None: unknown, the
        reservation counts). Unknown or already-settled leases are ignored."""
        with self._lock:
            self._settle_locked(lease_id, used)

    def _settle_locked(self, lease_id: str, used: int | None) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        used = lease.reserved if used is None else max(int(used), 0)
        key_id = lease.key_id
        self._inflight[key_id] = max(0, self._inflight.get(key_id, 0) - 1)
        for period in lease.periods:
            self._reserved[(key_id, period)] = self._reserved.get((key_id, period), 0) - lease.reserved
            self._spent(key_id, period)  # make sure the settled total is loaded before adding
            self._settled[(key_id, period)] += used
        if self._ledger is not None:
            self._ledger.add(key_id, lease.periods, used)
        if lease.tpm:
            tok = self._bucket(key_id, "tok", lease.tpm, self._clock())
            # Give back what was reserved and not used (or charge what was used beyond it:
            # debt that later requests wait out); never above one minute's allowance.
            tok.level = min(tok.capacity, tok.level + min(lease.reserved, tok.capacity) - used)

    def inflight(self, key_id: str) -> int:
        with self._lock:
            return self._inflight.get(key_id, 0)

    def reset(self, key_id: str | None = None) -> None:
        """Forget the buckets of one key (or all); budgets already settled stay."""
        with self._lock:
            for k in [k for k in self._buckets if key_id is None or k[0] == key_id]:
                del self._buckets[k]

    def ping(self) -> bool:
        return True


LIMITER_ACTOR_NAME = "llmops-ratelimiter"
LIMITER_NAMESPACE = "llmops"


def shared_limiter(usage_db: str, namespace: str = LIMITER_NAMESPACE, detached: bool = True):
    """Handle of the cluster-wide limiter actor of the key store ``usage_db`` (created on
    first use, then found by name: one limiter per key store, so two apps with their own
    stores never share quotas or write each other's ledgers).

    ``num_cpus=0``: it does microseconds of work per call and must never wait for a core
    that vLLM holds. ``max_restarts=-1``: Ray restarts it (on another node if its node is
    gone); settled budgets come back from ``usage_db``.
    """
    import hashlib

    import ray

    name = f"{LIMITER_ACTOR_NAME}-{hashlib.sha256(str(usage_db).encode()).hexdigest()[:12]}"
    actor_cls = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1)(RateLimiter)
    options: dict[str, Any] = {"name": name, "namespace": namespace, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    return actor_cls.options(**options).remote(usage_db=usage_db)
