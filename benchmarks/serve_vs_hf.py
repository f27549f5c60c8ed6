"""Output tokens/s: our Serve path at 32 concurrent streams vs Hugging Face ``generate``
(sequential, one prompt at a time) and HF static batching (batch 32), same prompts.

    .venv/bin/python benchmarks/serve_vs_hf.py [--requests 64]

Targets: ours >= 8x sequential HF and >= 1.0x HF static batch 32. vLLM's own OpenAI server
with the same engine args is measured too (``--no-bare`` skips it): the engine's own ceiling
against the same baselines on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

from _serve_common import (OUTPUT_TOKENS, build_bench_model, free_port, make_prompts, ours_config, run_load, start_bare_vllm,
                           table, wait_completion)

MODEL = "bench"


def hf_tok_s(model_dir: Path, prompts, batch: int, limit: int) -> float:
    """Greedy ``generate`` of OUTPUT_TOKENS tokens (no early stop), bf16 like the engine."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count() or 2)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    prompts = prompts[:limit]
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            ids = torch.tensor(prompts[i : i + batch])  # equal lengths: no padding needed
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=OUTPUT_TOKENS,
                           min_new_tokens=OUTPUT_TOKENS, do_sample=False, pad_token_id=0)
    return len(prompts) * OUTPUT_TOKENS / (time.perf_counter() - start)


def load_32(url: str, prompts) -> float:
    """Output tok/s of the prompts at 32 concurrent streams, once the server answers (warmed up)."""
    wait_completion(url, MODEL)
    asyncio.run(run_load(url, MODEL, prompts[:4], 4))
    return asyncio.run(run_load(url, MODEL, prompts, 32))["tok_s"]


def ours_tok_s(model_dir: Path, prompts) -> float:
    from ray import serve

    from llmops_ray.cluster import init_ray
    from llmops_ray.serve.app import start_app

    init_ray(num_cpus=os.cpu_count() or 2, log_to_driver=False)
    port = free_port()
    start_app(ours_config("bench-vs-hf", model_dir, port), wait=False)
    try:
        return load_32(f"http://127.0.0.1:{port}", prompts)
    finally:
        serve.shutdown()


def bare_tok_s(model_dir: Path, prompts) -> float:
    """vLLM's own OpenAI server, same engine args and load as ours."""
    port = free_port()
    proc = start_bare_vllm(model_dir, MODEL, port)
    try:
        return load_32(f"http://127.0.0.1:{port}", prompts)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=8, help="prompts for the (slow) sequential HF baseline")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare vLLM server row")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    work = Path(os.environ.get("LLMOPS_BENCH_DIR") or tempfile.mkdtemp(prefix="serve-bench-"))
    model_dir = build_bench_model(work / "bench-llama")
    prompts = make_prompts(model_dir, args.requests)
    seq = hf_tok_s(model_dir, prompts, 1, args.sequential)
    static = hf_tok_s(model_dir, prompts, 32, args.requests)
    bare = None if args.no_bare else bare_tok_s(model_dir, prompts)
    ours = ours_tok_s(model_dir, prompts)
    rows = [("HF generate, sequential", f"{seq:.0f}", "1.00x"),
            ("HF generate, static batch 32", f"{static:.0f}", f"{static / seq:.2f}x")]
    if bare is not None:
        rows.append(("bare vLLM server, 32 streams", f"{bare:.0f}", f"{bare / seq:.2f}x"))
    rows.append(("ours, 32 streams", f"{ours:.0f}", f"{ours / seq:.2f}x"))
    print(f"\nserve_vs_hf: 128-token prompts -> {OUTPUT_TOKENS} tokens")
    print(table(rows, ("path", "out tok/s", "vs sequential")))
    print(f"targets: >= 8x sequential: {ours / seq >= 8} ({ours / seq:.1f}x); "
          f">= 1.0x static batch 32: {ours / static >= 1.0} ({ours / static:.2f}x)")


if __name__ == "__main__":
    main()
