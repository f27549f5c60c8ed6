"""The guardrails the gateway calls on every request: one object per stack config.

Per request, in order (see each method)::

    rails = get_rails(stack.rails)                      # cached per config
    inp = rails.check_input(messages)                  # or check_prompt(prompt) for /v1/completions
                                                       # (raises InputTooLarge -> 413 past max_scan_chars)
    if inp.blocked: return 400, blocked_error_body(inp.blocked)
    messages = inp.messages                            # PII masked: send these to the engine and logs
    ctx = rails.check_context([hit["text"] for hit in hits])   # RAG only
    guard = rails.output_stream()                      # streaming: guard.feed(delta) / guard.finish()
    text, out_decisions = rails.check_output(answer)   # non-streaming

Every decision (:class:`~llmops_ray.safety.decision.RailDecision`) goes to metrics/logs
with ``to_log()``.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from llmops_ray.safety.config import RailsConfig
from llmops_ray.safety.context import ContextResult, sanitize_chunks
from llmops_ray.safety.decision import InputTooLarge, RailDecision
from llmops_ray.safety.injection import InjectionDetector, InjectionScore
from llmops_ray.safety.moderation import moderation_score
from llmops_ray.safety.output_rail import OutputStreamGuard, check_output
from llmops_ray.safety.pii import mask_pii

# Roles whose text may carry an attack: everything but the operator's system prompt.
_TRUSTED_ROLES = frozenset({"system", "developer"})
#: User turns scored together (besides each one alone) to catch set-ups spread over turns.
MULTI_TURN_WINDOW = 3


@dataclass
class InputResult:
    """Outcome of the input rails on one request."""

    messages: Any
    """The request's messages (or prompt) with PII masked: what the engine and logs may see."""
    decisions: list[RailDecision] = field(default_factory=list)
    blocked: RailDecision | None = None
    """The first blocking decision, or None."""


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        return [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def text_chars(messages: Any) -> int:
    """Characters of text the input rails would scan in a request's messages (all roles).

    Cheap (no scanning): the gateway hook uses it to decide whether to run the rails off the
    event loop, and :meth:`Rails.check_input` to enforce ``max_scan_chars`` before any work.
    """
    if not isinstance(messages, list):
        return 0
    return sum(len(t) for m in messages if isinstance(m, dict) for t in _texts(m.get("content")))


def prompt_chars(prompt: Any) -> int:
    """Characters of text in a ``/v1/completions`` prompt (a string or a list of them)."""
    prompts = [prompt] if isinstance(prompt, str) else (prompt if isinstance(prompt, list) else [])
    return sum(len(p) for p in prompts if isinstance(p, str))


def _mask_content(content: Any, counts: dict[str, int]) -> Any:
    def one(text: str) -> str:
        masked, c = mask_pii(text)
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
        return masked

    if isinstance(content, str):
        return one(content)
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part = {**part, "text": one(part["text"])}
            out.append(part)
        return out
    return content


class Rails:
    """Input, context and output rails for one :class:`RailsConfig` (thread-safe, reusable)."""

    def __init__(self, config: RailsConfig | None = None):
        self.config = config or RailsConfig()
        need_detector = self.config.enabled and (self.config.input.injection or self.config.context.enabled)
        self.detector = InjectionDetector(use_classifier=self.config.input.injection_classifier) if need_detector else None

    # ------------------------------------------------------------------ input

    def check_input(self, messages: list[dict[str, Any]], param: str = "messages") -> InputResult:
        """Injection check on non-system messages, then PII masking of every message.

        Raises :class:`~llmops_ray.safety.decision.InputTooLarge` (HTTP 413) before any
        scanning when the messages hold more than ``max_scan_chars`` characters of text.
        """
        cfg = self.config.input
        if not self.config.enabled:
            return InputResult(messages)
        messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        chars = text_chars(messages)
        if chars > self.config.max_scan_chars:
            raise InputTooLarge(chars, self.config.max_scan_chars, param)
        texts = [t for m in messages if m.get("role") not in _TRUSTED_ROLES for t in _texts(m.get("content"))]
        # Multi-turn set-ups ("remember that 42 means yes" ... "42. Now do X") are harmless
        # turn by turn: the last user turns are also scored together, as one text.
        user_turns = [" ".join(_texts(m.get("content"))) for m in messages if m.get("role") == "user"]
        window = "\n\n".join(user_turns[-MULTI_TURN_WINDOW:]) if len(user_turns) >= 2 else None
        if cfg.scan_system:
            texts.extend(t for m in messages if m.get("role") in _TRUSTED_ROLES for t in _texts(m.get("content")))
        decisions, blocked = self._screen(texts, window)
        if blocked is not None:
            return InputResult(messages, decisions, blocked)
        if cfg.pii:
            counts: dict[str, int] = {}
            masked = [{**m, "content": _mask_content(m.get("content"), counts)} if "content" in m else m for m in messages]
            decision, blocked = self._pii_decision(counts)
            decisions.append(decision)
            if blocked is not None:
                return InputResult(messages, decisions, blocked)
            if cfg.pii_action == "mask":
                messages = masked
        return InputResult(messages, decisions, None)

    def check_prompt(self, prompt: str | list[str]) -> InputResult:
        """The same rails for ``/v1/completions`` (a prompt string or a list of them)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        result = self.check_input([{"role": "user", "content": p} for p in prompts], param="prompt")
        if result.blocked is None:
            texts = [m["content"] for m in result.messages]
            result.messages = texts[0] if isinstance(prompt, str) else texts
        else:
            result.messages = prompt
        return result

    def _screen(self, texts: list[str], window: str | None = None) -> tuple[list[RailDecision], RailDecision | None]:
        cfg = self.config.input
        decisions: list[RailDecision] = []
        if cfg.injection and self.detector is not None:
            best = None
            for text in texts:
                s = self.detector.score(text)
                if best is None or s.score > best.score:
                    best = s
            if window is not None and (best is None or best.score < cfg.injection_threshold):
                # The joined turns: the classifier only (the patterns saw each turn already).
                s = self.detector.score_classifier(window)
                if best is None or s.score > best.score:
                    best = InjectionScore(s.score, "classifier:multi_turn", s.pattern, s.classifier)
            if best is not None and best.score >= cfg.injection_threshold:
                d = RailDecision("input.injection", cfg.injection_action, f"prompt injection detected ({best.source})", best.score)
                decisions.append(d)
                if d.blocked:
                    return decisions, d
            else:
                decisions.append(RailDecision("input.injection", "allow", "", best.score if best else 0.0))
        if cfg.moderation:
            score, category = max((moderation_score(t) for t in texts), default=(0.0, None), key=lambda x: x[0])
            if score >= self.config.output.moderation_threshold:
                d = RailDecision("input.moderation", "block", f"category {category}", score)
                decisions.append(d)
                return decisions, d
            decisions.append(RailDecision("input.moderation", "allow", "", score))
        return decisions, None

    def _pii_decision(self, counts: dict[str, int]) -> tuple[RailDecision, RailDecision | None]:
        n = sum(counts.values())
        if not n:
            return RailDecision("input.pii", "allow", "", 0.0), None
        action = self.config.input.pii_action
        d = RailDecision("input.pii", action, f"{n} PII value(s) in the request", 1.0, dict(counts))
        return d, (d if action == "block" else None)

    # ------------------------------------------------------------------ context

    def check_context(self, chunks: list[str]) -> ContextResult:
        """Retrieved chunk texts -> neutralised chunks (``kept`` maps them back to hits) + decisions.

        Chunks are scanned in order while their total stays within ``max_scan_chars``; the
        chunks after that are dropped (decision ``context.size``), never passed unscanned.
        """
        if not self.config.enabled or self.detector is None:
            return ContextResult(list(chunks), list(range(len(chunks))), [])
        budget = self.config.max_scan_chars
        fit = 0
        while fit < len(chunks) and len(chunks[fit]) <= budget:
            budget -= len(chunks[fit])
            fit += 1
        result = sanitize_chunks(chunks[:fit], self.detector, self.config.context)
        for index in range(fit, len(chunks)):
            result.decisions.append(RailDecision(
                "context.size", "block", f"chunk {index} dropped: retrieved text exceeds the scan limit "
                f"({self.config.max_scan_chars} characters)", 1.0, {"chunk": index, "limit": self.config.max_scan_chars}))
        return result

    # ------------------------------------------------------------------ output

    def output_stream(self) -> OutputStreamGuard:
        """A fresh guard for one streamed answer (``feed(delta)`` per chunk, ``finish()`` at the end)."""
        cfg = self.config.output
        if not self.config.enabled:
            return OutputStreamGuard(cfg.model_copy(update={"pii": False, "moderation": False, "links": False}))
        return OutputStreamGuard(cfg, self.config.max_scan_chars)

    def check_output(self, text: str) -> tuple[str, list[RailDecision]]:
        """A whole (non-streamed) answer: (text to send, decisions)."""
        if not self.config.enabled:
            return text, []
        return check_output(text, self.config.output, self.config.max_scan_chars)

    def output_blocked(self, decisions: list[RailDecision]) -> RailDecision | None:
        """The blocking decision among output decisions, if any (finish_reason ``content_filter``)."""
        return next((d for d in decisions if d.blocked), None)


_RAILS: dict[str, Rails] = {}
_RAILS_LOCK = threading.Lock()


def get_rails(config: RailsConfig | dict | None = None) -> Rails:
    """A shared :class:`Rails` per distinct config (the classifier loads once per process)."""
    if config is None:
        config = RailsConfig()
    elif isinstance(config, dict):
        config = RailsConfig.model_validate(copy.deepcopy(config))
    key = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    with _RAILS_LOCK:
        rails = _RAILS.get(key)
        if rails is None:
            rails = _RAILS[key] = Rails(config)
        return rails
