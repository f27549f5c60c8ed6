"""Preference pairs from a judge, against a small OpenAI-style HTTP server started here (a
test fixture, not product code): the served "stack" samples two different answers per
prompt, the "judge" model reads the position-swapped comparison prompts. Position swapping,
dropping and counting ties, unparsable and inconsistent verdicts, keys, and CLI errors."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmops_ray.common.pairs import pairs_sha256, read_lineage, read_pairs
from llmops_ray.config import UserError
from llmops_ray.data.pairs import pairs_from_judge, read_prompts

KEY = "sk-test-123"
GOOD, BAD = "Quote: the pump is blocked [1]", "I like trains."


class _Handler(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions`` for two models.

    ``stack``: per prompt, the first call answers one text and the second another; prompts
    containing REV answer BAD first, SAME answers the same text twice, FAIL returns 500.
    ``judge``: prefers the answer with a citation marker ``[1]``; for a prompt with TIE it
    says tie, with FLIP always "A" (position bias), with MUMBLE nothing parsable.
    """

    calls: dict[str, int] = {}
    lock = threading.Lock()
    keys_seen: set = set()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.keys_seen.add(self.headers.get("Authorization"))
        if self.path != "/v1/chat/completions":
            return self._reply(404, {"error": {"message": "no route", "type": "invalid_request_error"}})
        text = body["messages"][-1]["content"]
        if body["model"] == "stack":
            if "FAIL" in text:
                return self._reply(500, {"error": {"message": "boom", "type": "server_error"}})
            with self.lock:
                n = self.calls[text] = self.calls.get(text, 0) + 1
            first, second = (BAD, GOOD) if "REV" in text else (GOOD, BAD)
            answer = GOOD if "SAME" in text else (first if n % 2 == 1 else second)
        elif body["model"] == "judge":
            assert body["temperature"] == 0.0
            a = text.split("ANSWER A:\n", 1)[1].split("\n\nANSWER B:", 1)[0]
            if "TIE" in text:
                answer = "Verdict: tie"
            elif "FLIP" in text:
                answer = "Verdict: A"
            elif "MUMBLE" in text:
                answer = "Both have merits."
            else:
                answer = "Verdict: A" if "[1]" in a else "Verdict: B"
        else:
            return self._reply(404, {"error": {"message": "unknown model", "type": "invalid_request_error"}})
        self._reply(200, {
            "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })


@pytest.fixture()
def server():
    _Handler.calls, _Handler.keys_seen = {}, set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _prompts(tmp_path, rows):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pairs_from_judge_keeps_consistent_verdicts(server, tmp_path):
    prompts = _prompts(tmp_path, [
        {"id": "p1", "prompt": "What does E12 mean?"},
        {"id": "p2", "prompt": [{"role": "user", "content": "REV: why is the pump loud? mail jane.doe@example.com"}]},
        {"id": "p3", "question": "TIE: warranty?"},
        {"id": "p4", "prompt": "FLIP: reset steps?"},
        {"id": "p5", "prompt": "MUMBLE: filter size?"},
        {"id": "p6", "prompt": "SAME: anything"},
        {"id": "p7", "prompt": "FAIL: anything"},
    ])
    out = tmp_path / "judge.jsonl"
    summary = pairs_from_judge("stack", str(prompts), str(out), base_url=server, api_key=KEY,
                               judge_model="judge", concurrency=3)
    pairs = read_pairs(out)
    assert summary["pairs"] == len(pairs) == 2 and summary["sha256"] == pairs_sha256(out)
    # Whichever position the good answer was sampled in, it is the chosen one.
    assert {p.id.split("-")[0] for p in pairs} == {"judge"}
    assert all(p.chosen == GOOD and p.rejected == BAD for p in pairs)
    assert {p.metadata["prompt_id"] for p in pairs} == {"p1", "p2"}
    by_id = {p.metadata["prompt_id"]: p for p in pairs}
    assert by_id["p1"].metadata["verdicts"] == ["first", "first"]
    assert by_id["p2"].metadata["verdicts"] == ["second", "second"]
    # Chat prompts stay chat messages, masked like the log.
    assert by_id["p2"].prompt[0]["content"].endswith("mail [EMAIL]")
    assert summary["counts"] == {"prompts": 7, "kept": 2, "sample_failed": 1, "identical_answers": 1,
                                 "undecided": 2, "inconsistent": 1, "judge_request_errors": 0}
    lineage = read_lineage(out)
    assert lineage["counts"] == summary["counts"] and lineage["sources"][0]["position_swapped"] is True
    assert lineage["sources"][0]["judge_model"] == "judge"
    assert _Handler.keys_seen == {f"Bearer {KEY}"}


def test_unreachable_or_failing_endpoints_are_user_errors(server, tmp_path):
    prompts = _prompts(tmp_path, [{"prompt": "What does E12 mean?"}])
    with pytest.raises(UserError, match="every answer request"):
        pairs_from_judge("nope", str(prompts), str(tmp_path / "o.jsonl"), base_url=server, api_key=None,
                         judge_model="judge")
    with pytest.raises(UserError, match="refused the request with HTTP 404"):
        pairs_from_judge("stack", str(prompts), str(tmp_path / "o.jsonl"), base_url=server, api_key=None,
                         judge_model="missing-judge")
    with pytest.raises(UserError, match="temperature"):
        pairs_from_judge("stack", str(prompts), str(tmp_path / "o.jsonl"), base_url=server, api_key=None,
                         judge_model="judge", temperature=0.0)
    assert not (tmp_path / "o.jsonl").exists()


def test_judge_asker_refused_config_is_an_error_and_failures_are_counted(server):
    from llmops_ray.common.pairwise import openai_asker

    with pytest.raises(UserError, match="HTTP 404: check its URL, model and API key"):
        openai_asker(server, "missing-judge", "k")("Which is better?")
    ask = openai_asker(server, "stack", "k", timeout_s=5)
    assert ask("FAIL please") is None and ask.errors == 1 and "500" in ask.last_error
    assert ask("What does E12 mean?") == GOOD and ask.errors == 1


def test_read_prompts(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_text("first prompt\n\nsecond prompt\n")
    assert [r["prompt"] for r in read_prompts(text)] == ["first prompt", "second prompt"]
    bad = _prompts(tmp_path, [{"prompt": "ok"}, {"id": "x"}])
    with pytest.raises(UserError, match=r"prompts.jsonl:2: prompt"):
        read_prompts(bad)
    with pytest.raises(UserError, match="not found"):
        read_prompts(tmp_path / "missing.jsonl")


def test_cli_pairs_from_judge(server, tmp_path):
    prompts = _prompts(tmp_path, [{"prompt": "What does E12 mean?"}, {"prompt": "REV: loud pump?"}])
    out = tmp_path / "cli.jsonl"
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"), "MY_KEY": KEY}
    cmd = [sys.executable, "-c", "from llmops_ray.cli import main; main()", "data", "pairs-from-judge",
           "--stack", "stack", "--prompts", str(prompts), "--out", str(out), "--judge-model", "judge",
           "--base-url", server, "--api-key-env", "MY_KEY"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 2 and summary["counts"]["kept"] == 2
    assert _Handler.keys_seen == {f"Bearer {KEY}"}
    bad = subprocess.run(cmd + ["--temperature", "0"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "--temperature" in bad.stderr and bad.stderr.strip().count("\n") == 0
