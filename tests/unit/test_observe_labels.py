"""Metric labels stay bounded: only resolved (configured) values, a per-label cap, status
codes from a fixed set; the in-flight gauge goes back to zero under the label it rose under."""

from __future__ import annotations

import asyncio
import random
import string
import time

from llmops_ray.common.gateway_hooks import RequestContext
from llmops_ray.observe.hook import ObserveHook, request_labels
from llmops_ray.observe.metrics import OTHER, UNKNOWN, LabelGuard, MetricsRecorder, status_label


class _Series:
    """Stands in for one Ray metric object: keeps every label set it was recorded with."""

    def __init__(self, name: str, seen: dict[str, set]):
        self.name, self.seen = name, seen
        self.values: dict[tuple, float] = {}

    def _record(self, value, tags=None):
        key = tuple(sorted((tags or {}).items()))
        self.seen.setdefault(self.name, set()).add(key)
        self.values[key] = value

    inc = observe = set = _record


def _counting(recorder: MetricsRecorder) -> dict[str, set]:
    seen: dict[str, set] = {}
    recorder._m = {name: _Series(name, seen) for name in recorder._m}
    return seen


def _random_name(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + ":/-") for _ in range(rng.randint(1, 40)))


def _hook(**kw) -> tuple[ObserveHook, dict[str, set]]:
    hook = ObserveHook(log_requests=False, **kw)
    return hook, _counting(hook.observer.metrics)


def _finish(hook: ObserveHook, ctx: RequestContext, status: int) -> dict:
    ctx.status, ctx.finished_at = status, time.perf_counter()
    return hook.record_context(ctx)


def test_random_model_names_create_a_bounded_number_of_series():
    hook, seen = _hook()
    rng = random.Random(7)
    for i in range(1000):
        name = _random_name(rng)
        ctx = RequestContext(route="chat", body={"model": name, "messages": []}, headers={})
        ctx.requested_model, ctx.tenant = name, "acme"
        asyncio.run(hook.before_request(ctx))
        # The gateway answers 404 before it resolves anything: ctx.model stays None.
        row = _finish(hook, ctx, rng.choice([404, 400, 413, 429]))
        assert (row["stack"], row["model"]) == (UNKNOWN, UNKNOWN)
    total = sum(len(s) for s in seen.values())
    # requests_total and request_errors_total: one series per status (4 statuses); latency:
    # one; queue depth: one. Before the fix: one series per random name on every metric.
    assert len(seen["llmops_requests"]) == 4 and len(seen["llmops_queue_depth"]) == 1
    assert total <= 10, {k: len(v) for k, v in seen.items()}
    assert all(dict(key)["stack"] == UNKNOWN for key in seen["llmops_requests"])


def test_the_per_label_cap_holds_even_for_resolved_values():
    # A resolver that accepts any ``base:adapter`` (Ray's object-store LoRA does) must not
    # open the door: each label keeps at most max_label_values values, then "(other)".
    hook, seen = _hook(max_label_values=16)
    rng = random.Random(3)
    for i in range(1000):
        ctx = RequestContext(route="completions", body={"prompt": "x"}, headers={})
        ctx.model = f"base:{_random_name(rng)}"
        ctx.tenant, ctx.variant = f"tenant-{i}", f"v{i}"
        asyncio.run(hook.before_request(ctx))
        _finish(hook, ctx, 200)
    for label in ("stack", "model", "tenant", "variant"):
        values = {dict(key)[label] for key in seen["llmops_requests"]}
        assert len(values) <= 16 + 1 and OTHER in values, label
    assert len(seen["llmops_requests"]) <= 17 ** 4


def test_status_label_is_a_fixed_set():
    labels = {status_label(code) for code in range(-5, 1200)} | {status_label("x"), status_label(None)}
    assert {"200", "400", "404", "413", "429", "499", "500", "503", "2xx", "4xx", "5xx", OTHER} <= labels
    assert len(labels) <= 30
    assert status_label(418) == "4xx" and status_label(999) == OTHER and status_label(503) == "503"


def test_label_guard_is_stable_and_reserves_fixed_values():
    guard = LabelGuard(max_values=2)
    assert guard("model", "a") == "a" and guard("model", "b") == "b"
    assert guard("model", "c") == OTHER
    assert guard("model", "a") == "a" and guard("model", "c") == OTHER  # the same answer every time
    assert guard("model", UNKNOWN) == UNKNOWN and guard("model", None) == "-"
    assert guard("stack", "c") == "c"  # caps are per label
    assert guard.values("model") == {"a", "b"}


def test_labels_come_from_resolved_values_only():
    ctx = RequestContext(route="chat", body={"model": "support"}, headers={})
    ctx.requested_model = "support"
    assert request_labels(ctx) == (UNKNOWN, UNKNOWN)  # never the client's text
    ctx.model = "tiny-base:ad1"
    assert request_labels(ctx) == ("tiny-base:ad1", "tiny-base:ad1")
    ctx.extra["stack"] = {"name": "support", "version": 3, "variant": "canary"}  # set by the stack hook
    assert request_labels(ctx) == ("support", "tiny-base:ad1")


def test_queue_depth_returns_to_zero_under_the_label_it_rose_under():
    hook, seen = _hook()
    gauge = hook.observer.metrics._m["llmops_queue_depth"]

    def depth(label):
        return gauge.values.get((("stack", label),))

    first = RequestContext(route="chat", body={"model": "tiny-base", "messages": []}, headers={})
    asyncio.run(hook.before_request(first))
    assert depth(UNKNOWN) == 1  # not resolved yet, and never served here: no label to trust
    first.model = "tiny-base"  # the gateway resolved it after the hooks
    row = _finish(hook, first, 200)
    assert row["stack"] == "tiny-base" and depth(UNKNOWN) == 0
    # Once served, the model's own name is a known label before resolution too.
    second = RequestContext(route="chat", body={"model": "tiny-base", "messages": []}, headers={})
    asyncio.run(hook.before_request(second))
    assert depth("tiny-base") == 1
    second.model = "tiny-base"
    _finish(hook, second, 200)
    assert depth("tiny-base") == 0 and depth(UNKNOWN) == 0
    # A request that failed before the hooks ran is counted in and out at once.
    early = RequestContext(route="chat", body={}, headers={})
    _finish(hook, early, 401)
    assert depth(UNKNOWN) == 0


def test_a_malformed_stream_options_is_not_a_hook_crash():
    # Seen: "stream_options": "x" raised AttributeError in this hook -> 500, which counted
    # against the canary. The hook leaves stream_options to the gateway's validation.
    hook, _ = _hook()
    for bad in ("x", 3, ["include_usage"]):
        ctx = RequestContext(route="chat", body={"model": "m", "stream": True, "stream_options": bad}, headers={},
                             stream=True)
        asyncio.run(hook.before_request(ctx))
        assert ctx.body["stream_options"] == bad
