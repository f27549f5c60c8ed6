"""Gateway hook running the guardrails of :mod:`llmops_ray.safety.rails` on every request.

Serve YAML (after the API-key hook, before RAG and routing hooks)::

    gateway:
      hooks:
        - path: llmops_ray.safety.hook:RailsHook
          kwargs:
            config: {}                       # RailsConfig for every model (defaults: all rails on)
            models: {my-stack: {output: {moderation_action: flag}}}   # per model/stack overrides

What it does: ``before_request`` runs the input rails (400 ``content_blocked`` naming the
rail, audited as ``request.blocked``; PII masked in ``ctx.body`` so neither the engine nor
any log sees it; 413 ``input_too_large_for_rails`` past ``max_scan_chars``, before any
scanning), in a worker thread once the text is ``offload_min_chars`` or longer so that the
replica's event loop keeps serving other requests; ``on_chunk`` / ``end_stream`` run the
output rails on the stream (one :class:`~llmops_ray.safety.output_rail.OutputStreamGuard`
per choice, bounded work per chunk); ``on_response`` runs them on a whole answer. Every decision is appended to ``ctx.extra["rails"]`` (dicts from
``RailDecision.to_log()``) for metrics and the request log.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from pydantic import Field, model_validator

from llmops_ray.config import StrictModel, deep_merge
from llmops_ray.safety.config import RailsConfig
from llmops_ray.safety.decision import (
    BLOCKED_CODE,
    TOO_LARGE_CODE,
    TOO_LARGE_STATUS,
    InputTooLarge,
    RailDecision,
    blocked_message,
)
from llmops_ray.safety.output_rail import OutputStreamGuard
from llmops_ray.safety.rails import InputResult, Rails, get_rails, prompt_chars, text_chars
from llmops_ray.common.gateway_hooks import GatewayError, GatewayHook

logger = logging.getLogger(__name__)


def audit_blocked(decision: RailDecision, ctx: Any) -> None:
    """Audit one blocked request (no user text: rail, reason, score, who, which model).

    Appending takes a file lock another writer may hold: called on an event loop's thread (a
    streamed chunk), the write goes to a worker thread instead of blocking the loop.
    """
    key = getattr(ctx, "principal", None)
    fields = dict(rail=decision.name, reason=decision.reason, score=round(decision.score, 4),
                  request_id=getattr(ctx, "request_id", None), tenant=getattr(ctx, "tenant", None),
                  key_id=getattr(key, "key_id", None), model=getattr(ctx, "requested_model", None))
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _write_audit(fields)
        return
    loop.run_in_executor(None, _write_audit, fields)


def _write_audit(fields: dict[str, Any]) -> None:
    from llmops_ray.common.audit import audit

    try:
        audit("request.blocked", **fields)
    except OSError:
        logger.exception("could not audit blocked request %s", fields.get("request_id"))


class RailsHookConfig(StrictModel):
    """Keyword arguments of :class:`RailsHook` (``gateway.hooks[].kwargs``), checked at load time."""

    config: dict[str, Any] = Field(default_factory=dict)
    """Rails settings for every model (a :class:`~llmops_ray.safety.config.RailsConfig`)."""
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-model (or stack) overrides, merged over ``config``."""
    audit_blocked: bool = True
    """Write an audit record for every blocked request."""
    offload_min_chars: int = Field(256, ge=0)
    """Requests with at least this many characters of text run the input rails in a worker thread
    (``asyncio.to_thread``), not on the event loop; 0: always.

    Measured (benchmarks/rails.py): a thread hop costs ~50 us, the input rails ~0.2 ms for
    64 characters and ~0.7 ms for 256, so below 256 the hop would cost more than a tenth of
    the work it moves, and the loop is held under ~1 ms."""

    @model_validator(mode="after")
    def _check_rails(self) -> "RailsHookConfig":
        RailsConfig.model_validate(copy.deepcopy(self.config))
        for override in self.models.values():
            RailsConfig.model_validate(copy.deepcopy(deep_merge(self.config, override or {})))
        return self


