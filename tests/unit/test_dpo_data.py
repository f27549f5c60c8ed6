"""Preference-pair tokenization for DPO: chat template on the prompt, response-only labels,
prompt-first truncation, the pair collator, driver-side validation and config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_ray.config import UserError
from llmops_ray.train.data import IGNORE_INDEX
from llmops_ray.train.dpo_data import collate_pairs, prompt_messages, tokenize_pair, truncate_pair, usable, validate_pairs


@pytest.fixture(scope="module")
def tokenizer():
    from llmops_ray.models.base import train_tokenizer

    return train_tokenizer(["The quick brown fox jumps over the lazy dog. Sources are cited as [1]. " * 30],
                           vocab_size=400)


def test_truncation_cuts_the_prompt_first_from_its_start():
    prompt, chosen, rejected = list(range(100, 130)), [1, 2, 3, 4], [5, 6]
    p, c, r, cut = truncate_pair(prompt, chosen, rejected, max_len=20)
    assert cut and c == chosen and r == rejected  # the answers are whole
    assert p == prompt[-16:] and len(p) + len(c) == 20  # the prompt's end (next to the answer) is kept
    assert truncate_pair(prompt[:5], chosen, rejected, max_len=20) == (prompt[:5], chosen, rejected, False)


def test_truncation_cuts_answers_only_when_the_prompt_is_at_its_floor():
    prompt, chosen, rejected = list(range(100, 130)), list(range(40)), list(range(50, 60))
    p, c, r, cut = truncate_pair(prompt, chosen, rejected, max_len=20)
    assert cut and p == prompt[-5:]  # a quarter of max_len stays
    assert c == chosen[:15] and r == rejected  # the long answer loses its end
    assert truncate_pair(prompt, [1], [2], max_len=64, max_prompt_len=8)[0] == prompt[-8:]


def test_labels_cover_only_the_response_and_its_end_of_turn(tokenizer):
    messages = prompt_messages("Which fox is quick?", "x", system_prompt="Cite sources.")
    assert [m["role"] for m in messages] == ["system", "user"]
    row = tokenize_pair(tokenizer, messages, "The brown fox [1]", "A lazy dog", max_len=256)
    for side, answer in (("chosen", "The brown fox [1]"), ("rejected", "A lazy dog")):
        ids, labels = row[f"{side}_input_ids"], row[f"{side}_labels"]
        learned = [t for t, lab in zip(ids, labels) if lab != IGNORE_INDEX]
        assert tokenizer.decode(learned) == answer + "<|im_end|>"
        prompt_part = tokenizer.decode([t for t, lab in zip(ids, labels) if lab == IGNORE_INDEX])
        assert prompt_part.endswith("<|im_start|>assistant\n") and "Which fox is quick?" in prompt_part
    n_prompt = row["chosen_labels"].count(IGNORE_INDEX)
    assert row["chosen_input_ids"][:n_prompt] == row["rejected_input_ids"][:n_prompt]  # one shared prompt
    assert row["truncated"] is False and usable(row)


def test_over_long_rows_are_truncated_and_counted(tokenizer):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 20
    row = tokenize_pair(tokenizer, prompt_messages(long_prompt, "x"), "Cited [1]", "Lazy dog", max_len=32)
    assert row["truncated"] is True
    assert len(row["chosen_input_ids"]) <= 32 and len(row["rejected_input_ids"]) <= 32
    learned = [t for t, lab in zip(row["chosen_input_ids"], row["chosen_labels"]) if lab != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "Cited [1]<|im_end|>"  # the answer survived, the prompt paid


def test_collate_puts_chosen_rows_first(tokenizer):
    rows = [tokenize_pair(tokenizer, prompt_messages(q, "x"), c, r, 64)
            for q, c, r in [("Quick?", "Fox [1]", "Dog"), ("Lazy?", "The dog [1]", "No")]]
    batch = {k: [r[k] for r in rows] for k in rows[0]}
    out = collate_pairs(batch, pad_id=0)
    assert out["input_ids"].shape[0] == 4
    assert out["input_ids"][0, : len(rows[0]["chosen_input_ids"])].tolist() == rows[0]["chosen_input_ids"]
    assert out["input_ids"][3, : len(rows[1]["rejected_input_ids"])].tolist() == rows[1]["rejected_input_ids"]
    assert int(out["attention_mask"][1].sum()) == len(rows[1]["chosen_input_ids"])


def test_validate_pairs_names_file_line_and_field(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a [1]", "rejected": "b"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(UserError, match=r"pairs\.jsonl:2: rejected"):
        validate_pairs(str(path))
    path.write_text(json.dumps(good) + "\n")
    info = validate_pairs(str(path))
    assert info["records"] == 1 and len(info["pairs_sha256"][str(path)]) == 64


def test_config_refuses_packing_with_dpo():
    from llmops_ray.config import load_config
    from llmops_ray.train.config import FinetuneConfig
    from llmops_ray.train.sft import check_config

    cfg = load_config(FinetuneConfig, "dpo_lora_tiny_cpu", ["data.packing=true"])
    with pytest.raises(UserError, match="packing"):
        check_config(cfg)
    cfg = load_config(FinetuneConfig, "dpo_lora_tiny_cpu", ["dpo.loss_type=ipo", "dpo.beta=0.5"])
    assert cfg.objective == "dpo" and cfg.dpo.loss_type == "ipo"
    with pytest.raises(UserError, match="dpo.loss_type"):
        load_config(FinetuneConfig, "dpo_lora_tiny_cpu", ["dpo.loss_type=hinge"])


def test_an_sft_adapter_as_base_model_is_merged_once_and_named_as_parent(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmops_ray.train.sft import _parent_lineage, resolve_base_model

    adapter = tmp_path / "sft-adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(adapter)
    (adapter / "lineage.json").write_text(json.dumps({"kind": "lora-adapter", "run_name": "sft-x", "objective": "sft",
                                                      "base_model": str(tiny_model_dir)}))
    merged = resolve_base_model(str(adapter))
    assert (tmp_path / "sft-adapter").resolve() != merged and "_merged/start-" in merged
    mtime = (Path(merged) / "config.json").stat().st_mtime_ns
    assert resolve_base_model(str(adapter)) == merged  # cached: merged once
    assert (Path(merged) / "config.json").stat().st_mtime_ns == mtime
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():  # a fresh adapter (B = 0) merges into the same weights
        assert torch.allclose(AutoModelForCausalLM.from_pretrained(merged)(ids).logits,
                              AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits, atol=1e-5)
    parent = _parent_lineage(str(adapter), merged)
    assert parent["kind"] == "lora-adapter" and parent["run_name"] == "sft-x" and parent["objective"] == "sft"
