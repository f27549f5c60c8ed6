"""The shared rate limiter as a named Ray actor: every replica sees the same quotas, one
limiter per key store, and settled budgets outlive the actor."""

from __future__ import annotations

import asyncio

from llmops_ray.serve.ratelimit import KeyLimits, UsageLedger, shared_limiter


def test_shared_limiter_actor_is_global(ray_session, tmp_path):
    ray = ray_session
    db = str(tmp_path / "keys.db")
    a = shared_limiter(db, detached=False)
    b = shared_limiter(db, detached=False)  # a second replica finds the same actor
    other_store = shared_limiter(str(tmp_path / "other.db"), detached=False)
    assert ray.get(a.admit.remote("k", KeyLimits(rpm=2), 0)).allowed
    assert ray.get(b.admit.remote("k", KeyLimits(rpm=2), 0)).allowed
    denied = ray.get(a.admit.remote("k", KeyLimits(rpm=2), 0))
    assert not denied.allowed and denied.retry_after_header == "30"
    assert ray.get(other_store.admit.remote("k", KeyLimits(rpm=2), 0)).allowed  # its own quotas

    async def from_async_code():
        return await b.admit.remote("other", KeyLimits(tokens_per_day=100), 60)

    decision = asyncio.run(from_async_code())
    assert decision.allowed
    ray.get(a.settle.remote(decision.lease, 60))
    ray.kill(a, no_restart=True)
    # A new actor (Ray's restart, or the next replica that asks) reads the settled budget back.
    again = shared_limiter(db, detached=False)
    assert not ray.get(again.admit.remote("other", KeyLimits(tokens_per_day=100), 50)).allowed
    assert ray.get(again.admit.remote("other", KeyLimits(tokens_per_day=100), 40)).allowed
    assert sum(v["tokens"] for p, v in UsageLedger(db).usage("other").items() if p.startswith("d:")) == 60
    for actor in (again, other_store):
        ray.kill(actor)
