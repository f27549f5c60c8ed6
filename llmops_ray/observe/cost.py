"""Cost accounting: token cost per request and hardware cost from replica-seconds.

Two sources of cost, both per tenant, stack and variant:

* tokens: ``prompt_tokens * prompt_price + completion_tokens * completion_price`` (prices per
  1M tokens, from the price table). The cost function takes only the counted tokens, so a
  streamed response costs exactly what the same non-streamed one does.
* hardware: replica-seconds (accrued by :class:`ReplicaMeter` and written to the
  ``replica_usage`` log table) times the accelerator's price per replica-hour. A stack's
  hardware cost in a window is shared among the tenants that used it in proportion to their
  tokens; with no traffic it is reported under the tenant ``(idle)``.

The price table is a config (``llmops_ray/configs/prices.yaml`` by default, or any YAML file
through ``--prices``).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Iterable

from llmops_ray.config import StrictModel, load_config

#: Name of the tenant that hardware cost of an unused stack is reported under.
IDLE_TENANT = "(idle)"


class TokenPrice(StrictModel):
    """Token prices of one model or stack."""

    prompt_per_1m: float = 0.0
    """Price of one million prompt (input) tokens, in the table's currency."""
    completion_per_1m: float = 0.0
    """Price of one million completion (output) tokens, in the table's currency."""


class PriceTable(StrictModel):
    """Token prices per stack / model and hardware prices per accelerator type."""

    currency: str = "USD"
    """Currency every price in this table is in (reports show it; no conversion happens)."""
    models: dict[str, TokenPrice] = {}
    """Token prices keyed by stack name or model name; a request is priced by its stack first,
    then its model, then ``default``."""
    default: TokenPrice = TokenPrice()
    """Token prices of stacks and models that ``models`` does not list."""
    hardware: dict[str, float] = {"cpu": 0.0}
    """Price of one replica-hour by accelerator type (``cpu``, ``L40S``, ``A100``, ``H100``...);
    ``default`` (if present) prices types that are not listed, else they cost 0."""


def load_prices(name_or_path: str | None = None, overrides: Iterable[str] = ()) -> PriceTable:
    """The price table from a YAML file, or the shipped ``prices`` config."""
    return load_config(PriceTable, name_or_path or "prices", overrides)


def token_price(prices: PriceTable, stack: str | None = None, model: str | None = None) -> TokenPrice:
    """The token prices that apply to a request: by stack, then model, then the default."""
    for key in (stack, model):
        if key and key in prices.models:
            return prices.models[key]
    return prices.default


