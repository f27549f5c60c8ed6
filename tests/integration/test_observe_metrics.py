"""From inside a Ray actor (as in a Serve replica): our metrics reach the node's Prometheus
endpoint with the right labels, and the request-log rows land in LanceDB, PII-free."""

import re
import time
import urllib.request
import uuid

import pytest

EMAIL = "jane.doe@example.com"


def _scrape(ray):
    """Text of every alive node's Prometheus endpoint (port discovered from the node table)."""
    texts = []
    for node in ray.nodes():
        if node.get("Alive") and node.get("MetricsExportPort"):
            url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            texts.append(urllib.request.urlopen(url, timeout=10).read().decode())
    return "\n".join(texts)


def _labels(line):
    return dict(re.findall(r'(\w+)="([^"]*)"', line.split("{", 1)[1].rsplit("}", 1)[0]))


@pytest.mark.integration
def test_metrics_on_prometheus_endpoint_and_log_rows_from_an_actor(ray_session):
    ray = ray_session
    stack = f"obs-it-{uuid.uuid4().hex[:8]}"

    @ray.remote(num_cpus=0.01)
    class Replica:
        def __init__(self):
            from llmops_ray.observe.observer import Observer

            self.observer = Observer(flush_interval_s=0.05)

        def serve(self, stack):
            ok = self.observer.start(stack, "tiny-base", "canary", "acme", key_id="k1", stream=True,
                                     request={"messages": [{"role": "user", "content": f"I am {EMAIL}"}]})
            ok.retrieval(0.02)
            ok.rail("input.pii", "mask")
            for _ in range(4):
                time.sleep(0.01)
                ok.chunk()
            ok.finish(200, prompt_tokens=12, completion_tokens=4, response_text=f"hi {EMAIL}",
                      response_id=f"chatcmpl-{stack}")
            bad = self.observer.start(stack, "tiny-base", "canary", "acme")
            bad.finish(503, error="engine unavailable")
            return self.observer.flush(60)

        def close(self):
            self.observer.close()

    replica = Replica.remote()
    assert ray.get(replica.serve.remote(stack), timeout=120)

    # Ray exports recorded metrics every few seconds (10 s by default): poll, and keep every
    # series seen (a gauge is exported in the interval it was set in).
    wanted = {  # name -> number of series (label sets) expected for our stack
        "ray_llmops_requests_total": 2,  # status 200 and 503
        "ray_llmops_request_errors_total": 1,
        "ray_llmops_ttft_seconds_count": 1,
        "ray_llmops_time_between_tokens_seconds_count": 1,
        "ray_llmops_request_latency_seconds_count": 1,
        "ray_llmops_prompt_tokens_total": 1,
        "ray_llmops_completion_tokens_total": 1,
        "ray_llmops_output_tokens_per_second_count": 1,
        "ray_llmops_rail_decisions_total": 1,
        "ray_llmops_retrieval_latency_seconds_count": 1,
        "ray_llmops_cost_usd_total": 1,
        "ray_llmops_queue_depth": 1,
    }
    seen: dict[str, dict[str, str]] = {name: {} for name in wanted}
    deadline = time.time() + 60
    while True:
        for line in _scrape(ray).splitlines():
            if line.startswith("#") or f'stack="{stack}"' not in line:
                continue
            name = line.split("{", 1)[0]
            if name in seen:
                seen[name][line.rsplit(" ", 1)[0]] = line
        if all(len(seen[n]) >= k for n, k in wanted.items()) or time.time() > deadline:
            break
        time.sleep(1)
    found = {name: list(series.values()) for name, series in seen.items()}
    missing = {n for n, k in wanted.items() if len(found[n]) < k}
    assert not missing, f"not on the metrics endpoint after 60 s: {missing}"

    by_status = {_labels(ln)["status"]: ln for ln in found["ray_llmops_requests_total"]}
    assert set(by_status) == {"200", "503"}
    labels = _labels(by_status["200"])
    assert (labels["model"], labels["variant"], labels["tenant"]) == ("tiny-base", "canary", "acme")
    assert by_status["200"].rsplit(" ", 1)[1] in ("1", "1.0")
    [errors] = found["ray_llmops_request_errors_total"]
    assert _labels(errors)["status"] == "503"
    [rail] = found["ray_llmops_rail_decisions_total"]
    assert (_labels(rail)["rail"], _labels(rail)["decision"]) == ("input.pii", "mask")
    [tokens] = found["ray_llmops_prompt_tokens_total"]
    assert float(tokens.rsplit(" ", 1)[1]) == 12.0
    [latency] = found["ray_llmops_request_latency_seconds_count"]
    assert float(latency.rsplit(" ", 1)[1]) == 2.0
    assert _labels(found["ray_llmops_queue_depth"][0]) and "model" not in _labels(found["ray_llmops_queue_depth"][0])

    # The request log written by the actor's background thread, read back on the driver.
    from llmops_ray.observe.request_log import query_requests

    rows = query_requests(stack=stack)
    assert [r["status"] for r in rows] == [200, 503]
    ok = rows[0]
    assert (ok["tenant"], ok["variant"], ok["key_id"], ok["completion_tokens"]) == ("acme", "canary", "k1", 4)
    assert ok["ttft_s"] is not None and 0 < ok["ttft_s"] < ok["latency_s"]
    for row in rows:
        assert EMAIL not in " ".join(str(v) for v in row.values())
    assert "[EMAIL]" in ok["request"] and ok["response"] == "hi [EMAIL]"
    ray.get(replica.close.remote())
    ray.kill(replica)
