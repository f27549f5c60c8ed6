"""Preference pairs from feedback: request rows written through the observe module's
``RequestLogger`` into a real LanceDB log, ratings and corrections through ``submit_feedback``
(the ``/v1/feedback`` handler), then ``pairs_from_feedback``; plus the ``correction`` field's
validation and the column added to a feedback table written before it existed."""

import json
import subprocess
import sys
import time

import pytest

from llmops_ray.common.pairs import pairs_sha256, read_lineage, read_pairs
from llmops_ray.config import UserError
from llmops_ray.data.pairs import logged_prompt, pairs_from_feedback
from llmops_ray.observe.request_log import (
    FEEDBACK,
    FeedbackError,
    RequestLogger,
    query_feedback,
    requests_for_responses,
    submit_feedback,
)

EMAIL = "jane.doe@example.com"


def _messages(question):
    return [{"role": "system", "content": "Answer from the manual."}, {"role": "user", "content": question}]


def _log(logger, i, question, answer, stack="support", variant="stable", status=200, request=None):
    logger.log({
        "request_id": f"req-{i}", "response_id": f"chatcmpl-{i}", "ts": time.time(), "tenant": "acme",
        "stack": stack, "model": "tiny", "variant": variant, "status": status,
        "request": request if request is not None else {"messages": _messages(question), "temperature": 0.7},
        "response": answer,
    })


@pytest.fixture()
def feedback_log(tmp_path):
    """A log with rated answers: q1 has two up and one down answer, q2 a down answer with a
    correction (holding an e-mail address), q3 an up answer and a down answer whose correction
    repeats it, and a few rows to skip."""
    db = tmp_path / "logs"
    logger = RequestLogger(db_dir=db)
    _log(logger, 1, "What does E12 mean?", "E12 is a pump fault [1].")
    _log(logger, 2, "What does E12 mean?", "Bananas are yellow.", variant="canary")
    _log(logger, 3, "What does E12 mean?", "E12: the pump is blocked [1].")
    _log(logger, 4, f"How do I reset? Mail {EMAIL}", "Just wait.")
    _log(logger, 5, "Warranty length?", "Two years [2].")
    _log(logger, 6, "What does E12 mean?", "", status=500)  # failed: no answer to pair
    _log(logger, 7, "Other stack", "x", stack="sales")
    _log(logger, 8, "", "an embedding", request={"input": ["text"]})  # no prompt
    _log(logger, 9, "Warranty length?", "Forever.")
    assert logger.flush(30)
    logger.close()

    def rate(i, rating, **kw):
        return submit_feedback({"response_id": f"chatcmpl-{i}", "rating": rating, **kw}, db_dir=db)

    rate(1, "up")
    rate(2, "down", comment="off topic")
    rate(3, "down")
    rate(3, "up")  # changed their mind: the latest rating counts
    rate(4, "down", correction=f"Hold the reset button for 5 s; questions to {EMAIL}.")
    rate(5, "up")
    rate(6, "down")
    rate(7, "down", correction="Better sales answer.")
    rate(8, "up")
    rate(9, "down", correction="Forever.")  # the same as the answer: no preference
    return db


def test_pairs_from_up_down_and_corrections(feedback_log, tmp_path):
    out = tmp_path / "pairs" / "fb.jsonl"
    summary = pairs_from_feedback("1h", str(out), stack="support", db_dir=feedback_log)
    pairs = read_pairs(out)
    assert summary["pairs"] == len(pairs) == 4
    assert summary["sha256"] == pairs_sha256(out) and summary["out"] == str(out.resolve())

    up_down = [p for p in pairs if p.metadata["kind"] == "up_down"]
    # q1: answers 1 and 3 are up, answer 2 down -> two pairs, both rejecting the off-topic answer.
    q1 = [p for p in up_down if p.prompt == _messages("What does E12 mean?")]
    assert sorted(p.chosen for p in q1) == ["E12 is a pump fault [1].", "E12: the pump is blocked [1]."]
    assert {p.rejected for p in q1} == {"Bananas are yellow."}
    assert {tuple(p.metadata["variants"]) for p in q1} == {("stable", "canary")}
    # q3: up vs down still pairs; only its correction (equal to the answer) is dropped.
    [q3] = [p for p in up_down if p.prompt == _messages("Warranty length?")]
    assert (q3.chosen, q3.rejected) == ("Two years [2].", "Forever.")

    [fix] = [p for p in pairs if p.metadata["kind"] == "correction"]
    assert fix.rejected == "Just wait." and fix.chosen.startswith("Hold the reset button")
    # PII-masked like the log: neither the prompt nor the correction keeps the address.
    text = out.read_text()
    assert EMAIL not in text and "[EMAIL]" in fix.chosen and "[EMAIL]" in fix.prompt[-1]["content"]

    counts = summary["counts"]
    assert counts["pairs_up_down"] == 3 and counts["pairs_correction"] == 1
    assert counts["skipped_no_answer"] == 1 and counts["skipped_no_prompt"] == 1
    assert counts["skipped_correction_same_as_answer"] == 1
    assert counts["feedback_rows"] == 9 and counts["responses_rated"] == 8  # stack filter drops the sales row
    lineage = read_lineage(out)
    assert lineage["sha256"] == summary["sha256"] and lineage["counts"] == counts
    assert lineage["sources"][0]["kind"] == "feedback" and lineage["sources"][0]["stack"] == "support"
    assert lineage["time_range"]["start"] <= lineage["time_range"]["end"]
    # Ids are stable: the same feedback gives the same file.
    again = pairs_from_feedback("1h", str(tmp_path / "again.jsonl"), stack="support", db_dir=feedback_log)
    assert again["sha256"] == summary["sha256"]


