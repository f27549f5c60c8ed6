"""Bad input stops with one clear line (exit 2) before any Ray worker starts; sft-from-kb pairs."""

from __future__ import annotations

import json

import pytest

from llmops_ray.cli import main
from llmops_ray.train.kb_sft import qa_pairs, sentences


def run_cli(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    return exc.value.code, err


@pytest.fixture
def chat_file(tmp_path):
    path = tmp_path / "chat.jsonl"
    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text("\n".join(json.dumps(rec) for _ in range(4)) + "\n")
    return path


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["deepspeed.zero_stage=5"], "unknown ZeRO stage 5"),
        (["optim.learning_rate=1"], "unknown key 'optim.learning_rate'"),
        (["base_model=/nonexistent/model"], "base model path '/nonexistent/model' does not exist"),
        (["data.path=/nonexistent/data.jsonl"], "dataset '/nonexistent/data.jsonl' does not exist"),
    ],
)
def test_finetune_bad_input_is_one_line_exit_2(overrides, message, capsys, tiny_model_dir, chat_file):
    base = [f"base_model={tiny_model_dir}", f"data.path={chat_file}"]
    code, err = run_cli(["finetune", "--config", "sft_lora_tiny_cpu", *base, *overrides], capsys)
    assert code == 2
    assert err.startswith("llmops: error: ") and message in err and err.count("\n") == 1


def test_finetune_rejects_bad_jsonl_and_empty_data(capsys, tiny_model_dir, tmp_path, monkeypatch):
    import llmops_ray.cluster

    # Other tests in the session may have started Ray already; what matters is that this
    # command never asks for it (or for any worker) before refusing the data.
    ray_started = []
    monkeypatch.setattr(llmops_ray.cluster, "init_ray", lambda *a, **k: ray_started.append(1))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "x", "output": "y"}) + "\n" + json.dumps({"instruction": "only"}) + "\n")
    code, err = run_cli(["finetune", "--config", "sft_lora_tiny_cpu", f"base_model={tiny_model_dir}", f"data.path={bad}"], capsys)
    assert code == 2 and "bad.jsonl:2: missing 'output'" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, err = run_cli(["finetune", "--config", "sft_lora_tiny_cpu", f"base_model={tiny_model_dir}", f"data.path={empty}"], capsys)
    assert code == 2 and "is empty" in err
    assert ray_started == []  # stopped before Ray (and any worker) started


def test_model_commands_bad_input(capsys, tmp_path):
    code, err = run_cli(["model", "bootstrap", "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "does not exist" in err
    code, err = run_cli(["model", "merge", "--adapter", str(tmp_path), "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "not a peft adapter directory" in err
    code, err = run_cli(["data", "sft-from-kb", "--kb", "no-such-kb", "--out", str(tmp_path / "x.jsonl")], capsys)
    assert code == 2 and "no-such-kb" in err


def test_extractive_pairs_english_and_chinese():
    en = "# Refunds\nA refund is a return of money to the customer. Refunds take five days. Contact support for help."
    pairs = list(qa_pairs("Refund policy", en))
    assert ("What is refund?", "A refund is a return of money to the customer.") in pairs
    assert all(answer in en.replace("\n", " ") or answer in " ".join(sentences(en)) for _, answer in pairs)
    zh = "退款是把钱退还给客户的流程。退款需要五个工作日完成。如有问题请联系客服。"
    pairs = list(qa_pairs("退款政策", zh))
    assert ("退款是什么？", "退款是把钱退还给客户的流程。") in pairs
    assert any(q.startswith("《退款政策》") for q, _ in pairs) or len(pairs) >= 1
