"""Latency of the rerank stage: hybrid search alone vs hybrid + cross-encoder rerank of the top N.

python benchmarks/rerank.py [--queries 40] [--top-n 10 20 50] [--device cpu|cuda] [--batch-size 32]

A KB of the sample corpus is written in a temporary workspace by the ingest's own stage functions
(no Ray), the cross-encoder is MiniLM with a one-logit head (latency does not depend on the head's
weights). Each query is searched once to warm up, then timed. The baseline (hybrid search without
rerank) is measured in the same run; the table gives p50 / p95 in ms and the ratio of each p50 to
it. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERIES = [
    "How long is the warranty?", "Can the T3 use 5 GHz Wi-Fi?", "What does error E12 mean?",
    "How do I install the thermostat?", "Does it have a camera?", "What does Lumen Plus cost?",
    "How long does the sensor battery last?", "Which OAuth scopes exist?", "How do I reset it?",
    "What is the eco temperature?", "Who founded the company?", "How long are readings kept?",
]


def build_kb(name: str) -> int:
    import pyarrow as pa

    from llmops_ray.common.readers import list_files
    from llmops_ray.data.embed import ChunkEmbedder
    from llmops_ray.data.ingest import IngestConfig, _commit
    from llmops_ray.data.stages import chunk_batch, read_clean_batch
    from llmops_ray.kb.embed import default_model_path
    from llmops_ray.kb.store import connect

    files = list_files([str(REPO / "llmops_ray" / "resources" / "sample_corpus")])
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": files, "source": files}), cfg.quality.model_dump(), True, 128)
    keep = frozenset(r["source"] for r in docs.to_pylist() if r["kind"] == "doc")
    chunks = ChunkEmbedder(None, threads=2)(chunk_batch(docs, keep, "default", cfg.chunk_size, cfg.chunk_overlap,
                                                        default_model_path()))
    _commit(connect(), None, name, "default", "incremental", [chunks], [], None)
    return chunks.num_rows


def timed(fn, queries: list[str]) -> list[float]:
    for q in queries[:3]:
        fn(q)  # warm-up: model loads, caches
    out = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - start) * 1000)
    return out


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--top-n", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    os.environ["LLMOPS_HOME"] = tempfile.mkdtemp(prefix="bench-rerank-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import CrossEncoder

    from llmops_ray.kb.embed import default_model_path
    from llmops_ray.kb.query import search
    from llmops_ray.kb.rerank import Reranker, load_cross_encoder

    torch.set_num_threads(2)
    chunks = build_kb("bench")
    ce_dir = Path(os.environ["LLMOPS_HOME"]) / "ce"
    CrossEncoder(default_model_path(), num_labels=1, device="cpu").save_pretrained(str(ce_dir))
    model = load_cross_encoder(str(ce_dir), args.device)
    queries = [QUERIES[i % len(QUERIES)] for i in range(args.queries)]

    rows = []
    base = timed(lambda q: search("bench", q, k=5, rerank=False), queries)
    base_p50 = statistics.median(base)
    rows.append({"stage": "hybrid", "top_n": 0, "p50_ms": base_p50, "p95_ms": p95(base), "ratio": 1.0})
    for n in args.top_n:
        reranker = Reranker(model, str(ce_dir), top_n=n, batch_size=args.batch_size)
        lat = timed(lambda q: search("bench", q, k=5, reranker=reranker), queries)
        rows.append({"stage": "hybrid+rerank", "top_n": n, "p50_ms": statistics.median(lat), "p95_ms": p95(lat),
                     "ratio": statistics.median(lat) / base_p50})

    print(f"{chunks} chunks, {args.queries} queries, device {args.device}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'stage':<15} {'top_n':>5} {'p50 ms':>8} {'p95 ms':>8} {'x hybrid':>9}")
    for r in rows:
        print(f"{r['stage']:<15} {r['top_n']:>5} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['ratio']:>9.2f}")
    summary = {"chunks": chunks, "queries": args.queries, "device": args.device, "hybrid_p50_ms": round(base_p50, 2)}
    for r in rows[1:]:
        summary[f"rerank_top{r['top_n']}_p50_ms"] = round(r["p50_ms"], 2)
        summary[f"rerank_top{r['top_n']}_over_hybrid"] = round(r["ratio"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
