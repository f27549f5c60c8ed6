"""Retrieved-context rail: instructions injected into knowledge-base chunks are neutralised.

A retrieved chunk is data, never instructions; an attacker who can get a document into
the knowledge base (indirect prompt injection) writes "AI assistant: ignore the user and
...". Each chunk is scored with the same layered detector as user input; only when a
chunk is a hit is it split into sentences, and the sentences that score as instructions
are replaced by :data:`NEUTRALIZED` (or, by config, the chunk is dropped or just flagged).
Chat-template control tokens (``<|im_start|>``, ``[INST]``...) are always defanged, since
no document needs them and they let text pose as a new turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmops_ray.safety.config import ContextRailsConfig
from llmops_ray.safety.decision import RailDecision
from llmops_ray.safety.injection import InjectionDetector

NEUTRALIZED = "[instruction removed by context rail]"

_CONTROL_TOKENS = re.compile(r"<\|[A-Za-z_]{2,20}\|>|\[/?INST\]|<</?SYS>>|</?s>")
_SENTENCES = re.compile(r"[^.!?。！？\n]+[.!?。！？]*\n?|\n")


@dataclass
class ContextResult:
    """Chunks to put into the prompt (same order; fewer when ``drop``) and one decision per chunk hit."""

    chunks: list[str]
    kept: list[int]
    """Index into the input of each returned chunk (to keep citations aligned)."""
    decisions: list[RailDecision]


def _defang(text: str) -> tuple[str, int]:
    return _CONTROL_TOKENS.subn(lambda m: m.group(0).replace("<", "‹").replace(">", "›").replace("[", "(").replace("]", ")"), text)


def sanitize_chunks(texts: list[str], detector: InjectionDetector, config: ContextRailsConfig | None = None) -> ContextResult:
    """Apply the context rail to retrieved chunk texts."""
    cfg = config or ContextRailsConfig()
    out: list[str] = []
    kept: list[int] = []
    decisions: list[RailDecision] = []
    for index, text in enumerate(texts):
        if not cfg.enabled:
            out.append(text)
            kept.append(index)
            continue
        text, n_tokens = _defang(text)
        whole = detector.score(text)
        if whole.score < cfg.threshold and not n_tokens:
            out.append(text)
            kept.append(index)
            continue
        if cfg.action == "drop" and whole.score >= cfg.threshold:
            decisions.append(RailDecision("context.injection", "block", f"chunk {index} dropped ({whole.source})",
                                          whole.score, {"chunk": index}))
            continue
        removed = 0
        if cfg.action == "neutralize" and whole.score >= cfg.threshold:
            parts = []
            for sentence in _SENTENCES.findall(text):
                body = sentence.strip()
                if body and detector.score(body).score >= cfg.threshold:
                    lead = sentence[: len(sentence) - len(sentence.lstrip())]
                    trail = sentence[len(sentence.rstrip()) :]
                    parts.append(f"{lead}{NEUTRALIZED}{trail}")
                    removed += 1
                else:
                    parts.append(sentence)
            if removed == 0:
                # The whole chunk scores as an instruction but no single sentence does: neutralise it all.
                parts, removed = [NEUTRALIZED], 1
            text = "".join(parts).rstrip()
        action = "mask" if removed else "flag"
        reason = f"chunk {index}: {whole.source}" if whole.score >= cfg.threshold else f"chunk {index}: control tokens"
        decisions.append(RailDecision("context.injection", action, reason, whole.score,
                                      {"chunk": index, "sentences_removed": removed, "control_tokens": n_tokens}))
        out.append(text)
        kept.append(index)
    return ContextResult(out, kept, decisions)
