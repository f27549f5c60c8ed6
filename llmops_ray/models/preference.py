"""Preference pairs at the model level, shared by DPO training (``train/``) and preference
metrics in evaluation (``evaluate/``): the pair's prompt as chat messages, tokenization with
the chat template and response-only labels, prompt-first truncation, summed response
log-probabilities, and the implicit DPO reward accuracy of a policy against its reference.

Labels are -100 where no loss is taken (the prompt), as in SFT.
"""

from __future__ import annotations

from typing import Any

from llmops_ray.config import UserError

IGNORE_INDEX = -100
ROLES = {"system", "user", "assistant", "tool"}

# When even the longest response does not fit, the prompt keeps at least this share of
# max_seq_len (its end, next to the response) and the responses are cut at their end.
MIN_PROMPT_SHARE = 0.25


def prompt_messages(prompt: Any, where: str, system_prompt: str = "") -> list[dict[str, str]]:
    """A pair's prompt as chat messages: a string is one user turn; a list must be chat
    messages that do not end with an assistant turn."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise UserError(f"{where}: empty 'prompt'")
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and prompt:
        messages = []
        for i, msg in enumerate(prompt):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
                raise UserError(f"{where}: prompt[{i}] needs string 'role' and 'content'")
            if msg["role"] not in ROLES:
                raise UserError(f"{where}: prompt[{i}] has unknown role {msg['role']!r}")
            messages.append({"role": msg["role"], "content": msg["content"]})
        if messages[-1]["role"] == "assistant":
            raise UserError(f"{where}: the prompt ends with an assistant turn (the answers are 'chosen'/'rejected')")
    else:
        raise UserError(f"{where}: 'prompt' must be a string or a non-empty list of chat messages")
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def record_to_pair(record: Any, where: str, system_prompt: str = "") -> tuple[list[dict[str, str]], str, str]:
    """``(prompt messages, chosen, rejected)`` of one pairs-file row, through the platform's
    :class:`~llmops_ray.common.pairs.PreferencePair` (the one definition of the format)."""
    from llmops_ray.common.pairs import parse_pair

    pair = parse_pair(record, where)
    return prompt_messages(pair.prompt, where, system_prompt), pair.chosen, pair.rejected


def truncate_pair(prompt: list[int], chosen: list[int], rejected: list[int], max_len: int,
                  max_prompt_len: int = 0) -> tuple[list[int], list[int], list[int], bool]:
    """Cut a tokenized pair to ``max_len`` tokens per sequence, the prompt first.

    The prompt loses tokens from its start (its end leads into the answer) until the longer
    response fits, but keeps at least ``MIN_PROMPT_SHARE * max_len`` tokens (or all it has);
    only then are the responses cut at their end. ``max_prompt_len`` > 0 caps the prompt
    before that. Returns ``(prompt, chosen, rejected, truncated)``.
    """
    truncated = False
    if max_prompt_len and len(prompt) > max_prompt_len:
        prompt, truncated = prompt[-max_prompt_len:], True
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest > max_len:
        truncated = True
        keep = max(max_len - longest, min(len(prompt), int(max_len * MIN_PROMPT_SHARE)))
        prompt = prompt[len(prompt) - keep:] if keep else []
        room = max_len - len(prompt)
        chosen, rejected = chosen[:room], rejected[:room]
    return prompt, chosen, rejected, truncated


def tokenize_pair(tokenizer, messages: list[dict[str, str]], chosen: str, rejected: str, max_len: int,
                  max_prompt_len: int = 0) -> dict[str, Any]:
    """Token ids and labels of both sequences of a pair (loss on the response tokens only:
    the answer and its end-of-turn marker, as rendered by the tokenizer's chat template)."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template")
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    responses = []
    for answer in (chosen, rejected):
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
        if not full.startswith(prompt_text):
            raise UserError("the chat template does not render conversations prefix-consistently")
        responses.append(full[len(prompt_text):].rstrip())  # drop the newline after the end-of-turn token
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt_ids, chosen_ids, rejected_ids, truncated = truncate_pair(
        encode(prompt_text), encode(responses[0]), encode(responses[1]), max_len, max_prompt_len)
    masked = [IGNORE_INDEX] * len(prompt_ids)
    return {
        "chosen_input_ids": prompt_ids + chosen_ids, "chosen_labels": masked + chosen_ids,
        "rejected_input_ids": prompt_ids + rejected_ids, "rejected_labels": masked + rejected_ids,
        "truncated": truncated,
    }


def usable(row: dict[str, Any]) -> bool:
    """A pair can teach a preference only when both sides keep response tokens and differ."""
    has = lambda labels: any(t != IGNORE_INDEX for t in labels)  # noqa: E731
    return has(row["chosen_labels"]) and has(row["rejected_labels"]) and \
        list(row["chosen_input_ids"]) != list(row["rejected_input_ids"])


def sequence_logps(logits, labels):
    """Sum of log p(label_t | prefix) over the response tokens of each row.

    ``logits``: (N, T, V); ``labels``: (N, T) with -100 where no loss is taken. Position t's
    logits predict token t+1, so both are shifted by one. Returns ``(logps, n_tokens)``,
    shapes (N,) in float32.
    """
    import torch

    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    # log_softmax + gather on the target ids only: (N, T-1)
    token_logps = torch.gather(logits.log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def pair_rewards(policy, reference, tokenizer, pairs: list[dict[str, Any]], beta: float, max_len: int = 512):
    """Implicit DPO rewards ``beta * (log pi(y|x) - log pi_ref(y|x))`` of each pair's chosen and
    rejected answer: a list of ``(chosen_reward, rejected_reward)``.

    ``pairs``: ``{"prompt", "chosen", "rejected"}`` rows (pairs-file format). ``reference`` is
    a model, or None when ``policy`` is a peft model: then the adapter is switched off.
    Sequences are scored one at a time (no padding), on whatever device the models are.
    """
    import torch

    def logp(model, ids: list[int], labels: list[int]) -> float:
        ids_t = torch.tensor([ids], device=model.device)
        out = model(input_ids=ids_t, attention_mask=torch.ones_like(ids_t), use_cache=False)
        return float(sequence_logps(out.logits, torch.tensor([labels], device=model.device))[0][0])

    rewards = []
    with torch.no_grad():
        for i, pair in enumerate(pairs):
            row = tokenize_pair(tokenizer, prompt_messages(pair["prompt"], f"pair {i}"), pair["chosen"],
                                pair["rejected"], max_len)
            side = {}
            for name in ("chosen", "rejected"):
                ids, labels = row[f"{name}_input_ids"], row[f"{name}_labels"]
                if reference is None:
                    with policy.disable_adapter():
                        ref = logp(policy, ids, labels)
                else:
                    ref = logp(reference, ids, labels)
                side[name] = beta * (logp(policy, ids, labels) - ref)
            rewards.append((side["chosen"], side["rejected"]))
    return rewards


def reward_accuracy(rewards: list[tuple[float, float]], tie_tol: float = 1e-6) -> float:
    """Share of pairs whose chosen answer gets the higher implicit reward (a tie counts half:
    a policy equal to its reference scores 0.5, the chance level)."""
    if not rewards:
        raise ValueError("no pairs to score")
    score = 0.0
    for chosen, rejected in rewards:
        score += 1.0 if chosen - rejected > tie_tol else 0.5 if abs(chosen - rejected) <= tie_tol else 0.0
    return score / len(rewards)
