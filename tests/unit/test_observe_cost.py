"""Cost accounting: token prices, replica-seconds, aggregation, stream == non-stream."""

import pytest

from llmops_ray.config import UserError
from llmops_ray.observe.cost import (
    IDLE_TENANT,
    PriceTable,
    ReplicaMeter,
    aggregate_costs,
    hardware_cost,
    load_prices,
    token_cost,
)

PRICES = PriceTable.model_validate(
    {
        "models": {
            "support": {"prompt_per_1m": 0.5, "completion_per_1m": 1.5},
            "tiny-base": {"prompt_per_1m": 2.0, "completion_per_1m": 4.0},
        },
        "default": {"prompt_per_1m": 1.0, "completion_per_1m": 3.0},
        "hardware": {"cpu": 0.10, "L40S": 1.80},
    }
)


def test_token_cost_hand_computed_and_lookup_order():
    # 1000 * 0.5 + 2000 * 1.5 = 3500 per 1M -> 0.0035
    assert token_cost(PRICES, 1000, 2000, stack="support", model="tiny-base") == pytest.approx(0.0035)
    # unknown stack: the model's price; neither: the default
    assert token_cost(PRICES, 1000, 2000, stack="other", model="tiny-base") == pytest.approx(0.010)
    assert token_cost(PRICES, 1000, 2000, stack="other", model="x") == pytest.approx(0.007)
    assert token_cost(PRICES, 0, 0, stack="support") == 0.0
    with pytest.raises(ValueError):
        token_cost(PRICES, -1, 0)


def test_hardware_cost_and_shipped_prices():
    assert hardware_cost(PRICES, "L40S", 1800) == pytest.approx(0.9)
    assert hardware_cost(PRICES, "unknown", 3600) == 0.0
    shipped = load_prices()
    assert shipped.currency == "USD" and "cpu" in shipped.hardware
    assert load_prices(None, ["hardware.cpu=0.5"]).hardware["cpu"] == 0.5


def test_bad_price_table_is_one_clear_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("models:\n  x:\n    prompt_per_m: 1\n")
    with pytest.raises(UserError, match="unknown key 'models.x.prompt_per_m'"):
        load_prices(str(path))


def test_replica_meter_accrues_replica_seconds():
    now = [1000.0]
    meter = ReplicaMeter("support", "stable", "L40S", replicas=2, clock=lambda: now[0])
    now[0] += 10  # 2 replicas x 10 s
    meter.set_replicas(1)
    now[0] += 5  # 1 replica x 5 s
    row = meter.take()
    assert row["replica_seconds"] == pytest.approx(25.0)
    assert (row["ts_start"], row["ts_end"]) == (1000.0, 1015.0)
    assert meter.take() is None  # no time passed since
    meter.set_replicas(0)
    now[0] += 100
    assert meter.take() is None  # scaled to zero: nothing accrues


def test_aggregate_costs_shares_hardware_by_tokens_and_clips_window():
    requests = [
        {"tenant": "a", "stack": "support", "variant": "stable", "prompt_tokens": 200, "completion_tokens": 100},
        {"tenant": "b", "stack": "support", "variant": "stable", "prompt_tokens": 50, "completion_tokens": 50},
    ]
    usage = [
        # one cpu replica-hour, wholly inside the window
        {"ts_start": 100.0, "ts_end": 3700.0, "stack": "support", "variant": "stable", "accelerator": "cpu",
         "replica_seconds": 3600.0},
        # an L40S hour half inside the window (since=3700): 1800 s count
        {"ts_start": 1900.0, "ts_end": 5500.0, "stack": "idle-stack", "variant": "", "accelerator": "L40S",
         "replica_seconds": 3600.0},
    ]
    rows = aggregate_costs(requests, usage, PRICES, since=100.0 - 0, until=None)
    by = {(r["tenant"], r["stack"]): r for r in rows}
    a, b = by[("a", "support")], by[("b", "support")]
    assert a["token_cost"] == pytest.approx((200 * 0.5 + 100 * 1.5) / 1e6)
    # a used 300 of 400 tokens -> 3/4 of 0.10
    assert a["hardware_cost"] == pytest.approx(0.075)
    assert b["hardware_cost"] == pytest.approx(0.025)
    assert a["replica_seconds"] == pytest.approx(2700.0)
    idle = by[(IDLE_TENANT, "idle-stack")]
    assert idle["hardware_cost"] == pytest.approx(1.8) and idle["requests"] == 0

    clipped = aggregate_costs([], usage[1:], PRICES, since=3700.0)
    assert clipped[0]["replica_seconds"] == pytest.approx(1800.0)
    assert clipped[0]["total_cost"] == pytest.approx(0.9)
