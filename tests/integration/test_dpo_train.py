"""DPO end to end on a local Ray with 2 Ray Train workers (DeepSpeed ZeRO-2, LoRA): a
synthetic preference a tiny model can learn (chosen answers quote the context sentence of the
prompt and end with the citation marker "[1]"; rejected answers are off-topic), run through
``llmops finetune --config dpo_lora_tiny_cpu``. Held-out reward accuracy rises from chance
(0.5: policy == reference) to >= 0.8, and greedy generations cite "[1]" more often than before.

The start is a random-init model with a tokenizer trained on this task's own sentences (fixed
text, so the model does not change with the repository's sources). With the suite's shared
tiny model, whose tokenizer is trained on the project's source files, the greedy "[1]" count
after DPO swung between 0 and 9 of 12 from one commit to the next; with this one it went from
0 to 20 (seed 0) and 16 (seed 1) of 24.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPICS = ["the river", "the castle", "a violin", "the harbour", "a glacier", "the library", "a comet", "the orchard",
          "a lighthouse", "the desert", "a volcano", "the market", "a bridge", "the forest", "a telescope",
          "the bakery", "a canyon", "the island", "a windmill", "the museum"]
FACTS = ["is older than the town", "was rebuilt after the storm", "is visited every spring", "has a blue door",
         "is measured each winter", "was painted by students", "stands near the station", "is open at night"]
OFF_TOPIC = ["Bananas are yellow and sweet.", "My cat sleeps all day long.", "Football is played with a ball.",
             "Pasta needs salted water.", "The weather might change soon.", "I like green socks."]


def _pairs(seed: int, topics: list[str], n: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sentence = f"{rng.choice(topics).capitalize()} {rng.choice(FACTS)}."
        prompt = f"Context: {sentence}\nQuestion: what does the context say?"
        rows.append({"prompt": prompt, "chosen": f"{sentence} [1]", "rejected": rng.choice(OFF_TOPIC), "id": f"p{seed}-{i}"})
    return rows


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    from llmops_ray.common.pairs import PreferencePair, write_pairs

    root = tmp_path_factory.mktemp("pairs")
    train, held = root / "train.jsonl", root / "heldout.jsonl"
    write_pairs(train, [PreferencePair(**r) for r in _pairs(0, TOPICS[:14], 72)], {"sources": ["synthetic"]})
    write_pairs(held, [PreferencePair(**r) for r in _pairs(1, TOPICS[14:], 24)], {"sources": ["synthetic"]})
    return train, held


@pytest.fixture(scope="module")
def dpo_model_dir(tmp_path_factory):
    """A random-init tiny Llama whose tokenizer is trained on this task's sentences."""
    from llmops_ray.models.base import TinyModelConfig, build_random_model_dir

    texts = [f"Context: {t.capitalize()} {f}.\nQuestion: what does the context say?\n{t.capitalize()} {f}. [1]"
             for t in TOPICS for f in FACTS] + OFF_TOPIC * 20
    config = TinyModelConfig(vocab_size=1024, num_hidden_layers=2, intermediate_size=512)
    return build_random_model_dir(texts, tmp_path_factory.mktemp("dpo-model"), config)


def _cli_finetune(*args: str) -> dict:
    """``llmops finetune ...`` in-process; its last stdout line is the result JSON."""
    import contextlib
    import io

    from llmops_ray.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(["finetune", *args])
    assert exc.value.code == 0, out.getvalue()[-3000:]
    return json.loads(out.getvalue().strip().splitlines()[-1])


DPO_ARGS = ["--config", "dpo_lora_tiny_cpu", "run_name=test-dpo", "data.max_seq_len=64", "optim.lr=5e-3",
            "dpo.beta=0.1", "checkpoint.every_steps=100", "log_every=4"]


