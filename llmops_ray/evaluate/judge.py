"""LLM-as-judge of groundedness through any OpenAI-compatible endpoint.

The judge is asked for ``Score: N`` (1-5). Replies that cannot be parsed, and requests
that fail, are counted (``judge_parse_failures``) and left out of the mean; the mean is
``None`` when nothing parsed, never NaN.
"""

from __future__ import annotations

import os
import re
from typing import Any

JUDGE_PROMPT = (
    "You grade whether an ANSWER is supported by a CONTEXT.\n"
    "5 = every claim is stated in the context; 1 = unsupported or contradicted.\n"
    "Reply with exactly one line: Score: <1-5>\n\n"
    "CONTEXT:\n{context}\n\nQUESTION:\n{question}\n\nANSWER:\n{answer}\n"
)

_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*([1-5])(?![0-9.])", re.IGNORECASE)
_LONE = re.compile(r"^\s*\**([1-5])\**\s*(?:/\s*5)?\s*\.?\s*$")


def parse_score(reply: str | None) -> int | None:
    """``"Score: 4"`` -> 4; a bare ``"4"`` or ``"4/5"`` -> 4; anything else -> None."""
    if not reply:
        return None
    match = _SCORE.search(reply)
    if match:
        return int(match.group(1))
    match = _LONE.match(reply.strip())
    return int(match.group(1)) if match else None


def judge_groundedness(config, cases: list[dict[str, str]]) -> dict[str, Any]:
    """Score ``cases`` (``question``, ``context``, ``answer``) with the configured judge.

    Returns ``{"judge_groundedness": mean of (score-1)/4 or None, "judge_calls": n,
    "judge_parse_failures": m, "scores": [int | None, ...]}``.
    """
    from openai import OpenAI

    client = OpenAI(base_url=config.base_url, api_key=os.environ.get(config.api_key_env) or "none",
                    timeout=config.timeout_s, max_retries=0)
    scores: list[int | None] = []
    for case in cases:
        try:
            response = client.chat.completions.create(
                model=config.model,
                messages=[{"role": "user", "content": JUDGE_PROMPT.format(**case)}],
                temperature=0.0,
                max_tokens=16,
            )
            reply = response.choices[0].message.content if response.choices else None
        except Exception:  # noqa: BLE001 - any transport/API failure counts as a failed judgement
            reply = None
        scores.append(parse_score(reply))
    parsed = [(s - 1) / 4 for s in scores if s is not None]
    return {
        "judge_groundedness": sum(parsed) / len(parsed) if parsed else None,
        "judge_calls": len(cases),
        "judge_parse_failures": sum(s is None for s in scores),
        "scores": scores,
    }