def token_cost(
    prices: PriceTable,
    prompt_tokens: int,
    completion_tokens: int,
    stack: str | None = None,
    model: str | None = None,
) -> float:
    """Cost of one request from its counted tokens only (stream or not does not matter)."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts must be >= 0")
    price = token_price(prices, stack, model)
    return (prompt_tokens * price.prompt_per_1m + completion_tokens * price.completion_per_1m) / 1_000_000


def hardware_cost(prices: PriceTable, accelerator: str, replica_seconds: float) -> float:
    """Cost of ``replica_seconds`` of one replica on ``accelerator``."""
    per_hour = prices.hardware.get(accelerator, prices.hardware.get("default", 0.0))
    return per_hour * replica_seconds / 3600.0


class ReplicaMeter:
    """Accrues replica-seconds of one (stack, variant, accelerator) deployment.

    ``replicas`` is how many replicas run now (set it when autoscaling changes it);
    :meth:`take` returns one ``replica_usage`` row covering the time since the last take
    (``replicas * elapsed`` seconds), or ``None`` when nothing accrued.
    """

    def __init__(
        self,
        stack: str,
        variant: str = "",
        accelerator: str = "cpu",
        replicas: int = 1,
        replica_id: str = "",
        clock=time.time,
    ) -> None:
        self.stack, self.variant, self.accelerator, self.replica_id = stack, variant, accelerator, replica_id
        self._clock = clock
        self._replicas = max(0, int(replicas))
        self._last = self._period_start = clock()  # last accrual / start of the open period
        self._pending = 0.0  # replica-seconds accrued since the period started
        self._lock = threading.Lock()

    def set_replicas(self, replicas: int) -> None:
        """The replica count changed: accrue up to now at the old count, then switch."""
        with self._lock:
            now = self._clock()
            self._pending += self._replicas * (now - self._last)
            self._last, self._replicas = now, max(0, int(replicas))

    def take(self) -> dict[str, Any] | None:
        """A usage row for the time since the previous take (and start a new period), or None."""
        with self._lock:
            now = self._clock()
            seconds = self._pending + self._replicas * (now - self._last)
            start = self._period_start
            self._pending, self._last, self._period_start = 0.0, now, now
        if seconds <= 0:
            return None
        return {
            "ts_start": start,
            "ts_end": now,
            "stack": self.stack,
            "variant": self.variant,
            "accelerator": self.accelerator,
            "replica_id": self.replica_id,
            "replica_seconds": seconds,
        }


def _overlap(start: float, end: float, since: float | None, until: float | None) -> float:
    """Fraction of [start, end] inside [since, until] (1.0 for a zero-length period inside)."""
    lo = max(start, since) if since is not None else start
    hi = min(end, until) if until is not None else end
    if end <= start:
        return 1.0 if lo <= start <= hi else 0.0
    return max(0.0, hi - lo) / (end - start)


COST_COLUMNS = [
    "tenant",
    "stack",
    "variant",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "token_cost",
    "replica_seconds",
    "hardware_cost",
    "total_cost",
]


def aggregate_costs(
    requests: Iterable[dict[str, Any]],
    usage: Iterable[dict[str, Any]],
    prices: PriceTable,
    since: float | None = None,
    until: float | None = None,
) -> list[dict[str, Any]]:
    """Cost rows per (tenant, stack, variant), sorted by total cost (highest first).

    ``requests`` are request-log rows (``tenant``, ``stack``, ``model``, ``variant``,
    ``prompt_tokens``, ``completion_tokens``), already filtered to the window; token cost is
    recomputed from their tokens with ``prices``. ``usage`` rows (``replica_usage`` table)
    are clipped to ``[since, until]``; their hardware cost is shared among the tenants of the
    same (stack, variant) by token share.
    """
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def row(tenant: str, stack: str, variant: str) -> dict[str, Any]:
        key = (tenant, stack, variant)
        if key not in rows:
            rows[key] = {c: 0 for c in COST_COLUMNS} | {"tenant": tenant, "stack": stack, "variant": variant}
            rows[key].update(token_cost=0.0, replica_seconds=0.0, hardware_cost=0.0, total_cost=0.0)
        return rows[key]

    tokens_by_sv: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for req in requests:
        tenant, stack, variant = req.get("tenant") or "-", req.get("stack") or "-", req.get("variant") or ""
        p, c = int(req.get("prompt_tokens") or 0), int(req.get("completion_tokens") or 0)
        r = row(tenant, stack, variant)
        r["requests"] += 1
        r["prompt_tokens"] += p
        r["completion_tokens"] += c
        r["token_cost"] += token_cost(prices, p, c, stack=stack, model=req.get("model"))
        tokens_by_sv[(stack, variant)][tenant] += p + c

    for use in usage:
        share = _overlap(float(use["ts_start"]), float(use["ts_end"]), since, until)
        if share <= 0:
            continue
        stack, variant = use.get("stack") or "-", use.get("variant") or ""
        seconds = float(use["replica_seconds"]) * share
        cost = hardware_cost(prices, use.get("accelerator") or "cpu", seconds)
        tenants = tokens_by_sv.get((stack, variant)) or {}
        total_tokens = sum(tenants.values())
        if total_tokens <= 0:
            # No tokens (or no traffic): the whole period is idle cost of the stack.
            tenants, total_tokens = {IDLE_TENANT: 1}, 1
        for tenant, tokens in tenants.items():
            r = row(tenant, stack, variant)
            r["replica_seconds"] += seconds * tokens / total_tokens
            r["hardware_cost"] += cost * tokens / total_tokens

    out = list(rows.values())
    for r in out:
        r["total_cost"] = r["token_cost"] + r["hardware_cost"]
    out.sort(key=lambda r: (-r["total_cost"], r["tenant"], r["stack"], r["variant"]))
    return out
