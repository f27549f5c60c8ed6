"""The DPO / IPO loss of ``llmops_ray.train.dpo`` against TRL's ``DPOTrainer`` on the same
model, reference and batch (TRL is a test-only dependency), the adapter-disabled reference,
and conservative label smoothing against the DPO paper's formula."""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from llmops_ray.train.config import DpoSettings  # noqa: E402
from llmops_ray.train.dpo import pair_logps, preference_loss, reference_logps  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny Llama, a reference that differs from it, and a tokenizer."""
    from llmops_ray.models.base import TinyModelConfig, init_llama, train_tokenizer

    texts = ["The cat sat on the mat. Ray Train runs DeepSpeed workers. [1] cites a source. " * 30]
    tokenizer = train_tokenizer(texts, vocab_size=320)
    config = TinyModelConfig(vocab_size=320, hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
                             num_key_value_heads=1, intermediate_size=128, max_position_embeddings=128)
    torch.manual_seed(0)
    policy = init_llama(config, tokenizer).float().eval()
    reference = init_llama(config.model_copy(update={"seed": 1}), tokenizer).float().eval()
    with torch.no_grad():  # make sure the two differ (different seeds may still share an init path)
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return policy, reference, tokenizer


def _examples(tokenizer):
    rows = [("The cat sat on", " the mat. [1]", " a train of thought"),
            ("Ray Train runs", " DeepSpeed workers [1]", " nothing"),
            ("Which source?", " [1] cites a source.", " the cat sat")]
    enc = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    return [{"prompt_ids": enc(p), "chosen_ids": enc(c), "rejected_ids": enc(r)} for p, c, r in rows]


def _trl_loss(policy, reference, tokenizer, inputs, beta: float, loss_type: str, tmp_path) -> float:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=beta, loss_type=[loss_type], report_to="none",
                     use_cpu=True, bf16=False, per_device_train_batch_size=3, max_length=None)
    dataset = Dataset.from_list([{"prompt": "The cat", "chosen": " sat", "rejected": " ran"}])
    # TRL patches the models it is given (fused LM head): hand it copies, not the fixture's.
    policy, reference = copy.deepcopy(policy), copy.deepcopy(reference)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=dataset,
                         processing_class=tokenizer)
    trainer.model.eval()
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, {k: v for k, v in inputs.items()}))


@pytest.mark.parametrize("loss_type, beta", [("sigmoid", 0.1), ("sigmoid", 2.0), ("ipo", 0.5)])
def test_loss_matches_trl_dpo_trainer_on_the_same_batch(tiny, tmp_path, loss_type, beta):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    policy, reference, tokenizer = tiny
    inputs = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(_examples(tokenizer))
    # Our batch: the same 2B rows (chosen first), labels -100 outside the completion.
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
             "labels": inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)}
    settings = DpoSettings(beta=beta, loss_type=loss_type)
    with torch.no_grad():
        chosen, rejected, chosen_n, rejected_n = pair_logps(policy, batch)
        ref_chosen, ref_rejected = reference_logps(policy, reference, batch)
        ours, _, _ = preference_loss(chosen, rejected, ref_chosen, ref_rejected, settings, chosen_n, rejected_n)
    theirs = _trl_loss(policy, reference, tokenizer, inputs, beta, loss_type, tmp_path)
    assert abs(float(ours.mean()) - theirs) < 1e-4, (float(ours.mean()), theirs)
    assert abs(theirs - (math.log(2) if loss_type == "sigmoid" else (1 / (2 * beta)) ** 2)) > 1e-3  # not a trivial batch


def test_reference_is_the_base_with_the_adapter_disabled(tiny):
    from peft import LoraConfig, get_peft_model

    policy, _, tokenizer = tiny
    base = copy.deepcopy(policy)
    peft_model = get_peft_model(copy.deepcopy(policy), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                  init_lora_weights=False))
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    with torch.no_grad():  # a strong adapter: the random base's attention is near uniform
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn_like(param))
    inputs = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(_examples(tokenizer))
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
             "labels": inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)}
    with torch.no_grad():
        ref_chosen, ref_rejected = reference_logps(peft_model, None, batch)
        base_chosen, base_rejected, _, _ = pair_logps(base, batch)
        adapted_chosen, _, _, _ = pair_logps(peft_model, batch)
    assert torch.allclose(ref_chosen, base_chosen, atol=1e-5) and torch.allclose(ref_rejected, base_rejected, atol=1e-5)
    assert not torch.allclose(adapted_chosen, base_chosen, atol=1e-3)  # the adapter is live outside the context


def test_label_smoothing_is_conservative_dpo():
    # margin m = (pc - rc) - (pr - rr) = (-4 - -5) - (-6 - -5) = 2; beta 0.5 -> z = 1.
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    eps = 0.2
    losses, chosen_r, rejected_r = preference_loss(t(-4.0), t(-6.0), t(-5.0), t(-5.0),
                                                   DpoSettings(beta=0.5, label_smoothing=eps))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = -(1 - eps) * math.log(sig(1.0)) - eps * math.log(sig(-1.0))
    assert float(losses[0]) == pytest.approx(expected, abs=1e-12)
    assert float(chosen_r[0]) == pytest.approx(0.5) and float(rejected_r[0]) == pytest.approx(-0.5)
    plain, _, _ = preference_loss(t(-4.0), t(-6.0), t(-5.0), t(-5.0), DpoSettings(beta=0.5))
    assert float(plain[0]) == pytest.approx(-math.log(sig(1.0)), abs=1e-12)


def test_ipo_needs_token_counts():
    t = lambda *v: torch.tensor(v)  # noqa: E731
    with pytest.raises(ValueError, match="token counts"):
        preference_loss(t(-1.0), t(-2.0), t(-1.0), t(-1.0), DpoSettings(loss_type="ipo"))


def test_sft_weight_adds_the_chosen_token_mean_nll(tiny):
    import torch.nn.functional as F
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from llmops_ray.train.dpo import dpo_micro_step

    policy, reference, tokenizer = tiny
    inputs = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(_examples(tokenizer))
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
             "labels": inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)}
    with torch.no_grad():
        plain, _ = dpo_micro_step(policy, policy, reference, batch, DpoSettings(beta=0.1))
        mixed, _ = dpo_micro_step(policy, policy, reference, batch, DpoSettings(beta=0.1, sft_weight=0.5))
        # Independent NLL: cross-entropy of each chosen row's response tokens, averaged per row.
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    half = batch["input_ids"].shape[0] // 2
    nll = [F.cross_entropy(logits[i, :-1], batch["labels"][i, 1:], ignore_index=-100) for i in range(half)]
    expected = float(plain) + 0.5 * float(torch.stack(nll).mean())
    assert float(mixed) == pytest.approx(expected, abs=1e-4)
    assert float(mixed) - float(plain) > 0.1  # the term is not negligible on this batch
