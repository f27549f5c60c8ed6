"""The shared rate limiter as a named Ray actor: every replica sees the same buckets."""

from __future__ import annotations

import asyncio

from llmops_ray.serve.ratelimit import shared_limiter


def test_shared_limiter_actor_is_global(ray_session):
    ray = ray_session
    a = shared_limiter(name="test-limiter", detached=False)
    b = shared_limiter(name="test-limiter", detached=False)  # a second replica finds the same actor
    assert ray.get(a.acquire.remote("k", 2, None, 0)).allowed
    assert ray.get(b.acquire.remote("k", 2, None, 0)).allowed
    denied = ray.get(a.acquire.remote("k", 2, None, 0))
    assert not denied.allowed and denied.retry_after_header == "30"

    async def from_async_code():
        return await b.acquire.remote("other", None, 100, 50)

    assert asyncio.run(from_async_code()).allowed
    ray.kill(a)
