"""Stack routing pieces without Ray: variant split and stickiness, retrieval settings,
citations and prompt building, SLO breach logic, model mapping, the shipped serve config."""

from __future__ import annotations

import asyncio

import pytest

from llmops_ray.registry.manifest import StackManifest
from llmops_ray.registry.prompts import PromptTemplate
from llmops_ray.registry.store import StackVersion
from llmops_ray.serve.canary import SloWindow, canary_breaches, hash_point, pick_variant, stickiness_key
from llmops_ray.common.gateway_hooks import GatewayError, RequestContext
from llmops_ray.serve.rag import build_messages, context_block, make_citations, retrieval_settings
from llmops_ray.serve.stacks import StackHook


def test_weighted_split_matches_weights_and_is_sticky():
    weights = {"production": 90, "canary": 10}
    picks = [pick_variant(weights, hash_point("s", f"user:{i}")) for i in range(20000)]
    share = picks.count("canary") / len(picks)
    assert abs(share - 0.10) < 0.01
    assert all(pick_variant(weights, hash_point("s", f"user:{i}")) == picks[i] for i in range(200))
    # Another stack hashes the same users differently (no correlated canaries across stacks).
    other = [pick_variant(weights, hash_point("t", f"user:{i}")) for i in range(2000)]
    assert other != picks[:2000]
    assert pick_variant({"production": 1, "canary": 0}, 0.999) == "production"
    with pytest.raises(ValueError):
        pick_variant({"a": 0}, 0.5)


def test_stickiness_key_prefers_user_then_key():
    class Key:
        key_id = "abc"

    assert stickiness_key({"user": "u1"}, Key(), "r") == "user:u1"
    assert stickiness_key({}, Key(), "r") == "key:abc"
    assert stickiness_key({}, None, "r") == "request:r"


def test_retrieval_settings_defaults_and_errors():
    defaults = {"rerank": None, "include_flagged": False}
    assert retrieval_settings(None, 4, "hybrid") == {"k": 4, "mode": "hybrid", "filters": None, **defaults}
    got = retrieval_settings({"k": 2, "mode": "fts", "filters": {"tenant": "evil", "lang": "en"}}, 4, "hybrid")
    assert got == {"k": 2, "mode": "fts", "filters": {"lang": "en"}, **defaults}  # the tenant is never the client's
    for bad in ({"k": 0}, {"k": "3"}, {"mode": "magic"}, {"filters": [1]}, {"other": 1}, "k=3"):
        with pytest.raises(ValueError):
            retrieval_settings(bad, 4, "hybrid")


def test_citations_follow_the_context_rail_and_prompt_is_templated():
    hits = [{"doc_id": f"d{i}", "source": f"s{i}.md", "chunk_id": f"c{i}", "text": f"text {i}", "score": 1 - i / 10}
            for i in range(3)]
    # The rail dropped hit 1 and neutralised hit 2.
    citations = make_citations(hits, ["text 0", "[removed]"], [0, 2])
    assert [(c["marker"], c["doc_id"], c["text"]) for c in citations] == [("[1]", "d0", "text 0"), ("[2]", "d2", "[removed]")]
    context = context_block(citations, ["text 0", "[removed]"])
    assert context == "[1] (s0.md) text 0\n\n[2] (s2.md) [removed]"
    template = PromptTemplate("qa", 1, [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Context:\n{{context}}\n\nQuestion: {{question}}"}])
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "What now?"}]
    out = build_messages(template, messages, context)
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.") and "[1]" in out[0]["content"]
    assert out[1:3] == messages[:2]
    assert out[3] == {"role": "user", "content": f"Context:\n{context}\n\nQuestion: What now?"}


def test_canary_breach_needs_enough_requests():
    slo = {"error_rate": 0.2, "p95_latency_ms": 1000, "window_s": 60}
    window = SloWindow()
    for i in range(3):
        window.add("s", "canary", 2, 503, 0.01)
    rows = window.rows("s", "canary", 60, version=2)
    assert canary_breaches(rows, slo, min_requests=4)[0] == []
    window.add("s", "canary", 2, 200, 0.01)
    breaches, figures = canary_breaches(window.rows("s", "canary", 60, version=2), slo, min_requests=4)
    assert breaches == ["error_rate"] and figures["error_rate"] == 0.75
    slow = [{"status": 200, "latency_s": 2.0}] * 10
    assert canary_breaches(slow, slo, 4)[0] == ["p95_latency_ms"]
    assert canary_breaches([{"status": 200, "latency_s": 0.1}] * 10, slo, 4)[0] == []
    assert window.rows("s", "canary", 60, version=3) == []  # another version's window is separate
    assert window.rows("s", "canary", 60, now=10**12) == []  # rows age out of the window


def _version(name, version, base, adapter=None):
    manifest = StackManifest(name=name, base_model=str(base), prompt="qa@1", adapter=str(adapter) if adapter else None)
    return StackVersion(name=name, version=version, manifest=manifest)


def test_model_mapping_and_choice(tmp_path):
    base = tmp_path / "tiny-base"
    base.mkdir()
    adapters = tmp_path / "adapters"
    (adapters / "ad1").mkdir(parents=True)
    (adapters / "ad1" / "adapter_config.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere" / "ad2"
    elsewhere.mkdir(parents=True)
    (elsewhere / "adapter_config.json").write_text("{}")
    hook = StackHook(stacks={"s": {"variants": {"production": 90, "canary": 10}}},
                     models={"tiny": str(base)}, adapters_dirs={"tiny": str(adapters)}, watch={"enabled": False})
    assert hook.extra_models() == ["s"]
    assert hook.served_model(_version("s", 1, base)) == "tiny"
    assert hook.served_model(_version("s", 2, base, adapters / "ad1")) == "tiny:ad1"
    for broken in (_version("s", 3, base, elsewhere), _version("s", 4, tmp_path / "other-model")):
        with pytest.raises(GatewayError) as exc:
            hook.served_model(broken)
        assert exc.value.status == 503 and exc.value.code == "variant_unavailable"
    prod, canary = _version("s", 1, base), _version("s", 2, base)
    keys = [f"user:{i}" for i in range(500)]
    picks = [hook.choose("s", {"production": prod, "canary": canary}, k) for k in keys]
    assert 0.05 < picks.count("canary") / len(picks) < 0.15
    # A canary on production's version is production; a missing alias gets no traffic.
    assert {hook.choose("s", {"production": prod, "canary": _version("s", 1, base)}, k) for k in keys} == {"production"}
    assert {hook.choose("s", {"canary": canary}, k) for k in keys} == {"canary"}
    with pytest.raises(GatewayError):
        hook.choose("s", {}, "user:x")


def test_generation_defaults_fill_only_missing_fields(tmp_path):
    gen = _version("s", 1, tmp_path).manifest.generation
    body = {"max_tokens": 5, "temperature": 0.7}
    StackHook.apply_generation(body, gen)
    assert body == {"max_tokens": 5, "temperature": 0.7, "top_p": 1.0}
    body = {}
    StackHook.apply_generation(body, gen)
    assert body["max_tokens"] == gen.max_tokens and body["temperature"] == 0.0


def test_plain_models_pass_through_untouched(tmp_path):
    hook = StackHook(stacks={"s": {}}, watch={"enabled": False})
    ctx = RequestContext(route="chat", body={"model": "tiny", "messages": [], "retrieval": {"k": 1}}, headers={})
    asyncio.run(hook.before_request(ctx))
    assert ctx.body["model"] == "tiny" and "retrieval" in ctx.body and ctx.variant is None
