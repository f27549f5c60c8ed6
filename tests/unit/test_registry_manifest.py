"""Manifest validation and the gate logic (no MLflow, no Ray)."""

from __future__ import annotations

import pytest

from llmops_ray.config import UserError
from llmops_ray.registry.gates import check_gate, evaluate_gates
from llmops_ray.registry.manifest import GateMetric, check_adapter_dir, load_manifest, split_ref

BASE = {"name": "support", "base_model": "org/model", "prompt": "qa@1"}


def test_minimal_manifest_gets_defaults():
    m = load_manifest(dict(BASE))
    assert m.adapter is None and m.kb is None
    assert m.generation.temperature == 0.0
    assert m.policy.slo.window_s == 300


@pytest.mark.parametrize(
    "extra,fragment",
    [
        ({"prompt": "qa"}, "'prompt'"),
        ({"kb": "docs"}, "'kb'"),
        ({"name": "bad name!"}, "'name'"),
        ({"generation": {"temprature": 0.1}}, "unknown key 'generation.temprature'"),
        ({"policy": {"gates": [{"metric": "f1", "direction": "up"}]}}, "direction"),
        ({"policy": {"slo": {"error_rate": 2}}}, "error_rate"),
    ],
)
def test_manifest_rejects_bad_values(extra, fragment):
    with pytest.raises(UserError) as err:
        load_manifest({**BASE, **extra})
    assert fragment in str(err.value)


def test_missing_key_and_file(tmp_path):
    with pytest.raises(UserError, match="missing key 'base_model'"):
        load_manifest({"name": "x", "prompt": "p@1"})
    with pytest.raises(UserError, match="does not exist"):
        load_manifest(tmp_path / "nope.yaml")
    path = tmp_path / "m.yaml"
    path.write_text("name: s\nbase_model: org/m\nprompt: qa@2\nkb: docs@3\n")
    assert load_manifest(path).kb == "docs@3"


def test_adapter_dir_must_be_peft(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        check_adapter_dir(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="adapter_config.json"):
        check_adapter_dir(str(tmp_path))
    (tmp_path / "adapter_config.json").write_text("{}")
    assert check_adapter_dir(str(tmp_path)) == str(tmp_path.resolve())


def test_split_ref():
    assert split_ref("support@production") == ("support", "production")
    assert split_ref("s-1.a@3") == ("s-1.a", "3")
    with pytest.raises(UserError, match="NAME@ALIAS_OR_VERSION"):
        split_ref("support")


def test_gate_higher_is_better():
    gate = GateMetric(metric="token_f1", direction="higher", threshold=0.3, tolerance=0.01)
    assert check_gate(gate, 0.5, 0.4).passed
    assert check_gate(gate, 0.395, 0.4).passed  # within tolerance
    worse = check_gate(gate, 0.35, 0.4)
    assert not worse.passed and "worse than production" in worse.reason
    below = check_gate(gate, 0.2, None)
    assert not below.passed and "below the threshold" in below.reason
    assert check_gate(gate, 0.31, None).passed
    missing = check_gate(gate, None, 0.4)
    assert not missing.passed and "no evaluation result" in missing.reason


def test_gate_lower_is_better():
    gate = GateMetric(metric="perplexity", direction="lower", threshold=100.0)
    assert check_gate(gate, 50.0, 60.0).passed
    assert not check_gate(gate, 61.0, 60.0).passed
    assert not check_gate(gate, 150.0, None).passed
    assert check_gate(gate, 60.0, 60.0).passed  # equal is not worse


def test_evaluate_gates_all_must_pass():
    gates = [GateMetric(metric="token_f1"), GateMetric(metric="smoke/perplexity", direction="lower")]
    report = evaluate_gates(gates, {"token_f1": 0.5, "smoke/perplexity": 10.0},
                            {"token_f1": 0.4, "smoke/perplexity": 9.0}, production_version=1)
    assert not report.passed
    assert report.failures() == ["smoke/perplexity: 10 is worse than production's 9 (tolerance 0)"]
    assert report.to_dict()["production_version"] == 1
    assert evaluate_gates([], {}, None).passed
