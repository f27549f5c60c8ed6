"""The per-request bound of the rails (``max_scan_chars``) and keeping rail work off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from pydantic import ValidationError

from llmops_ray.common.audit import read_audit
from llmops_ray.common.gateway_hooks import GatewayError, RequestContext
from llmops_ray.safety.config import DEFAULT_MAX_SCAN_CHARS, RailsConfig
from llmops_ray.safety.decision import TOO_LARGE_CODE, InputTooLarge
from llmops_ray.safety.hook import RailsHook
from llmops_ray.safety.output_rail import OutputStreamGuard
from llmops_ray.safety.rails import Rails, get_rails, prompt_chars, text_chars

LIMIT = 2048


def _rails(limit: int = LIMIT, **extra) -> Rails:
    return Rails(RailsConfig.model_validate({"max_scan_chars": limit, **extra}))


def _ctx(route: str, body: dict) -> RequestContext:
    ctx = RequestContext(route=route, body=body, headers={})
    ctx.requested_model = ctx.model = body.get("model")
    return ctx


def test_config_is_typed_and_bounded():
    assert RailsConfig().max_scan_chars == DEFAULT_MAX_SCAN_CHARS
    for bad in (0, 100, "many", 10**9):
        with pytest.raises(ValidationError):
            RailsConfig.model_validate({"max_scan_chars": bad})
    with pytest.raises(ValidationError):
        RailsConfig.model_validate({"max_scan_charz": 4096})


def test_default_limit_covers_a_full_context_request():
    # The longest prompt a shipped model accepts (8192 tokens) at a generous 8 characters per
    # token is scanned, not refused.
    assert DEFAULT_MAX_SCAN_CHARS >= 8192 * 8
    rails = get_rails()
    text = ("Please summarise the following report about quarterly sales figures. " * 1000)[: 8192 * 8]
    assert rails.check_input([{"role": "user", "content": text}]).blocked is None


def test_text_counts_every_text_part_of_every_role():
    messages = [{"role": "system", "content": "abc"}, {"role": "user", "content": [{"type": "text", "text": "de"},
                {"type": "image_url", "image_url": {"url": "x" * 50}}]}, "junk", {"role": "assistant"}]
    assert text_chars(messages) == 5
    assert text_chars("not a list") == 0
    assert prompt_chars(["ab", "c", 7]) == 3 and prompt_chars("abcd") == 4 and prompt_chars(None) == 0


def test_input_past_the_limit_is_refused_before_scanning():
    rails = _rails()
    assert rails.check_input([{"role": "user", "content": "a" * LIMIT}]).blocked is None  # at the limit: scanned
    # The system prompt counts too: PII is masked in every role.
    with pytest.raises(InputTooLarge) as exc:
        rails.check_input([{"role": "system", "content": "s" * 100}, {"role": "user", "content": "a" * LIMIT}])
    assert exc.value.chars == LIMIT + 100 and exc.value.limit == LIMIT
    body = exc.value.to_body()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == TOO_LARGE_CODE and body["error"]["param"] == "messages"
    assert exc.value.decision.to_log()["rail"] == "input.size"
    with pytest.raises(InputTooLarge) as exc:
        rails.check_prompt(["b" * 1500, "c" * 1500])
    assert exc.value.param == "prompt"


def test_disabled_rails_do_not_refuse():
    rails = _rails(enabled=False)
    assert rails.check_input([{"role": "user", "content": "a" * (LIMIT * 4)}]).blocked is None


def test_hook_answers_413_with_an_openai_error_and_audits():
    hook = RailsHook(config={"max_scan_chars": LIMIT})
    ctx = _ctx("chat", {"model": "m", "messages": [{"role": "user", "content": "x" * (LIMIT + 1)}]})
    with pytest.raises(GatewayError) as exc:
        asyncio.run(hook.before_request(ctx))
    assert exc.value.status == 413 and exc.value.code == TOO_LARGE_CODE and exc.value.param == "messages"
    assert exc.value.body()["error"]["type"] == "invalid_request_error"
    assert "x" * 20 not in exc.value.message  # no user text echoed
    assert ctx.extra["rails"] == [{"rail": "input.size", "action": "block", "reason": f"{LIMIT + 1} characters > limit {LIMIT}",
                                   "score": 1.0, "details": {"chars": LIMIT + 1, "limit": LIMIT}}]
    json.dumps(ctx.extra)
    assert read_audit(event="request.blocked", request_id=ctx.request_id)[0]["fields"]["rail"] == "input.size"
    ctx = _ctx("completions", {"model": "m", "prompt": "y" * (LIMIT + 1)})
    with pytest.raises(GatewayError) as exc:
        asyncio.run(hook.before_request(ctx))
    assert exc.value.status == 413 and exc.value.param == "prompt"


def test_context_past_the_limit_is_dropped_not_passed():
    rails = _rails()
    chunks = ["first chunk " * 100, "second chunk " * 100, "third"]  # 1200 + 1300 + 5 characters
    result = rails.check_context(chunks)
    assert result.chunks == [chunks[0]] and result.kept == [0]
    assert [(d.name, d.action, d.details["chunk"]) for d in result.decisions] == [("context.size", "block", 1),
                                                                                  ("context.size", "block", 2)]


def test_whole_answer_past_the_limit_is_withheld():
    rails = _rails()
    ok, decisions = rails.check_output("fine. " * 300)
    assert ok == "fine. " * 300 and not rails.output_blocked(decisions)
    text, decisions = rails.check_output("my mail is a@example.com " * 100)
    assert text == rails.config.output.block_message
    assert rails.output_blocked(decisions).name == "output.size"


def test_stream_past_the_limit_stops_with_content_filter():
    hook = RailsHook(config={"max_scan_chars": LIMIT})
    ctx = _ctx("chat", {"model": "m", "messages": [{"role": "user", "content": "write a lot"}]})
    asyncio.run(hook.before_request(ctx))
    out = []
    for i in range(400):  # 400 x 8 characters > LIMIT
        chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "all good"}, "finish_reason": None}]}
        out.append(hook.on_chunk(ctx, chunk))
    out += hook.end_stream(ctx)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out)
    assert text.endswith("[response stopped by content filter]")
    assert len(text) <= LIMIT + len("[response stopped by content filter]")
    assert any(c["choices"][0]["finish_reason"] == "content_filter" for c in out)
    assert any(d["rail"] == "output.size" and d["action"] == "block" for d in ctx.extra["rails"])


def test_stream_buffer_stays_bounded_on_an_endless_email():
    # "x@bb.bb.bb..." is a valid email at every length: it used to be held back whole.
    guard = OutputStreamGuard()
    bound = guard.config.max_buffer_chars + guard.config.hold_chars
    sent = []
    text = "contact x@" + "bb." * 2000 + "com now"
    for i in range(0, len(text), 5):
        sent.append(guard.feed(text[i : i + 5]))
        assert len(guard._buf) <= bound
    sent.append(guard.finish())
    out = "".join(sent)
    assert out.startswith("contact [EMAIL]") and "x@" not in out


def test_large_input_runs_off_the_event_loop(monkeypatch):
    hook = RailsHook(offload_min_chars=256)
    rails = hook.rails_for("m")
    threads: list[int] = []
    original = rails.check_input

    def recording(*args, **kwargs):
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(rails, "check_input", recording)

    async def run(text: str) -> int:
        await hook.before_request(_ctx("chat", {"model": "m", "messages": [{"role": "user", "content": text}]}))
        return threading.get_ident()

    loop_thread = asyncio.run(run("short question"))
    assert threads[-1] == loop_thread  # tiny input: no thread hop
    loop_thread = asyncio.run(run("a longer question about invoices. " * 20))
    assert threads[-1] != loop_thread  # >= offload_min_chars: in a worker thread


def test_loop_keeps_running_while_a_large_input_is_scanned():
    hook = RailsHook()
    text = "word salad with numbers 12 34 and more words. " * 2000  # ~90 KB: tens of ms of scanning

    async def main() -> int:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = ticks
        await hook.before_request(_ctx("chat", {"model": "m", "messages": [{"role": "user", "content": text}]}))
        done = True
        await task
        return ticks - start

    assert asyncio.run(main()) > 1  # inline, the loop would not tick at all during the scan


def test_offload_threshold_is_validated():
    with pytest.raises(ValidationError):
        RailsHook(offload_min_chars=-1)
