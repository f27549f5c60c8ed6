"""Pairwise LLM-as-judge with position swapping, shared by preference-pair building
(``data/``) and win-rate evaluation (``evaluate/``).

A judge model is asked which of two answers to one prompt is better, twice: once with the
first answer shown as A, once with it shown as B. Judges favour a position; asking both ways
and keeping only verdicts that agree cancels that bias. The outcome of one comparison is

* ``"first"`` / ``"second"``: both orders picked the same answer;
* ``"tie"``: both orders said the answers are equally good;
* ``"inconsistent"``: the two orders disagree (the judge followed the position, not the text);
* ``"undecided"``: a reply could not be parsed, or the request failed.

The transport is a plain callable ``ask(prompt_text) -> reply text or None`` so this module
needs no HTTP client; :func:`openai_asker` builds one for any OpenAI-compatible endpoint.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

from llmops_ray.config import UserError

PAIRWISE_PROMPT = (
    "You compare two answers to the same user prompt. Judge helpfulness, correctness and\n"
    "faithfulness to the prompt; ignore length and order.\n"
    "Reply with exactly one line: Verdict: A, Verdict: B, or Verdict: tie\n\n"
    "PROMPT:\n{prompt}\n\nANSWER A:\n{a}\n\nANSWER B:\n{b}\n"
)

#: One judge call: the full judge prompt in, the reply text out (None when the call failed).
Asker = Callable[[str], Optional[str]]

_VERDICT = re.compile(r"verdict\s*[:=]?\s*\**\s*(a|b|tie)\b", re.IGNORECASE)
_LONE = re.compile(r"^\s*\**\s*(a|b|tie)\s*\**\s*\.?\s*$", re.IGNORECASE)


def parse_verdict(reply: str | None) -> str | None:
    """``"Verdict: A"`` -> ``"A"``; ``"B"`` -> ``"B"``; ``"verdict: tie"`` -> ``"tie"``; else None."""
    if not reply:
        return None
    match = _VERDICT.search(reply) or _LONE.match(reply)
    if not match:
        return None
    word = match.group(1).lower()
    return "tie" if word == "tie" else word.upper()


def compare(ask: Asker, prompt: str, first: str, second: str) -> dict[str, Any]:
    """Judge ``first`` vs ``second`` for ``prompt`` in both orders.

    Returns ``{"outcome": first|second|tie|inconsistent|undecided, "verdicts": [v1, v2]}``
    where ``v1`` is the verdict with ``first`` shown as A and ``v2`` with it shown as B, both
    mapped to ``first`` / ``second`` / ``tie`` / None.
    """
    as_shown = ask(PAIRWISE_PROMPT.format(prompt=prompt, a=first, b=second))
    swapped = ask(PAIRWISE_PROMPT.format(prompt=prompt, a=second, b=first))
    v1 = {"A": "first", "B": "second", "tie": "tie"}.get(parse_verdict(as_shown) or "")
    v2 = {"A": "second", "B": "first", "tie": "tie"}.get(parse_verdict(swapped) or "")
    if v1 is None or v2 is None:
        outcome = "undecided"
    elif v1 == v2:
        outcome = v1
    else:
        outcome = "inconsistent"
    return {"outcome": outcome, "verdicts": [v1, v2]}


def openai_asker(base_url: str, model: str, api_key: str | None, timeout_s: float = 60.0,
                 max_tokens: int = 16) -> Asker:
    """An :data:`Asker` over an OpenAI-compatible chat endpoint (temperature 0).

    A refused configuration (401, 403, 404: wrong key, unknown model, wrong URL) raises
    :class:`UserError` at the first call: every later call would fail the same way, and a run
    of "undecided" verdicts would hide it. Any other failed request (timeout, 5xx, 429)
    answers None, so it counts as undecided rather than aborting a whole run; ``ask.errors``
    counts them and ``ask.last_error`` keeps the last one.
    """
    import openai
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=1)

    def ask(text: str) -> str | None:
        try:
            response = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": text}],
                temperature=0.0,
                max_tokens=max_tokens,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            raise UserError(f"judge {base_url} (model {model!r}) refused the request with HTTP {exc.status_code}: "
                            f"check its URL, model and API key") from None
        except Exception as exc:  # noqa: BLE001 - any transport/API failure is an undecided verdict
            ask.errors += 1  # type: ignore[attr-defined]
            ask.last_error = f"{type(exc).__name__}: {exc}"[:300]  # type: ignore[attr-defined]
            return None
        return response.choices[0].message.content if response.choices else None

    # Failed calls, so a caller can tell "the judge could not decide" from "the judge was down".
    ask.errors = 0  # type: ignore[attr-defined]
    ask.last_error = None  # type: ignore[attr-defined]
    return ask
