"""SLO figures on a synthetic log, checked against hand-computed values."""

import pytest

from llmops_ray.config import UserError
from llmops_ray.observe.slo import SloTargets, check_targets, coerce_targets, percentile, slo_report


def _rows():
    rows = []
    # stack A, 10 requests: 8 ok with latency 100..800 ms and TTFT 10..80 ms, one 500, one 429.
    for i in range(1, 9):
        rows.append({"stack": "A", "variant": "stable" if i <= 4 else "canary", "status": 200,
                     "latency_s": i / 10, "ttft_s": i / 100})
    rows.append({"stack": "A", "variant": "canary", "status": 500, "latency_s": 9.0, "ttft_s": None})
    rows.append({"stack": "A", "variant": "stable", "status": 429, "latency_s": 0.001, "ttft_s": None})
    # stack B, 2 ok requests
    rows.append({"stack": "B", "variant": "", "status": 200, "latency_s": 0.2, "ttft_s": 0.05})
    rows.append({"stack": "B", "variant": "", "status": 200, "latency_s": 0.4, "ttft_s": 0.15})
    return rows


def test_percentile_linear_interpolation():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10, 20, 30, 40, 50], 0.95) == pytest.approx(48.0)  # 40 + 0.8 * 10


def test_slo_report_hand_computed():
    targets = {
        "A": {"error_rate": 0.05, "p95_latency_ms": 700, "p95_ttft_ms": 100, "window_s": 60},
        "default": {"error_rate": 0.01, "p95_latency_ms": 5000, "p95_ttft_ms": 1000, "availability": 0.99},
    }
    a, b = slo_report(_rows(), targets)
    assert a["stack"] == "A" and a["requests"] == 10 and a["errors"] == 1 and a["client_errors"] == 1
    assert a["error_rate"] == pytest.approx(0.1)
    assert a["availability"] == pytest.approx(0.9)
    assert a["client_error_rate"] == pytest.approx(0.1)
    # successful latencies 100..800 ms: p50 at rank 3.5 -> 450; p95 at rank 6.65 -> 765
    assert a["latency_p50_ms"] == pytest.approx(450.0)
    assert a["latency_p95_ms"] == pytest.approx(765.0)
    assert a["ttft_p50_ms"] == pytest.approx(45.0)
    assert a["ttft_p95_ms"] == pytest.approx(76.5)
    assert a["breaches"] == ["error_rate", "p95_latency_ms"] and a["ok"] is False
    assert b["stack"] == "B" and b["ok"] is True and b["breaches"] == []
    assert b["latency_p95_ms"] == pytest.approx(390.0)  # 200 + 0.95 * 200
    assert b["targets"]["availability"] == 0.99


def test_by_variant_and_registry_policy_targets():
    from llmops_ray.registry.manifest import SloTargets as RegistrySlo

    report = slo_report(_rows(), RegistrySlo(error_rate=0.2, p95_latency_ms=600, p95_ttft_ms=70), by_variant=True)
    by = {(e["stack"], e["variant"]): e for e in report}
    canary, stable = by[("A", "canary")], by[("A", "stable")]
    assert canary["requests"] == 5 and canary["error_rate"] == pytest.approx(0.2)
    # canary ok latencies 500..800: p95 at rank 2.85 -> 785 > 600; TTFT p95 78.5 > 70
    assert canary["breaches"] == ["p95_ttft_ms", "p95_latency_ms"]
    assert stable["error_rate"] == 0.0 and stable["ok"] is True


def test_targets_coercion():
    assert coerce_targets(None) == SloTargets()
    t = coerce_targets({"error_rate": 0.02, "p95_ttft_ms": 500, "future_key": 1})
    assert t.error_rate == 0.02 and t.p95_ttft_ms == 500
    with pytest.raises(UserError):
        coerce_targets({"error_rate": 2.0})
    assert check_targets({"error_rate": None, "ttft_p95_ms": None}, SloTargets()) == []
    assert slo_report([], SloTargets()) == []
