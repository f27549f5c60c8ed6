"""Pairwise evaluation pieces: win rate with ties as half, position-swapped judging, the
``pairwise`` suite item, the win-rate gate, and implicit reward accuracy."""

from __future__ import annotations

import pytest

from llmops_ray.config import UserError
from llmops_ray.evaluate.pairwise import judge_pairs, win_rate
from llmops_ray.registry.gates import evaluate_gates
from llmops_ray.registry.manifest import GateMetric


def test_win_rate_counts_ties_half_and_drops_undecided():
    out = win_rate(["first", "first", "second", "tie", "inconsistent", "undecided"])
    assert out["win_rate"] == pytest.approx(2.5 / 4)
    assert (out["wins"], out["losses"], out["ties"], out["inconsistent"], out["undecided"]) == (2, 1, 1, 1, 1)
    assert win_rate(["undecided"])["win_rate"] is None


def _judge_preferring(marker: str, position_bias: bool = False):
    """A judge that picks the answer containing ``marker`` (or always 'A' when biased)."""
    def ask(text: str) -> str:
        if position_bias:
            return "Verdict: A"
        a = text.split("ANSWER A:\n", 1)[1].split("\n\nANSWER B:", 1)[0]
        b = text.split("ANSWER B:\n", 1)[1]
        if (marker in a) == (marker in b):
            return "Verdict: tie"
        return "Verdict: A" if marker in a else "Verdict: B"
    return ask


def test_judging_in_both_orders_cancels_position_bias():
    cases = [{"prompt": "q1", "candidate": "cited [1]", "baseline": "no source"},
             {"prompt": "q2", "candidate": "plain", "baseline": "cited [1]"},
             {"prompt": "q3", "candidate": "both [1]", "baseline": "also [1]"}]
    summary, rows = judge_pairs(_judge_preferring("[1]"), cases)
    assert [r["outcome"] for r in rows] == ["first", "second", "tie"]
    assert summary["win_rate"] == pytest.approx(0.5)
    biased, _ = judge_pairs(_judge_preferring("[1]", position_bias=True), cases)
    assert biased["inconsistent"] == 3 and biased["win_rate"] is None  # a judge that follows A is never believed


def test_pairwise_items_need_a_judge(tmp_path):
    from llmops_ray.evaluate.suite import load_suite

    path = tmp_path / "pw.yaml"
    path.write_text("name: pw\nitems:\n  - type: pairwise\n    prompt: How long is the warranty?\n")
    with pytest.raises((UserError, ValueError), match="judge"):
        load_suite(path)
    path.write_text("name: pw\njudge: {base_url: 'http://127.0.0.1:9/v1', model: m}\nheldout_pairs: p.jsonl\n"
                    "items:\n  - type: pairwise\n    prompt: How long is the warranty?\n")
    suite = load_suite(path)
    assert suite.of_type("pairwise")[0].prompt.startswith("How long") and suite.heldout_pairs == "p.jsonl"


def test_win_rate_gate_is_relative_to_production():
    gates = [GateMetric(metric="win_rate", threshold=0.5), GateMetric(metric="token_f1", tolerance=0.05)]
    # No production yet: there is nothing to win against, so win_rate cannot block.
    first = evaluate_gates(gates, {"token_f1": 0.4}, None)
    assert first.passed, first.failures()
    # With production: the candidate's win rate is against production; production's own
    # stored win rate (measured against its predecessor) is not a bar.
    ok = evaluate_gates(gates, {"win_rate": 0.6, "token_f1": 0.4}, {"win_rate": 0.9, "token_f1": 0.42}, 1)
    assert ok.passed, ok.failures()
    lost = evaluate_gates(gates, {"win_rate": 0.3, "token_f1": 0.4}, {"token_f1": 0.4}, 1)
    assert not lost.passed and "win_rate" in lost.failures()[0]
    missing = evaluate_gates(gates, {"token_f1": 0.4}, {"token_f1": 0.4}, 1)
    assert not missing.passed  # production exists, so a win rate must have been measured


def test_reward_accuracy_counts_ties_half():
    from llmops_ray.models.preference import reward_accuracy

    assert reward_accuracy([(1.0, 0.0), (0.0, 1.0), (0.2, 0.2), (0.5, -0.5)]) == pytest.approx(2.5 / 4)
    with pytest.raises(ValueError):
        reward_accuracy([])
