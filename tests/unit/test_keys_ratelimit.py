"""Per-key quotas: requests/tokens per minute, daily/monthly budgets, concurrency, with
reserve-then-reconcile and Retry-After."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from llmops_ray.serve.ratelimit import KeyLimits, RateLimiter, UsageLedger, periods_of


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


NOON = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc).timestamp()


@pytest.fixture()
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture()
def wall() -> Clock:
    return Clock(NOON)


def limiter(clock, wall, **kw) -> RateLimiter:
    return RateLimiter(clock=clock, wall=wall, **kw)


def test_requests_per_minute_with_retry_after(clock, wall):
    rl = limiter(clock, wall)
    lim = KeyLimits(rpm=3)
    assert all(rl.admit("k", lim).allowed for _ in range(3))
    denied = rl.admit("k", lim)
    assert not denied.allowed and denied.reason == "requests"
    assert denied.retry_after == pytest.approx(20.0)  # one request refills in 60/3 s
    assert denied.headers()["Retry-After"] == "20"
    assert "requests per minute" in denied.message("k")
    clock.t += 19.0
    assert not rl.admit("k", lim).allowed
    clock.t += 1.0
    assert rl.admit("k", lim).allowed
    assert rl.admit("other", lim).allowed  # keys are independent


def test_reservation_is_reconciled_with_real_usage(clock, wall):
    rl = limiter(clock, wall)
    lim = KeyLimits(tpm=600)
    d = rl.admit("k", lim, tokens=500)  # prompt + max_tokens x n
    assert d.allowed and d.reserved == 500 and d.remaining_tokens == pytest.approx(100)
    refused = rl.admit("k", lim, tokens=200)
    assert not refused.allowed and refused.reason == "tokens"
    assert refused.retry_after == pytest.approx(10.0)  # 100 tokens short at 10 tokens/s
    rl.settle(d.lease, 50)  # the answer was short: 450 tokens go back
    assert rl.admit("k", lim, tokens=200).allowed
    rl.settle(d.lease, 50)  # settling twice changes nothing
    assert not rl.admit("k", lim, tokens=400).allowed


def test_tokens_served_never_exceed_the_budget_under_concurrency(clock, wall):
    """Whatever the interleaving, admitted reservations fit the daily budget, and a
    request never uses more than it reserved: the served total stays within it."""
    rl = limiter(clock, wall)
    lim = KeyLimits(tokens_per_day=1000)
    leases = []
    while True:
        d = rl.admit("k", lim, tokens=96)  # 32 prompt + 64 max_tokens
        if not d.allowed:
            assert d.reason == "day"
            break
        leases.append(d)
    assert len(leases) == 1000 // 96
    for d in leases:
        rl.settle(d.lease, 90)
    served = 90 * len(leases)
    assert served <= 1000
    more = 0
    while rl.admit("k", lim, tokens=96).allowed:
        more += 1
    assert 90 * len(leases) + 96 * more <= 1000


def test_daily_budget_resets_at_utc_midnight_and_monthly_persists(clock, wall):
    rl = limiter(clock, wall)
    lim = KeyLimits(tokens_per_day=100, tokens_per_month=150)
    d = rl.admit("k", lim, tokens=100)
    rl.settle(d.lease, 100)
    refused = rl.admit("k", lim, tokens=1)
    assert not refused.allowed and refused.reason == "day"
    assert refused.retry_after == pytest.approx(12 * 3600)  # until midnight UTC
    wall.t += 12 * 3600 + 1
    d = rl.admit("k", lim, tokens=50)
    assert d.allowed
    rl.settle(d.lease, 50)
    refused = rl.admit("k", lim, tokens=1)
    assert not refused.allowed and refused.reason == "month"


def test_concurrency_cap_frees_slots_on_settle(clock, wall):
    rl = limiter(clock, wall)
    lim = KeyLimits(max_concurrent=2)
    a, b = rl.admit("k", lim), rl.admit("k", lim)
    assert a.allowed and b.allowed
    third = rl.admit("k", lim)
    assert not third.allowed and third.reason == "concurrency"
    rl.settle(a.lease, 0)
    assert rl.admit("k", lim).allowed


def test_lost_lease_expires_and_counts_its_reservation(clock, wall):
    rl = limiter(clock, wall, lease_ttl_s=60)
    lim = KeyLimits(max_concurrent=1, tokens_per_day=1000)
    assert rl.admit("k", lim, tokens=300).allowed  # its replica dies: never settled
    assert not rl.admit("k", lim, tokens=1).allowed
    clock.t += 61
    d = rl.admit("k", lim, tokens=700)  # slot free again
    assert d.allowed
    rl.settle(d.lease, 700)
    assert not rl.admit("k", lim, tokens=1).allowed  # the lost request's 300 counted as used


def test_settled_budgets_survive_a_restarted_limiter(tmp_path, clock, wall):
    db = tmp_path / "keys.db"
    lim = KeyLimits(tokens_per_day=100)
    first = limiter(clock, wall, usage_db=str(db))
    d = first.admit("k", lim, tokens=80)
    first.settle(d.lease, 80)
    second = limiter(clock, wall, usage_db=str(db))  # the actor restarted (or another replica)
    assert not second.admit("k", lim, tokens=30).allowed
    assert second.admit("k", lim, tokens=20).allowed
    day, month = periods_of(wall.t)
    assert UsageLedger(db).usage("k") == {day: {"tokens": 80, "requests": 1}, month: {"tokens": 80, "requests": 1}}


def test_huge_request_waits_for_a_full_bucket_not_forever(clock, wall):
    rl = limiter(clock, wall)
    lim = KeyLimits(tpm=60)
    d = rl.admit("k", lim, tokens=10)
    rl.settle(d.lease, 200)  # used far beyond: debt 60-10+10-200 = -140
    refused = rl.admit("k", lim, tokens=0)
    assert not refused.allowed and refused.retry_after == pytest.approx(140.0, abs=0.01)
    clock.t += 1000
    assert rl.admit("k", lim, tokens=10_000).allowed  # capped at capacity


def test_split_mode_divides_limits(clock, wall):
    rl = limiter(clock, wall, split=2)
    assert [rl.admit("k", KeyLimits(rpm=4)).allowed for _ in range(3)] == [True, True, False]


def test_unlimited_key_is_always_allowed(clock, wall):
    rl = limiter(clock, wall)
    assert all(rl.admit("k", KeyLimits(), tokens=10**6).allowed for _ in range(1000))