@pytest.fixture(scope="module")
def dpo_run(ray_session, dpo_model_dir, pair_files):
    """3 epochs (24 steps), then the same run name with 4 epochs: resumes at step 24."""
    train, _ = pair_files
    data = [f"base_model={dpo_model_dir}", f"data.path={train}"]
    first = _cli_finetune(*DPO_ARGS, *data, "optim.epochs=3")
    second = _cli_finetune(*DPO_ARGS, *data, "optim.epochs=4")
    return first, second


def _load(model_dir, adapter: str | None):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    if adapter:
        model = PeftModel.from_pretrained(base, adapter).eval()
    else:  # "before": a fresh adapter (B = 0), i.e. the policy DPO starts from
        model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"])).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def _cites(model, tokenizer, prompts: list[str]) -> int:
    import torch

    count = 0
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        count += "[1]" in tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return count


def test_dpo_raises_held_out_reward_accuracy_and_citations(dpo_run, dpo_model_dir, pair_files):
    from llmops_ray.common.pairs import pairs_sha256, read_pairs
    from llmops_ray.models.preference import pair_rewards, reward_accuracy

    first, dpo_run = dpo_run
    out = Path(dpo_run["output_dir"])
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["objective"] == "dpo" and lineage["kind"] == "lora-adapter"
    assert lineage["dataset"]["pairs_sha256"] == {str(pair_files[0]): pairs_sha256(pair_files[0])}
    held = [p.model_dump() for p in read_pairs(pair_files[1])]
    before_model, tokenizer = _load(dpo_model_dir, None)
    before = reward_accuracy(pair_rewards(before_model, None, tokenizer, held, beta=0.1))
    after_model, _ = _load(dpo_model_dir, str(out))
    after = reward_accuracy(pair_rewards(after_model, None, tokenizer, held, beta=0.1))
    assert before == pytest.approx(0.5) and after >= 0.8, (before, after)
    prompts = [p["prompt"] for p in held]
    cites_before, cites_after = _cites(before_model, tokenizer, prompts), _cites(after_model, tokenizer, prompts)
    assert cites_after >= cites_before + 6, (cites_before, cites_after)
    print(f"held-out reward accuracy {before:.3f} -> {after:.3f}; '[1]' in {cites_before} -> {cites_after} "
          f"of {len(prompts)} greedy answers; val {dpo_run['metrics']}")
    metrics = dpo_run["metrics"]
    assert metrics["val_reward_accuracy"] >= 0.8 and metrics["val_reward_margin"] > 0
    assert lineage["dataset"]["truncated"] >= 0 and lineage["dataset"]["train_rows"] + lineage["dataset"]["val_rows"] == 72


def test_rerun_resumes_dpo_at_the_saved_step(dpo_run):
    first, second = dpo_run
    assert first["metrics"]["steps"] == 24 and second["metrics"]["steps"] == 32
    assert second["metrics"]["restarts"] == 1
    # The step-24 checkpoint was restored: the first 24 steps' history (DPO metrics included) is kept.
    assert first["metrics"]["first_train_loss"] == pytest.approx(second["metrics"]["first_train_loss"])
    assert first["metrics"]["first_train_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1


def test_full_dpo_uses_a_frozen_reference_copy(ray_session, dpo_model_dir, pair_files, tmp_path):
    """``method: full``: every weight trains, the reference is a frozen copy of the start."""
    train, _ = pair_files
    out = _cli_finetune("--config", "dpo_lora_tiny_cpu", f"base_model={dpo_model_dir}", f"data.path={train}",
                        "run_name=test-dpo-full", "method=full", "data.max_seq_len=48", "optim.max_steps=4", "optim.warmup_steps=0",
                        "optim.lr=1e-3", "log_every=1", f"output_dir={tmp_path / 'full'}")
    assert out["metrics"]["steps"] == 4
    assert out["metrics"]["first_train_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == frozen reference
    assert out["metrics"]["train_loss"] < out["metrics"]["first_train_loss"]
    lineage = json.loads((tmp_path / "full" / "lineage.json").read_text())
    assert lineage["kind"] == "full-model" and lineage["objective"] == "dpo"
    assert (tmp_path / "full" / "model.safetensors").is_file()
