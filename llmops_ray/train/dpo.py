"""Direct preference optimisation (DPO / IPO) on the fine-tuning loop: the loss, the
sequence log-probabilities it compares, and one micro-step against the reference model.

A DPO micro-batch holds B pairs as 2B rows, the B chosen rows first, then the B rejected
rows (:func:`llmops_ray.train.dpo_data.collate_pairs`), so the policy and the reference each
take one forward pass per micro-batch. Labels are -100 outside the response tokens, as in SFT.

The reference is the model the run starts from: with LoRA, the same module with its adapter
disabled (``PeftModel.disable_adapter()``: no second copy of the weights); with
``method: full``, a frozen copy loaded next to the engine.
"""

from __future__ import annotations

from typing import Any

from llmops_ray.models.preference import sequence_logps
from llmops_ray.train.config import DpoSettings


def preference_loss(
    policy_chosen,
    policy_rejected,
    ref_chosen,
    ref_rejected,
    settings: DpoSettings,
    chosen_tokens=None,
    rejected_tokens=None,
):
    """Per-pair loss and rewards from summed response log-probs (all tensors of shape (B,)).

    - ``sigmoid`` (DPO, Rafailov et al. 2023, eq. 7), with conservative label smoothing eps:
      ``-(1-eps) log sigma(beta m) - eps log sigma(-beta m)``, m = chosen log-ratio - rejected log-ratio.
    - ``ipo`` (Azar et al. 2023, eq. 17): ``(m' - 1/(2 beta))^2`` where m' uses log-ratios
      averaged over each response's tokens (``chosen_tokens`` / ``rejected_tokens``).

    Returns ``(losses, chosen_rewards, rejected_rewards)``; rewards are ``beta * log-ratio``
    (detached), the implicit reward DPO assigns each response.
    """
    import torch.nn.functional as F

    beta = settings.beta
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if settings.loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the IPO loss needs the response token counts")
        margin = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (margin - 1.0 / (2.0 * beta)) ** 2
    else:
        logits = beta * (chosen_ratio - rejected_ratio)
        eps = settings.label_smoothing
        losses = -(1.0 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def pair_logps(model, batch):
    """Summed response log-probs of the chosen and rejected halves of a pair batch, and
    their token counts: ``(chosen, rejected, chosen_n, rejected_n)``, each (B,)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logps, n_tokens = sequence_logps(out.logits, batch["labels"])
    half = logps.shape[0] // 2
    return logps[:half], logps[half:], n_tokens[:half], n_tokens[half:]


def reference_logps(module, ref_model, batch):
    """The reference model's ``(chosen, rejected)`` log-probs, without gradients.

    ``ref_model`` is a frozen copy (full fine-tuning) or None: then ``module`` is a peft
    model and the reference is the same weights with the adapter switched off.
    """
    import torch

    with torch.no_grad():
        if ref_model is not None:
            chosen, rejected, _, _ = pair_logps(ref_model, batch)
        else:
            with module.disable_adapter():
                chosen, rejected, _, _ = pair_logps(module, batch)
    return chosen, rejected


def dpo_micro_step(policy, module, ref_model, batch, settings: DpoSettings) -> tuple[Any, dict[str, float]]:
    """Mean loss of one pair micro-batch (with grad, through ``policy``: the DeepSpeed engine)
    and its metric sums over the pairs (``pairs``, ``reward_accuracy``, ``reward_margin``, ...).

    The reference pass runs first so its activations are freed before the policy's.
    """
    ref_chosen, ref_rejected = reference_logps(module, ref_model, batch)
    chosen, rejected, chosen_n, rejected_n = pair_logps(policy, batch)
    losses, chosen_rewards, rejected_rewards = preference_loss(
        chosen, rejected, ref_chosen, ref_rejected, settings, chosen_n, rejected_n)
    if settings.sft_weight:
        losses = losses + settings.sft_weight * chosen_nll(chosen, chosen_n)
    return losses.mean(), pair_metric_sums(losses, chosen_rewards, rejected_rewards, chosen, rejected)


def chosen_nll(chosen_logps, chosen_tokens):
    """Per-pair negative log-likelihood of the chosen response, averaged over its tokens: (B,)."""
    return -chosen_logps / chosen_tokens.clamp(min=1)


def pair_metric_sums(losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps) -> dict[str, float]:
    """Sums over a micro-batch's pairs (divided by ``pairs`` after summing over ranks)."""
    return {
        "pairs": float(losses.shape[0]),
        "loss_sum": float(losses.detach().sum()),
        "reward_accuracy": float((chosen_rewards > rejected_rewards).float().sum()),
        "reward_margin": float((chosen_rewards - rejected_rewards).sum()),
        "reward_chosen": float(chosen_rewards.sum()),
        "reward_rejected": float(rejected_rewards.sum()),
        "logps_chosen": float(chosen_logps.detach().sum()),
        "logps_rejected": float(rejected_logps.detach().sum()),
    }


def mean_pair_metrics(sums: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Per-pair means of :func:`pair_metric_sums` (summed over micro-batches and ranks)."""
    n = max(sums.get("pairs", 0.0), 1.0)
    return {f"{prefix}{k}": v / n for k, v in sums.items() if k not in ("pairs", "loss_sum")}