def test_every_stack_and_since_filters(feedback_log, tmp_path):
    everything = pairs_from_feedback(None, str(tmp_path / "all.jsonl"), db_dir=feedback_log)
    assert everything["pairs"] == 5  # + the sales stack's correction
    future = pairs_from_feedback("2100-01-01", str(tmp_path / "none.jsonl"), db_dir=feedback_log)
    assert future["pairs"] == 0 and read_pairs(tmp_path / "none.jsonl") == []
    assert future["time_range"] is None
    with pytest.raises(UserError, match="--since"):
        pairs_from_feedback("yesterday", str(tmp_path / "x.jsonl"), db_dir=feedback_log)
    # An empty workspace (no log yet) is no pairs, not an error.
    assert pairs_from_feedback(None, str(tmp_path / "e.jsonl"), db_dir=tmp_path / "empty")["pairs"] == 0


def test_max_pairs_per_prompt_caps(feedback_log, tmp_path):
    summary = pairs_from_feedback(None, str(tmp_path / "cap.jsonl"), stack="support", db_dir=feedback_log,
                                  max_pairs_per_prompt=1)
    assert summary["counts"]["pairs_up_down"] == 2 and summary["counts"]["capped_per_prompt"] == 1


def test_requests_for_responses_uses_latest_row(tmp_path):
    db = tmp_path / "logs"
    logger = RequestLogger(db_dir=db)
    _log(logger, 1, "q", "old")
    assert logger.flush(30)
    _log(logger, 1, "q", "new")
    logger.close()
    found = requests_for_responses(["chatcmpl-1", "chatcmpl-404"], db_dir=db)
    assert list(found) == ["chatcmpl-1"] and found["chatcmpl-1"]["response"] == "new"


def test_logged_prompt_shapes():
    assert logged_prompt(json.dumps({"prompt": "complete me"})) == "complete me"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}]}
    assert logged_prompt(json.dumps(parts)) == [{"role": "user", "content": "hi there"}]
    prefill = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Sure"}]}
    assert logged_prompt(json.dumps(prefill)) is None
    assert logged_prompt("null") is None and logged_prompt("{bad") is None


# --------------------------------------------------------------------------- the feedback route


@pytest.fixture()
def one_response(tmp_path):
    db = tmp_path / "logs"
    logger = RequestLogger(db_dir=db)
    _log(logger, 1, "q", "an answer")
    logger.close()
    return db


@pytest.mark.parametrize("body, message", [
    ({"rating": "up", "correction": "x"}, "rating 'down' only"),
    ({"rating": "down", "correction": 5}, "valid string"),
    ({"rating": "down", "correction": ["x"]}, "valid string"),
    ({"rating": "down", "correction": "   "}, "blank"),
    ({"rating": "down", "correction": ""}, "at least 1"),
    ({"rating": "down", "correction": "x" * 8001}, "at most 8000"),
])
def test_bad_correction_is_400(one_response, body, message):
    with pytest.raises(FeedbackError) as info:
        submit_feedback({"response_id": "chatcmpl-1", **body}, db_dir=one_response)
    err = info.value
    assert err.status == 400 and err.param == "correction" and message in err.message
    assert err.body()["error"]["type"] == "invalid_request_error"
    assert query_feedback(db_dir=one_response) == []


def test_correction_stored_masked_and_optional(one_response):
    stored = submit_feedback({"response_id": "chatcmpl-1", "rating": "down", "correction": f"Write to {EMAIL}"},
                             db_dir=one_response)
    assert stored["rating"] == "down"
    submit_feedback({"response_id": "chatcmpl-1", "rating": "up", "correction": None}, db_dir=one_response)
    rows = query_feedback(db_dir=one_response)
    assert [r["correction"] for r in rows] == ["Write to [EMAIL]", ""]


def test_feedback_table_from_before_corrections_gets_the_column(one_response):
    # A feedback table written by the previous schema (no correction column).
    import lancedb
    import pyarrow as pa

    from llmops_ray.observe.request_log import _FIELDS

    old = pa.schema([(n, getattr(pa, k)()) for n, k in _FIELDS[FEEDBACK] if n != "correction"])
    lancedb.connect(str(one_response)).create_table(FEEDBACK, schema=old)
    submit_feedback({"response_id": "chatcmpl-1", "rating": "down", "correction": "fixed"}, db_dir=one_response)
    assert [r["correction"] for r in query_feedback(db_dir=one_response)] == ["fixed"]


def test_cli_pairs_from_feedback(feedback_log, tmp_path):
    out = tmp_path / "cli.jsonl"
    env_home = tmp_path / "home"
    # The CLI reads the workspace's log: point LLMOPS_HOME at a workspace whose logs/ is our table.
    (env_home).mkdir()
    (env_home / "logs").symlink_to(feedback_log, target_is_directory=True)
    cmd = [sys.executable, "-c", "from llmops_ray.cli import main; main()", "data", "pairs-from-feedback",
           "--since", "1h", "--stack", "support", "--out", str(out)]
    import os
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "LLMOPS_HOME": str(env_home)})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 4 and summary["sha256"] == pairs_sha256(out)
    bad = subprocess.run(cmd[:-4] + ["--since", "yesterday", "--out", str(out)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "LLMOPS_HOME": str(env_home)})
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--since" in bad.stderr
