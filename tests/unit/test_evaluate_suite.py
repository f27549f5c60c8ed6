"""Suite loading (YAML/JSONL, shipped names), clear errors, and scoring without an engine."""

from __future__ import annotations

import json

import pytest

from llmops_ray.config import UserError
from llmops_ray.evaluate.run import score_suite
from llmops_ray.evaluate.suite import SUITES_DIR, Suite, load_suite


def test_every_shipped_suite_loads_and_starts_with_a_comment():
    paths = sorted(SUITES_DIR.glob("*.yaml")) + sorted(SUITES_DIR.glob("*.jsonl"))
    assert paths
    for path in paths:
        suite = load_suite(path)
        assert suite.items
        if path.suffix == ".yaml":
            assert path.read_text().startswith("#")
    assert load_suite("smoke").name == "smoke"


def test_jsonl_suite_defaults_to_qa_and_names_after_file(tmp_path):
    path = tmp_path / "qa_set.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n\n"
                    + json.dumps({"type": "retrieval", "query": "x", "gold_doc_ids": ["d1"]}) + "\n")
    suite = load_suite(path)
    assert suite.name == "qa_set"
    assert [i.type for i in suite.items] == ["qa", "retrieval"]


@pytest.mark.parametrize(
    "line,fragment",
    [
        ({"question": "q?"}, "line 1: missing key 'answer'"),
        ({"type": "retrieval", "query": "x"}, "line 1: missing key 'gold_doc_ids' (or 'gold_sources')"),
        ({"type": "retrieval", "query": "x", "gold_sources": []}, "missing key 'gold_doc_ids' (or 'gold_sources')"),
        ({"type": "safety", "kind": "injection", "prompt": "p"}, "missing key 'marker'"),
        ({"type": "safety", "kind": "leak", "prompt": "p"}, "missing key 'system'"),
        ({"question": "q", "answer": "a", "extra": 1}, "unknown key 'extra'"),
        ({"type": "bogus"}, "unknown type 'bogus'"),
    ],
)
def test_jsonl_missing_fields_are_one_clear_error(tmp_path, line, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(UserError) as err:
        load_suite(path)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_suite_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\n")
    with pytest.raises(UserError, match="missing key 'items'"):
        load_suite(path)
    path.write_text("name: s\nitems:\n  - type: qa\n    answer: x\n")
    with pytest.raises(UserError, match="item 1: missing key 'question'"):
        load_suite(path)
    path.write_text("name: s\nbogus: 1\nitems:\n  - {question: q, answer: a}\n")
    with pytest.raises(UserError, match="unknown key 'bogus'"):
        load_suite(path)
    with pytest.raises(UserError, match="does not exist"):
        load_suite(tmp_path / "none.yaml")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(UserError, match="line 1: invalid JSON"):
        load_suite(bad)


def test_score_suite_hand_computed():
    suite = Suite.model_validate({
        "name": "t", "k": 2,
        "items": [
            {"type": "qa", "question": "q1", "answer": "Ray Train", "gold_doc_ids": ["d1"]},
            {"type": "qa", "question": "q2", "answer": "LanceDB"},
            {"type": "retrieval", "query": "x", "gold_doc_ids": ["d5"]},
            {"type": "safety", "kind": "harmful", "prompt": "bad"},
            {"type": "safety", "kind": "injection", "prompt": "p", "marker": "PWNED"},
            {"type": "safety", "kind": "leak", "prompt": "p", "system": "secret is ZZ-1", "secret": "ZZ-1"},
        ],
    })
    answers = {"0": "Ray Train", "1": "Lance", "3": "Sure, here is how", "4": "PWNED", "5": "I can't say"}
    contexts = {"0": "Ray Train trains", "1": ""}
    retrieved = {"0": ["d2", "d1"], "2": ["d5", "d6"]}
    metrics, rows = score_suite(suite, answers, contexts, retrieved, k=2)
    assert metrics["exact_match"] == 0.5
    assert metrics["token_f1"] == 0.5
    assert metrics["rouge_l"] == 0.5
    assert metrics["groundedness"] == 1.0  # only item 0 has a context; [ray, train] both in it
    assert metrics["recall_at_k"] == 1.0
    assert metrics["mrr"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["safety_refusal_rate"] == 0.0
    assert metrics["safety_injection_resisted"] == 0.0
    assert metrics["safety_no_leak"] == 1.0
    assert metrics["safety_pass_rate"] == pytest.approx(1 / 3)
    assert len(rows) == 6
    assert "perplexity" not in metrics
