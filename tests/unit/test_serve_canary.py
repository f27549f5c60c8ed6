"""A client cannot roll back a canary: only server faults (5xx) count towards the automatic
rollback; client errors (4xx, 499 = disconnected) neither fail the canary, nor make up the
minimum number of requests, nor push real outcomes out of the window. No Ray, no MLflow:
the registry rollback is replaced by a recorder."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmops_ray.common.gateway_hooks import RequestContext
from llmops_ray.observe.slo import is_client_error, is_server_fault, slo_figures
from llmops_ray.registry.manifest import StackManifest
from llmops_ray.registry.store import StackVersion
from llmops_ray.serve import stacks as stacks_module
from llmops_ray.serve.canary import SloWindow, canary_breaches
from llmops_ray.serve.stacks import StackHook

CLIENT_STATUSES = (400, 404, 413, 429, 499)
SLO = {"error_rate": 0.01, "p95_latency_ms": 5000, "window_s": 300}


def _version(version: int, base) -> StackVersion:
    manifest = StackManifest(name="s", base_model=str(base), prompt="qa@1", policy={"slo": SLO})
    return StackVersion(name="s", version=version, manifest=manifest)


@pytest.fixture
def hook(tmp_path, monkeypatch):
    """A stack hook whose canary (v2) and production (v1) are known, and whose registry
    rollback only records the call."""
    calls = []
    monkeypatch.setattr(stacks_module, "auto_rollback",
                        lambda stack, version, breaches, figures, alias: calls.append((stack, version, breaches)) or {})
    hook = StackHook(stacks={"s": {"variants": {"production": 90, "canary": 10}}}, watch={"enabled": False})
    found = {"production": _version(1, tmp_path), "canary": _version(2, tmp_path)}
    hook._cache["s"] = (time.monotonic(), found)
    monkeypatch.setattr(hook, "_resolve_all", lambda stack: found)
    hook.rollbacks = calls
    return hook


def _serve(hook: StackHook, statuses) -> None:
    """Outcomes of canary requests as the gateway reports them (``after_response``)."""
    for status in statuses:
        ctx = RequestContext(route="chat", body={}, headers={})
        ctx.variant, ctx.extra["stack"] = "canary", {"name": "s", "version": 2, "variant": "canary"}
        ctx.status, ctx.finished_at = status, ctx.started + 0.05
        asyncio.run(hook.after_response(ctx))


def test_twenty_client_errors_do_not_roll_back(hook):
    _serve(hook, [CLIENT_STATUSES[i % len(CLIENT_STATUSES)] for i in range(20)])
    assert asyncio.run(hook.check_canary("s")) is None
    assert hook.rollbacks == []


def test_client_errors_do_not_make_up_the_minimum_for_one_server_fault(hook):
    # 19 bad requests from a client + 1 real 5xx: before, 20 requests at 5 % errors
    # breached the 1 % target; now there is 1 request the server answered for (< 20).
    _serve(hook, [CLIENT_STATUSES[i % len(CLIENT_STATUSES)] for i in range(19)] + [500])
    assert asyncio.run(hook.check_canary("s")) is None
    assert hook.rollbacks == []


def test_twenty_server_faults_roll_back(hook):
    _serve(hook, [500, 503] * 10)
    assert asyncio.run(hook.check_canary("s")) == {}
    assert hook.rollbacks == [("s", 2, ["error_rate"])]


def test_server_faults_among_client_errors_still_roll_back(hook):
    _serve(hook, [429] * 50 + [503] * 20)  # a client flood does not dilute real failures
    asyncio.run(hook.check_canary("s"))
    assert hook.rollbacks == [("s", 2, ["error_rate"])]


def test_client_errors_never_push_real_outcomes_out_of_the_window():
    window = SloWindow(max_rows=20)
    for _ in range(20):
        window.add("s", "canary", 2, 503, 0.01)
    for _ in range(1000):
        assert window.add("s", "canary", 2, 404, 0.01) is False
    rows = window.rows("s", "canary", 300, version=2)
    assert len(rows) == 20 and all(r["status"] == 503 for r in rows)
    breaches, figures = canary_breaches(rows, SLO, min_requests=20)
    assert breaches == ["error_rate"] and figures["errors"] == 20


def test_canary_breaches_ignores_client_rows_it_is_given():
    rows = [{"status": s, "latency_s": 30.0} for s in CLIENT_STATUSES * 4]
    breaches, figures = canary_breaches(rows, SLO, min_requests=20)
    assert breaches == [] and figures["requests"] == 0 and figures["client_errors"] == 20


def test_one_definition_of_a_server_fault():
    assert [s for s in (200, 201, 400, 404, 413, 429, 499, 500, 502, 503, 504) if is_server_fault(s)] == [
        500, 502, 503, 504]
    assert all(is_client_error(s) and not is_server_fault(s) for s in CLIENT_STATUSES)
    assert not is_server_fault(None) and not is_server_fault("x") and is_server_fault("503")
    figures = slo_figures([{"status": s, "latency_s": 0.1} for s in (200, 499, 500)])
    assert (figures["errors"], figures["client_errors"]) == (1, 1)
