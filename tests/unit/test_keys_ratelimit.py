"""Per-key rate limits (requests/min, tokens/min) with Retry-After."""

from __future__ import annotations

import pytest

from llmops_ray.serve.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def test_requests_per_minute_with_retry_after(clock):
    rl = RateLimiter(clock=clock)
    assert all(rl.acquire("k", rpm=3, tpm=None).allowed for _ in range(3))
    denied = rl.acquire("k", rpm=3, tpm=None)
    assert not denied.allowed and denied.reason == "requests"
    assert denied.retry_after == pytest.approx(20.0)  # one request refills in 60/3 s
    assert denied.headers()["Retry-After"] == "20"
    assert denied.to_body("k")["error"]["code"] == "rate_limit_exceeded"
    clock.t += 19.0
    assert not rl.acquire("k", rpm=3, tpm=None).allowed
    clock.t += 1.0
    assert rl.acquire("k", rpm=3, tpm=None).allowed
    assert rl.acquire("other", rpm=3, tpm=None).allowed  # keys are independent


def test_tokens_per_minute_prompt_and_completion(clock):
    rl = RateLimiter(clock=clock)
    assert rl.acquire("k", rpm=None, tpm=600, tokens=100).allowed
    rl.commit("k", tpm=600, tokens=450)  # completion tokens after the response: level 50
    d = rl.acquire("k", rpm=None, tpm=600, tokens=200)
    assert not d.allowed and d.reason == "tokens"
    assert d.retry_after == pytest.approx(15.0)  # 150 tokens at 10 tokens/s
    assert d.retry_after_header == "15"
    clock.t += 15.0
    assert rl.acquire("k", rpm=None, tpm=600, tokens=200).allowed


def test_debt_blocks_until_repaid_and_huge_prompt_waits_for_full_bucket(clock):
    rl = RateLimiter(clock=clock)
    assert rl.acquire("k", rpm=None, tpm=60, tokens=10).allowed
    rl.commit("k", tpm=60, tokens=200)  # level 60-10-200 = -150
    d = rl.acquire("k", rpm=None, tpm=60, tokens=0)
    assert not d.allowed and d.retry_after == pytest.approx(150.0, abs=0.01)
    clock.t += 1000
    assert rl.acquire("k", rpm=None, tpm=60, tokens=10_000).allowed  # capped at capacity


def test_both_limits_report_the_longer_wait(clock):
    rl = RateLimiter(clock=clock)
    assert rl.acquire("k", rpm=1, tpm=120, tokens=120).allowed
    d = rl.acquire("k", rpm=1, tpm=120, tokens=120)
    assert not d.allowed and d.retry_after == pytest.approx(60.0)
    # a refused request takes nothing from either bucket
    clock.t += 60
    assert rl.acquire("k", rpm=1, tpm=120, tokens=120).allowed


def test_split_mode_divides_limits(clock):
    rl = RateLimiter(split=2, clock=clock)
    assert [rl.acquire("k", rpm=4, tpm=None).allowed for _ in range(3)] == [True, True, False]


def test_unlimited_key_is_always_allowed(clock):
    rl = RateLimiter(clock=clock)
    assert all(rl.acquire("k", rpm=None, tpm=None, tokens=10**6).allowed for _ in range(1000))
