"""Pairwise evaluation: the candidate stack against a baseline (by default the stack's
``production``) on the same prompts, judged in both orders (:mod:`llmops_ray.common.pairwise`),
and the candidate's implicit-reward accuracy on a held-out pairs file.

``win_rate`` = (wins + ties / 2) / decided comparisons; inconsistent verdicts (the two orders
disagree) and undecided ones (unparseable reply, failed call) are left out and counted.
"""

from __future__ import annotations

import os
from typing import Any, Callable

OUTCOMES = ("first", "second", "tie", "inconsistent", "undecided")


def win_rate(outcomes: list[str]) -> dict[str, Any]:
    """Counts of each outcome (``first`` = the candidate won) and the win rate, ties half;
    ``win_rate`` is None when no comparison was decided."""
    counts = {o: outcomes.count(o) for o in OUTCOMES}
    decided = counts["first"] + counts["second"] + counts["tie"]
    rate = (counts["first"] + 0.5 * counts["tie"]) / decided if decided else None
    return {"win_rate": rate, "wins": counts["first"], "losses": counts["second"], "ties": counts["tie"],
            "inconsistent": counts["inconsistent"], "undecided": counts["undecided"], "decided": decided}


def judge_pairs(ask: Callable[[str], str | None], cases: list[dict[str, str]]) -> tuple[dict[str, Any], list[dict]]:
    """Compare ``cases`` (``prompt``, ``candidate``, ``baseline`` answers) with position swapping.

    Returns ``(summary, per_case)``: :func:`win_rate` of the outcomes, and each case's outcome
    with its two verdicts.
    """
    from llmops_ray.common.pairwise import compare

    rows = []
    for case in cases:
        verdict = compare(ask, case["prompt"], case["candidate"], case["baseline"])
        rows.append({**verdict, "prompt": case["prompt"]})
    return win_rate([r["outcome"] for r in rows]), rows


def judge_asker(judge) -> Callable[[str], str | None]:
    """The suite's :class:`~llmops_ray.evaluate.suite.JudgeConfig` as an asker."""
    from llmops_ray.common.pairwise import openai_asker

    return openai_asker(judge.base_url, judge.model, os.environ.get(judge.api_key_env), timeout_s=judge.timeout_s)


def resolve_baseline(candidate, baseline_ref: str | None):
    """The stack version the pairwise items compare against, or None when there is none (no
    ``production`` yet) or it is the candidate itself."""
    from llmops_ray.config import UserError
    from llmops_ray.registry import resolve_stack

    try:
        baseline = resolve_stack(baseline_ref or f"{candidate.name}@production")
    except UserError:
        if baseline_ref:  # named explicitly: a typo must not pass silently
            raise
        return None
    if baseline.name == candidate.name and baseline.version == candidate.version:
        return None
    return baseline


def heldout_reward_accuracy(stack, baseline, pairs_path: str, max_len: int = 512) -> dict[str, Any] | None:
    """Implicit DPO reward accuracy of ``stack`` on a pairs file (ties count half).

    The reference is what the policy is measured against: for a LoRA stack its base model
    with the adapter disabled, for a full model the baseline stack's model (None -> skipped).
    """
    from llmops_ray.common.pairs import read_pairs
    from llmops_ray.evaluate.generate import materialize_model
    from llmops_ray.models.base import load_causal_lm, load_tokenizer
    from llmops_ray.models.preference import pair_rewards, reward_accuracy

    pairs = [p.model_dump() for p in read_pairs(pairs_path)]
    if not pairs:
        return None
    if stack.adapter:
        from peft import PeftModel

        policy = PeftModel.from_pretrained(load_causal_lm(stack.base_model), stack.adapter).eval()
        reference = None
        if os.path.isfile(os.path.join(stack.adapter, "tokenizer_config.json")):  # fine-tuning outputs carry theirs
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(stack.adapter)
        else:
            tokenizer = load_tokenizer(stack.base_model)
    else:
        if baseline is None:
            return None
        policy = load_causal_lm(stack.base_model).eval()
        ref_dir = materialize_model(baseline.base_model, baseline.adapter, f"{baseline.name}-v{baseline.version}")
        reference = load_causal_lm(ref_dir).eval()
        tokenizer = load_tokenizer(stack.base_model)
    rewards = pair_rewards(policy, reference, tokenizer, pairs, beta=1.0, max_len=max_len)
    return {"reward_accuracy": reward_accuracy(rewards), "pairs": len(pairs)}
