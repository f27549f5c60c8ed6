"""Prompt tokens counted with the served model's own tokenizer, before the engine runs.

The gateway reserves quota for a request before it is generated (prompt + ``max_tokens``
x ``n``), so the count must be the engine's, not a characters/4 guess: a prompt of digits
or Chinese text has several times more tokens than characters/4. Tokenizers are loaded
once per gateway replica from the model's source (the same directory or hub id vLLM
loads) and run off the event loop. A model whose tokenizer cannot be loaded is counted
with an upper bound instead (one token per UTF-8 byte: what a byte-level BPE produces at
worst, e.g. for digits separated by spaces), never an underestimate that a quota
could be slipped under; the real usage replaces the reservation when the request ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

logger = logging.getLogger("llmops_ray.serve.tokens")

# Chat templates wrap each message in a few special tokens; the fallback adds this many per message.
_PER_MESSAGE_OVERHEAD = 8


def message_texts(messages: list[Any]) -> list[str]:
    """The text of every message (string content or the text parts of a list)."""
    out = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return out


def upper_bound_tokens(texts: list[str]) -> int:
    """A bound no byte-level tokenizer exceeds: one token per UTF-8 byte."""
    return sum(len(t.encode("utf-8", "replace")) + 1 for t in texts)


class PromptCounter:
    """``count(model_id, route, body)`` -> prompt tokens; tokenizers cached per model."""

    def __init__(self, sources: dict[str, str]):
        self._sources = dict(sources)
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _tokenizer(self, model_id: str) -> Any:
        with self._lock:
            if model_id not in self._tokenizers:
                tokenizer = None
                source = self._sources.get(model_id)
                if source:
                    try:
                        from transformers import AutoTokenizer

                        tokenizer = AutoTokenizer.from_pretrained(source)
                    except Exception as exc:  # noqa: BLE001 - no tokenizer: count an upper bound
                        logger.warning("tokenizer of %s (%s) not loaded, counting an upper bound: %r",
                                       model_id, source, exc)
                self._tokenizers[model_id] = tokenizer
            return self._tokenizers[model_id]

    def count_sync(self, model_id: str, route: str, body: dict[str, Any]) -> int:
        tokenizer = self._tokenizer(model_id)
        if route == "chat":
            messages = body.get("messages") or []
            if tokenizer is not None and getattr(tokenizer, "chat_template", None):
                try:
                    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
                    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
                    return len(ids)
                except Exception:  # noqa: BLE001 - a template that rejects the shape: count the texts
                    pass
            texts = message_texts(messages)
            overhead = _PER_MESSAGE_OVERHEAD * len(messages)
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
                return len(prompt)
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
                return sum(len(p) for p in prompt)
            texts = [prompt] if isinstance(prompt, str) else [p for p in prompt or [] if isinstance(p, str)]
            overhead = 1
        if tokenizer is None:
            return upper_bound_tokens(texts) + overhead
        return sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts) + overhead

    async def count(self, model_id: str, route: str, body: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.count_sync, model_id, route, body)
