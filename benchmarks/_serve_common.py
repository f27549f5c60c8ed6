"""Shared pieces of the serving benchmarks: a ~40M-parameter random Llama, prompts, a
streaming load generator (TTFT, time between tokens, output tokens/s), and servers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPT_TOKENS = 128
OUTPUT_TOKENS = 64
ENGINE = {"max_model_len": 512, "gpu_memory_utilization": 0.1, "enforce_eager": True, "dtype": "bfloat16", "max_num_seqs": 64}


def shipped_model_settings() -> dict:
    """The streaming settings of serve_configs/local_cpu.yaml, so that the benchmark measures
    what ships (batching interval, first chunk at once, single-process engine)."""
    import yaml

    spec = yaml.safe_load((REPO / "serve_configs" / "local_cpu.yaml").read_text())["models"][0]
    keys = ("stream_batching_interval_ms", "first_chunk_immediate", "single_process_engine")
    return {k: spec[k] for k in keys if k in spec}


def ours_config(name: str, model_dir: Path, port: int, model_overrides: dict | None = None, model_id: str = "bench"):
    """Our Serve app for the benchmarks: the bench model alone behind the gateway, with the
    benchmark engine args and the shipped streaming settings (plus any overrides)."""
    from llmops_ray.config import build_config
    from llmops_ray.serve.config import ServeAppConfig

    return build_config(ServeAppConfig, {
        "name": name, "http": {"port": port}, "gateway": {"num_cpus": 0.1, "embeddings": False},
        "models": [{"model_id": model_id, "source": str(model_dir), "num_cpus": 0, "engine_kwargs": ENGINE,
                    "max_ongoing_requests": 64, "autoscaling": {"target_ongoing_requests": 64},
                    **shipped_model_settings(), **(model_overrides or {})}],
    })


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_bench_model(out: Path) -> Path:
    """Random-init Llama, hidden 512 / 9 layers / head_dim 64, vocab 4096: about 40M parameters."""
    from llmops_ray.models.base import TinyModelConfig, build_random_model_dir

    if (out / "config.json").exists():
        return out
    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "llmops_ray").rglob("*.py"))]
    config = TinyModelConfig(
        vocab_size=4096, hidden_size=512, num_hidden_layers=9, num_attention_heads=8,
        num_key_value_heads=8, intermediate_size=2048, max_position_embeddings=512,
    )
    return build_random_model_dir(texts, out, config)


def make_prompts(model_dir: Path, n: int) -> list[list[int]]:
    """n distinct prompts of exactly PROMPT_TOKENS token ids (no prefix-cache sharing)."""
    import random

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(0)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]
    return [[rng.choice(vocab) for _ in range(PROMPT_TOKENS)] for _ in range(n)]


async def _one(client, url: str, model: str, prompt: list[int]) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": OUTPUT_TOKENS, "stream": True,
            "ignore_eos": True, "temperature": 0}
    start = time.perf_counter()
    stamps = []
    async with client.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                # Every chunk with a choice is one engine step's output. A random model's
                # token may decode to "" (a partial UTF-8 sequence), so text is not required.
                if chunk.get("choices"):
                    stamps.append(time.perf_counter())
    if not stamps:
        raise RuntimeError(f"{url}: a streamed completion returned no tokens")
    return {"ttft": stamps[0] - start, "tbt": [b - a for a, b in zip(stamps, stamps[1:])], "end": stamps[-1]}


async def run_load(url: str, model: str, prompts: list[list[int]], concurrency: int) -> dict:
    """Stream every prompt with ``concurrency`` in flight; returns TTFT p50/p95 (ms),
    TBT p50 (ms, per text chunk) and output tokens/s over the whole run."""
    import httpx

    queue = list(prompts)
    results = []
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(limits=limits) as client:
        async def worker():
            while queue:
                results.append(await _one(client, url, model, queue.pop()))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    ttfts = sorted(r["ttft"] * 1000 for r in results)
    tbts = [t * 1000 for r in results for t in r["tbt"]]
    return {
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
        "tbt_p50": statistics.median(tbts) if tbts else float("nan"),
        "tok_s": len(results) * OUTPUT_TOKENS / elapsed,
    }


def wait_completion(url: str, model: str, timeout_s: float = 900) -> None:
    """Wait for a real completion (not just /v1/models)."""
    payload = json.dumps({"model": model, "prompt": "hi", "max_tokens": 1}).encode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"{url}/v1/completions", data=payload, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise TimeoutError(f"{url} never served {model}")


def start_bare_vllm(model_dir: Path, model: str, port: int) -> subprocess.Popen:
    """vLLM's own OpenAI server with the same engine args."""
    args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--served-model-name", model, "--port", str(port), "--host", "127.0.0.1", "--disable-log-stats"]
    for key, value in ENGINE.items():
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))


def table(rows: list[tuple], headers: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    return "\n".join([fmt.format(*headers)] + [fmt.format(*r) for r in rows])