class RailsHook(GatewayHook):
    """Input rails before the model, output rails on streamed and whole answers."""

    Config = RailsHookConfig

    def __init__(self, config: dict | None = None, models: dict[str, dict] | None = None, audit_blocked: bool = True,
                 offload_min_chars: int = 256):
        checked = RailsHookConfig(config=config or {}, models=models or {}, audit_blocked=audit_blocked,
                                  offload_min_chars=offload_min_chars)
        self.base = dict(config or {})
        self.models = {name: deep_merge(self.base, override or {}) for name, override in (models or {}).items()}
        self.audit_blocked = audit_blocked
        self.offload_min_chars = checked.offload_min_chars
        get_rails(self.base)  # load the classifier now, not on the first request

    def rails_for(self, model: str | None) -> Rails:
        if model and model in self.models:
            return get_rails(self.models[model])
        base = model.split(":", 1)[0].split("@", 1)[0] if model else None
        return get_rails(self.models.get(base, self.base) if base else self.base)

    @staticmethod
    def _state(ctx: Any) -> dict[str, Any]:
        # Per-request objects (guards, the Rails) live outside ctx.extra, which stays JSON-ready.
        return ctx.__dict__.setdefault("_rails_state", {})

    @staticmethod
    def _record(ctx: Any, decisions: list[RailDecision]) -> None:
        ctx.extra.setdefault("rails", []).extend(d.to_log() for d in decisions)

    async def before_request(self, ctx: Any) -> None:
        rails = self.rails_for(ctx.body.get("model"))
        self._state(ctx)["rails"] = rails
        if ctx.route == "chat":
            messages = ctx.body.get("messages") or []
            check, arg, chars = rails.check_input, messages, text_chars(messages)
        elif ctx.route == "completions":
            prompt = ctx.body.get("prompt") or ""
            check, arg, chars = rails.check_prompt, prompt, prompt_chars(prompt)
        else:
            return
        try:
            if chars >= self.offload_min_chars:
                # Rail work is linear in the text (~3-4 ms per KB at worst): off the loop. The
                # scans are pure Python and hold the GIL, but the interpreter hands it back to
                # the loop's thread every switch interval (5 ms), instead of not at all.
                result: InputResult = await asyncio.to_thread(check, arg)
            else:
                result = check(arg)
        except InputTooLarge as exc:
            self._record(ctx, [exc.decision])
            if self.audit_blocked:
                await asyncio.to_thread(audit_blocked, exc.decision, ctx)
            raise GatewayError(TOO_LARGE_STATUS, str(exc), code=TOO_LARGE_CODE, param=exc.param) from None
        self._record(ctx, result.decisions)
        if result.blocked is not None:
            if self.audit_blocked:
                await asyncio.to_thread(audit_blocked, result.blocked, ctx)
            raise GatewayError(400, blocked_message(result.blocked), code=BLOCKED_CODE)
        key = "messages" if ctx.route == "chat" else "prompt"
        ctx.body[key] = result.messages

    # ------------------------------------------------------------------ streams

    @staticmethod
    def _field(ctx: Any) -> str:
        return "text" if ctx.route == "completions" else "content"

    def _guard(self, ctx: Any, index: int) -> OutputStreamGuard:
        guards = self._state(ctx).setdefault("guards", {})
        guard = guards.get(index)
        if guard is None:
            rails = self._state(ctx).get("rails") or self.rails_for(ctx.model)
            guard = guards[index] = rails.output_stream()
        return guard

    def on_chunk(self, ctx: Any, chunk: dict[str, Any]) -> dict[str, Any] | None:
        choices = chunk.get("choices") or []
        if not choices:
            return chunk  # e.g. the usage-only last chunk
        self._state(ctx)["template"] = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        field = self._field(ctx)
        for choice in choices:
            index = choice.get("index", 0)
            guard = self._guard(ctx, index)
            holder = choice if field == "text" else (choice.get("delta") or {})
            was_blocked = guard.blocked is not None
            text = holder.get(field) or ""
            out = guard.feed(text) if text else ""
            if choice.get("finish_reason") is not None and guard.blocked is None:
                out += guard.finish()
                self._done(ctx, guard, index)
            if guard.blocked is not None:
                if not was_blocked:
                    out = guard.block_message
                    choice["finish_reason"] = "content_filter"
                    self._done(ctx, guard, index)
                else:
                    out = ""
                    if choice.get("finish_reason") is not None:
                        choice["finish_reason"] = "content_filter"
            if field == "text" or "delta" in choice:
                holder[field] = out
        return chunk

    def _done(self, ctx: Any, guard: OutputStreamGuard, index: int) -> None:
        finished = self._state(ctx).setdefault("finished", set())
        if index in finished:
            return
        finished.add(index)
        decisions = guard.decisions()
        self._record(ctx, decisions)
        blocked = next((d for d in decisions if d.blocked), None)
        if blocked is not None and self.audit_blocked:
            audit_blocked(blocked, ctx)

    def end_stream(self, ctx: Any) -> list[dict[str, Any]]:
        out = []
        finished = self._state(ctx).get("finished", set())
        template = self._state(ctx).get("template") or {}
        field = self._field(ctx)
        for index, guard in (self._state(ctx).get("guards") or {}).items():
            if index in finished:
                continue
            tail = guard.finish()
            self._done(ctx, guard, index)
            if tail:
                choice = {"index": index, "text": tail} if field == "text" else {"index": index, "delta": {"content": tail}}
                out.append({**template, "choices": [{**choice, "finish_reason": None}]})
        return out

    # ------------------------------------------------------------------ whole answers

    def on_response(self, ctx: Any, response: dict[str, Any]) -> dict[str, Any]:
        rails = self._state(ctx).get("rails")
        if rails is None or ctx.route not in ("chat", "completions"):
            return response
        for choice in response.get("choices") or []:
            holder = choice if ctx.route == "completions" else (choice.get("message") or {})
            field = self._field(ctx)
            text = holder.get(field)
            if not isinstance(text, str):
                continue
            new_text, decisions = rails.check_output(text)
            holder[field] = new_text
            self._record(ctx, decisions)
            blocked = rails.output_blocked(decisions)
            if blocked is not None:
                choice["finish_reason"] = "content_filter"
                if self.audit_blocked:
                    audit_blocked(blocked, ctx)
        return response
