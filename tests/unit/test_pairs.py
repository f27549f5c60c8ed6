"""The preference-pairs format (``common/pairs.py``): validation naming the line, atomic
write with a lineage record whose hash matches the bytes, and the position-swapped pairwise
judge's outcome rules (``common/pairwise.py``)."""

import json

import pytest

from llmops_ray.common.pairs import (
    PreferencePair,
    lineage_path,
    pairs_sha256,
    parse_pair,
    read_lineage,
    read_pairs,
    write_pairs,
)
from llmops_ray.common.pairwise import PAIRWISE_PROMPT, compare, parse_verdict
from llmops_ray.config import UserError

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is E12?"}]


def test_write_then_read_round_trips_with_lineage(tmp_path):
    pairs = [
        PreferencePair(prompt="What is E12?", chosen="A pump fault [1]", rejected="Bananas."),
        PreferencePair(prompt=CHAT, chosen="Pump fault.", rejected="No idea.", id="p2", metadata={"source": "test"}),
    ]
    out = tmp_path / "sub" / "pairs.jsonl"
    record = write_pairs(out, pairs, {"sources": [{"kind": "test"}], "counts": {"kept": 2},
                                      "time_range": {"start": "2026-12-01T00:00:00+00:00", "end": "2026-12-02T00:00:00+00:00"}})
    assert read_pairs(out) == pairs
    assert record["pairs"] == 2 and record["sha256"] == pairs_sha256(out)
    assert record["counts"] == {"kept": 2} and record["sources"] == [{"kind": "test"}]
    assert read_lineage(out) == record and lineage_path(out).name == "pairs.jsonl.lineage.json"
    # One JSON object per line; the optional id is left out when None.
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and "id" not in json.loads(lines[0]) and json.loads(lines[1])["id"] == "p2"
    # No temporary files are left next to the output.
    assert sorted(p.name for p in out.parent.iterdir()) == ["pairs.jsonl", "pairs.jsonl.lineage.json"]


def test_hash_changes_with_content(tmp_path):
    a = write_pairs(tmp_path / "a.jsonl", [PreferencePair(prompt="q", chosen="x", rejected="y")], {})
    b = write_pairs(tmp_path / "b.jsonl", [PreferencePair(prompt="q", chosen="y", rejected="x")], {})
    assert a["sha256"] != b["sha256"]
    assert a["time_range"] is None and a["counts"] == {}


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "chosen": "a", "rejected": "b", "score": 1}, "score: Extra inputs"),
    ({"prompt": "q", "chosen": "a"}, "rejected: Field required"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt is empty"),
    ({"prompt": "q", "chosen": " ", "rejected": "b"}, "answer is empty"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "identical"),
    ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}, "role 'robot'"),
    ({"prompt": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "chosen": "a", "rejected": "b"},
     "ends with an assistant"),
    ({"prompt": [{"role": "user", "text": "x"}], "chosen": "a", "rejected": "b"}, "role and content"),
    ([1, 2], "JSON object"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    path.write_text(good + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError) as info:
        read_pairs(path)
    assert str(info.value).startswith(f"{path}:3: ") and message in str(info.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{not json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        read_pairs(path)
    with pytest.raises(UserError, match="not found"):
        read_pairs(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="^here: "):
        parse_pair({"prompt": "q"}, "here")


@pytest.mark.parametrize("reply, verdict", [
    ("Verdict: A", "A"), ("verdict: b", "B"), ("**Verdict:** tie", "tie"), ("B", "B"), (" a. ", "A"),
    ("Answer A is better but B is close", None), ("", None), (None, None), ("Verdict: C", None),
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def _judge(rule):
    """An asker that reads the two answers out of the judge prompt and applies ``rule(a, b)``."""
    def ask(text):
        a = text.split("ANSWER A:\n", 1)[1].split("\n\nANSWER B:", 1)[0]
        b = text.split("ANSWER B:\n", 1)[1].rstrip("\n")
        return rule(a, b)
    return ask


def test_compare_swaps_positions_and_classifies():
    assert PAIRWISE_PROMPT.count("{a}") == 1
    content = _judge(lambda a, b: "Verdict: A" if "[1]" in a else "Verdict: B")
    assert compare(content, "q", "good [1]", "bad") == {"outcome": "first", "verdicts": ["first", "first"]}
    assert compare(content, "q", "bad", "good [1]") == {"outcome": "second", "verdicts": ["second", "second"]}
    # A judge that always picks position A is caught by the swap.
    assert compare(_judge(lambda a, b: "Verdict: A"), "q", "x", "y")["outcome"] == "inconsistent"
    assert compare(_judge(lambda a, b: "Verdict: tie"), "q", "x", "y")["outcome"] == "tie"
    assert compare(_judge(lambda a, b: "no idea"), "q", "x", "y")["outcome"] == "undecided"
    assert compare(lambda text: None, "q", "x", "y")["outcome"] == "undecided"
