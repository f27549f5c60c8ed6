"""Pairwise evaluation end to end: a candidate stack (tiny model + a LoRA adapter) and the
stack's production version (the bare tiny model) answer the same prompts through vLLM, a judge
over real HTTP compares them in both orders, and ``win_rate`` plus the held-out
``reward_accuracy`` are stored on the candidate and read by its win-rate gate."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge with a position-independent rule: the answer that sorts
    first wins, equal answers tie. Answers shown in both orders therefore get consistent verdicts."""

    def do_POST(self):  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"]
        a = text.split("ANSWER A:\n", 1)[1].split("\n\nANSWER B:", 1)[0]
        b = text.split("ANSWER B:\n", 1)[1].rstrip("\n")
        verdict = "tie" if a == b else ("A" if a < b else "B")
        reply = {"id": "j", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": f"Verdict: {verdict}"}}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def judge_url():
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_pairwise_win_rate_against_production(ray_session, tiny_model_dir, tmp_path, judge_url):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmops_ray.common.pairs import PreferencePair, write_pairs
    from llmops_ray.evaluate.run import evaluate_stack
    from llmops_ray.registry import ensure_default_prompt, evaluate_gates, register_stack, resolve_stack, set_alias

    adapter = tmp_path / "adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a strong random adapter: the candidate answers differently
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn_like(param))
    model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter)

    prompt = ensure_default_prompt("qa-pairwise").ref
    manifest = {"name": "pw-stack", "base_model": str(tiny_model_dir), "prompt": prompt,
                "generation": {"max_tokens": 8, "max_model_len": 256},
                "policy": {"gates": [{"metric": "win_rate", "threshold": 0.0}]}}
    production = register_stack(manifest)
    set_alias("pw-stack", "production", production.version)
    candidate = register_stack({**manifest, "adapter": str(adapter)})

    pairs = tmp_path / "heldout.jsonl"
    write_pairs(pairs, [PreferencePair(prompt="What runs training?", chosen="Ray Train [1]", rejected="Bananas."),
                        PreferencePair(prompt="Where is data read?", chosen="Ray Data [1]", rejected="Socks.")],
                {"sources": ["test"]})
    suite = tmp_path / "pw.yaml"
    suite.write_text(f"name: pw\njudge: {{base_url: '{judge_url}', model: judge}}\nheldout_pairs: {pairs}\nitems:\n"
                     "  - {type: pairwise, prompt: 'What runs training?'}\n"
                     "  - {type: pairwise, prompt: 'Where are documents embedded?'}\n"
                     "  - {type: pairwise, prompt: 'Which store holds the chunks?'}\n")
    result = evaluate_stack(candidate.ref, str(suite), report=False)

    rows = [r for r in result["items"] if r["type"] == "pairwise"]
    assert len(rows) == 3 and all(isinstance(r["baseline_answer"], str) for r in rows)
    # The judge's rule, applied to the stored answers, gives the stored outcomes and win rate.
    expected = ["tie" if r["answer"] == r["baseline_answer"] else "first" if r["answer"] < r["baseline_answer"]
                else "second" for r in rows]
    assert [r["outcome"] for r in rows] == expected
    wins, ties = expected.count("first"), expected.count("tie")
    assert result["metrics"]["win_rate"] == pytest.approx((wins + ties / 2) / 3)
    assert result["counts"]["baseline"] == production.ref and result["counts"]["pairwise_decided"] == 3
    assert 0.0 <= result["metrics"]["reward_accuracy"] <= 1.0 and result["counts"]["heldout_pairs"] == 2

    stored = resolve_stack(candidate.ref)
    report = evaluate_gates(stored.manifest.policy.gates, stored.metrics(), resolve_stack(production.ref).metrics(),
                            production.version)
    assert report.checks[0].candidate == pytest.approx(result["metrics"]["win_rate"]) and report.passed
