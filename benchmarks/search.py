"""Retrieval at scale: the KB's ANN index against exact search, and vector / full-text / hybrid latency.

Run: ``.venv/bin/python benchmarks/search.py [--rows 1000000] [--queries 100] [--index-type IVF_HNSW_SQ|IVF_PQ] [--reuse]``
(``--rows 5000`` takes about a minute on 2 cores; the default million rows took 40 minutes on
a heavily loaded 2-core machine, 15 of them building the HNSW index, and 6.4 GB peak RSS).

1. A synthetic knowledge base in a temporary workspace: ``--rows`` chunks with the KB's own
   schema, 384-d normalised vectors drawn from a mixture of ``sqrt(rows)`` Gaussian
   clusters (real embeddings cluster by topic; uniform random vectors have no neighbours
   worth finding), and text of 30 words from a Zipf-distributed vocabulary (with the
   cluster's topic words, so full-text and vector search see related data). It records the
   packaged MiniLM as its embedder, as an ingest would.
2. The FTS index and the vector index, built by the same call an ingest makes
   (``kb.index.refresh_vector_index``): build time and peak extra RSS.
3. recall@10 of the ANN search against exact search (ground truth: brute-force dot products
   in numpy) for fresh queries from the same mixture, over a sweep of ``nprobes`` /
   ``refine_factor`` (or ``ef``); the latency of each setting against LanceDB's flat scan
   (``bypass_vector_index``) of the same table, measured in this run.
4. p50/p95 of ``kb.search`` in the three modes with the KB's settings (the queries embedded
   by MiniLM beforehand and passed as ``query_vector``: on a loaded 2-core machine the
   embedding's own noise would swamp the comparison), plus the embedding alone.
5. The rerank stage (``--rerank-top-n``, 0 = skip): hybrid ``kb.search`` with a cross-encoder
   (the packaged MiniLM with a one-logit head; latency does not depend on the head's
   weights) rescoring the top N fused candidates, against hybrid alone in the same loop.
   ``benchmarks/rerank.py`` measures the same stage on the sample corpus at several N.

Targets (issue 20): recall@10 >= 0.95 at <= 0.2x the flat-scan latency; hybrid p50 <= 1.5x
vector p50. The last stdout line is one JSON object: ``rows``, ``recall_at_10``,
``ann_latency_ratio``, ``hybrid_over_vector`` and the figures behind them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LLMOPS_HOME", tempfile.mkdtemp(prefix="llmops-bench-search-"))

DIM = 384
KB = "bench_search"
WORDS_PER_CHUNK = 30
BATCH = 100_000


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Peak resident memory above the start, sampled every 50 ms (MB)."""

    def __enter__(self):
        self.start = _rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())
        self.extra_mb = round(self.peak - self.start, 1)


def mixture(rng, centers, n: int, spread: float):
    """``n`` normalised points: a random center plus Gaussian noise of norm ~``spread``."""
    import numpy as np

    labels = rng.integers(0, len(centers), size=n)
    points = centers[labels] + rng.normal(scale=spread / math.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels


def synthetic_space(rows: int, seed: int):
    """(rng, cluster centers, vocabulary, Zipf weights, each cluster's 5 topic words)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    clusters = max(16, int(math.sqrt(rows)))
    centers = rng.normal(size=(clusters, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    topics = rng.integers(0, len(vocab), size=(clusters, 5))
    return rng, centers, vocab, zipf, topics


def reuse_table(rows: int, seed: int):
    """The table a previous run with the same ``--rows``/``--seed`` left in ``LLMOPS_HOME``
    (``--reuse``): its vectors read back in row order; None when it is not there."""
    import numpy as np

    from llmops_ray.kb.store import connect, table_names

    if KB not in table_names():
        return None
    table = connect().open_table(KB)
    if table.count_rows() != rows:
        return None
    _, centers, vocab, _, topics = synthetic_space(rows, seed)
    arrow = table.to_lance().to_table(columns=["chunk_id", "vector"])
    order = np.array([int(c[3:].split(":")[0]) for c in arrow.column("chunk_id").to_pylist()])
    flat = arrow.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, DIM)
    vectors = np.empty_like(flat)
    vectors[order] = flat
    return table, vectors, centers, vocab, topics


def build_table(rows: int, seed: int):
    """The synthetic KB; returns (table, vectors, centers, vocabulary, topic words)."""
    import numpy as np
    import pyarrow as pa

    from llmops_ray.kb.embed import embedder_record
    from llmops_ray.kb.store import connect, fts_normalise, schema, with_embedder

    rng, centers, vocab, zipf, topics = synthetic_space(rows, seed)
    arrow_schema = with_embedder(schema(DIM), embedder_record(None, DIM))
    db = connect()
    table = None
    all_vectors = np.empty((rows, DIM), dtype=np.float32)
    for start in range(0, rows, BATCH):
        n = min(BATCH, rows - start)
        vectors, labels = mixture(rng, centers, n, spread=0.9)
        all_vectors[start : start + n] = vectors
        words = vocab[rng.choice(len(vocab), size=(n, WORDS_PER_CHUNK), p=zipf)]
        words[:, :3] = vocab[topics[labels[:, None], rng.integers(0, 5, size=(n, 3))]]
        texts = [" ".join(w) for w in words]
        ids = [f"doc{start + i}" for i in range(n)]
        columns = {
            "chunk_id": [f"{d}:00000" for d in ids], "doc_id": ids, "chunk_index": pa.array([0] * n, pa.int32()),
            "tenant": ["default"] * n, "source": [f"synthetic/{d}.md" for d in ids], "title": ids, "text": texts,
            "fts_text": [fts_normalise(t) for t in texts],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
            "content_hash": ids, "doc_minhash": pa.array([None] * n, pa.list_(pa.uint32())), "lang": ["en"] * n,
            "doc_type": ["md"] * n, "metadata": ["{}"] * n,
            "ingested_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        }
        for field in arrow_schema:  # columns the KB schema may have gained since (null here)
            columns.setdefault(field.name, pa.nulls(n, field.type))
        batch = pa.table({name: columns[name] for name in arrow_schema.names}).cast(arrow_schema)
        if table is None:
            table = db.create_table(KB, batch, schema=arrow_schema, mode="overwrite")
        else:
            table.add(batch)
    return table, all_vectors, centers, vocab, topics


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - start) / repeat * 1000, out


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--flat-queries", type=int, default=20, help="queries timed on the flat scan (slow at 1M)")
    parser.add_argument("--index-type", default="IVF_HNSW_SQ", choices=["IVF_PQ", "IVF_HNSW_SQ"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rerank-top-n", type=int, default=20, help="candidates a cross-encoder rescores; 0 = skip")
    parser.add_argument("--reuse", action="store_true",
                        help="search the table a previous run left in $LLMOPS_HOME (same --rows/--seed/--index-type) "
                             "instead of building one; build times are then not measured")
    args = parser.parse_args()

    from llmops_ray.kb.index import VectorIndexConfig, apply_search_settings, refresh_vector_index
    from llmops_ray.kb.query import search
    from llmops_ray.kb.store import refresh_fts_index

    config = VectorIndexConfig(min_rows=1, index_type=args.index_type)
    reused = reuse_table(args.rows, args.seed) if args.reuse else None
    if reused is not None:
        table, vectors, centers, vocab, topics = reused
        write_s = fts_s = build_s = None
        report = refresh_vector_index(table, config)  # "current": the settings are recorded, nothing built
        mem = argparse.Namespace(extra_mb=None)
        print(f"reused the {args.rows}-row table in {os.environ['LLMOPS_HOME']}: {report}", flush=True)
    else:
        t0 = time.perf_counter()
        table, vectors, centers, vocab, topics = build_table(args.rows, args.seed)
        write_s = round(time.perf_counter() - t0, 1)
        print(f"wrote {args.rows} rows in {write_s:.1f} s", flush=True)
        t0 = time.perf_counter()
        refresh_fts_index(table)
        fts_s = round(time.perf_counter() - t0, 1)
        with PeakRss() as mem:
            t0 = time.perf_counter()
            report = refresh_vector_index(table, config)
            build_s = round(time.perf_counter() - t0, 1)
        print(f"fts index {fts_s:.1f} s; vector index {report} in {build_s:.1f} s, +{mem.extra_mb} MB peak", flush=True)

    rng = np.random.default_rng(args.seed + 1)
    queries, _ = mixture(rng, centers, args.queries, spread=0.9)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]  # exact top-10 row positions
    truth_ids = [{f"doc{i}:00000" for i in row} for row in truth]

    def ann(q, settings, k=10):
        query = table.search(q, vector_column_name="vector").distance_type("cosine").select(["chunk_id"]).limit(k)
        return apply_search_settings(query, settings).to_list()

    def flat(q, k=10):
        return (table.search(q, vector_column_name="vector").distance_type("cosine").select(["chunk_id"])
                .bypass_vector_index().limit(k).to_list())

    flat_ms, flat_found = [], 0
    flat_n = min(args.flat_queries, len(queries))

    def time_flat() -> None:
        # Timed before and after the sweep: on a shared machine the load drifts.
        nonlocal flat_found
        for q, ids in zip(queries[:flat_n], truth_ids):
            ms, hits = timed(lambda: flat(q))
            flat_ms.append(ms)
            flat_found += len({h["chunk_id"] for h in hits} & ids)

    time_flat()
    exact_ok = flat_found / (10 * flat_n)  # LanceDB's flat scan against numpy: should be 1.0
    flat_p50 = statistics.median(flat_ms)

    if args.index_type == "IVF_PQ":
        sweep = [{"nprobes": n, "refine_factor": r} for n in (10, 20, 40) for r in (None, 5, 10, 20)]
    else:
        sweep = [{"nprobes": n, "ef": e} for n in (10, 20, 40) for e in (32, 64, 128)]
    rows_out = []
    print(f"\nflat scan p50 {flat_p50:.2f} ms ({flat_n} queries; its top-10 agrees with numpy's: {exact_ok:.1%})")
    print(f"{'setting':<34} {'recall@10':>9} {'p50 ms':>8} {'p95 ms':>8} {'x flat':>7}")
    for setting in sweep:
        settings = {"index_type": args.index_type, "nprobes": setting["nprobes"],
                    "refine_factor": setting.get("refine_factor"), "ef": setting.get("ef", 64)}
        ann(queries[0], settings)  # warm the index cache
        found, lat = 0, []
        for q, ids in zip(queries, truth_ids):
            ms, hits = timed(lambda: ann(q, settings))
            lat.append(ms)
            found += len({h["chunk_id"] for h in hits} & ids)
        row = {**setting, "recall_at_10": round(found / (10 * len(queries)), 4), "p50_ms": round(statistics.median(lat), 3),
               "p95_ms": round(pct(lat, 0.95), 3)}
        row["ratio"] = round(row["p50_ms"] / flat_p50, 4)
        rows_out.append(row)
        label = ", ".join(f"{k}={v}" for k, v in setting.items())
        print(f"{label:<34} {row['recall_at_10']:>9.3f} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} {row['ratio']:>7.3f}")

    time_flat()
    flat_p50 = statistics.median(flat_ms)
    for row in rows_out:
        row["ratio"] = round(row["p50_ms"] / flat_p50, 4)
    print(f"flat scan p50 over both rounds {flat_p50:.2f} ms (ratios above use this)")
    default = VectorIndexConfig()
    chosen = next(r for r in rows_out if r["nprobes"] == default.nprobes
                  and (r.get("refine_factor") == default.refine_factor if args.index_type == "IVF_PQ"
                       else r.get("ef") == default.ef))

    # End to end through kb.search with the KB's recorded settings (the defaults).
    text_queries = []
    for i in range(args.queries):
        topic = topics[rng.integers(0, len(topics))]
        text_queries.append(" ".join(vocab[topic[:2]]) + " " + vocab[rng.integers(0, 200)])
    from llmops_ray.kb.embed import cached_embedder, embed_texts

    model = cached_embedder(None)
    embed_ms = []
    for q in text_queries[:20]:
        embed_ms.append(timed(lambda: embed_texts(model, [q]))[0])
    query_vectors = list(queries)  # vectors from the data's distribution, as a real query's would be
    names = ("vector", "fts", "hybrid")
    lat: dict[str, list[float]] = {mode: [] for mode in names}
    for mode in names:
        search(KB, text_queries[0], k=10, mode=mode, query_vector=query_vectors[0])  # warm-up
    for i, (q, v) in enumerate(zip(text_queries, query_vectors)):
        # The modes take turns on each query (order rotated), so load drift hits all alike.
        for mode in names[i % 3:] + names[: i % 3]:
            lat[mode].append(timed(lambda: search(KB, q, k=10, mode=mode, query_vector=v))[0])
    modes = {mode: {"p50_ms": round(statistics.median(v), 2), "p95_ms": round(pct(v, 0.95), 2)} for mode, v in lat.items()}
    print(f"\nkb.search with the KB's settings (k=10; queries embedded beforehand by MiniLM, p50 "
          f"{statistics.median(embed_ms):.2f} ms each, not included)")
    print(f"{'mode':<8} {'p50 ms':>8} {'p95 ms':>8}")
    for mode, m in modes.items():
        print(f"{mode:<8} {m['p50_ms']:>8.2f} {m['p95_ms']:>8.2f}")

    rerank = rerank_latency(text_queries, query_vectors, args.rerank_top_n) if args.rerank_top_n else None
    if rerank:
        print(f"hybrid + rerank of the top {args.rerank_top_n}: p50 {rerank['p50_ms']:.2f} ms, p95 "
              f"{rerank['p95_ms']:.2f} ms = {rerank['over_hybrid']:.2f}x hybrid ({rerank['hybrid_p50_ms']:.2f} ms, same loop)")

    summary = {
        "rows": args.rows,
        "index_type": args.index_type,
        "recall_at_10": chosen["recall_at_10"],
        "ann_latency_ratio": chosen["ratio"],
        "hybrid_over_vector": round(modes["hybrid"]["p50_ms"] / modes["vector"]["p50_ms"], 3),
        "default_setting": {k: v for k, v in chosen.items() if k in ("nprobes", "refine_factor", "ef")},
        "ann_p50_ms": chosen["p50_ms"], "ann_p95_ms": chosen["p95_ms"], "flat_p50_ms": round(flat_p50, 3), "flat_recall_at_10": exact_ok,
        "search_ms": modes, "rerank": rerank, "embed_p50_ms": round(statistics.median(embed_ms), 2),
        "write_s": write_s, "fts_index_s": fts_s, "vector_index_s": build_s, "reused": reused is not None,
        "vector_index": report, "index_peak_extra_mb": mem.extra_mb,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sweep": rows_out,
        "targets_met": {"recall": chosen["recall_at_10"] >= 0.95, "ann_latency": chosen["ratio"] <= 0.2,
                        "hybrid": modes["hybrid"]["p50_ms"] <= 1.5 * modes["vector"]["p50_ms"]},
    }
    print(json.dumps(summary))


def rerank_latency(text_queries: list[str], query_vectors: list, top_n: int) -> dict:
    """p50/p95 ms of hybrid search + cross-encoder rerank of ``top_n`` candidates, and of
    hybrid alone, alternating per query (k=10)."""
    from sentence_transformers import CrossEncoder

    from llmops_ray.kb.embed import default_model_path
    from llmops_ray.kb.query import search
    from llmops_ray.kb.rerank import Reranker, load_cross_encoder

    ce_dir = Path(os.environ["LLMOPS_HOME"]) / "bench-cross-encoder"
    CrossEncoder(default_model_path(), num_labels=1, device="cpu").save_pretrained(str(ce_dir))
    reranker = Reranker(load_cross_encoder(str(ce_dir), "cpu"), str(ce_dir), top_n=top_n, batch_size=32)
    search(KB, text_queries[0], k=10, query_vector=query_vectors[0], reranker=reranker)  # warm-up
    with_rerank, alone = [], []
    for q, v in zip(text_queries, query_vectors):
        with_rerank.append(timed(lambda: search(KB, q, k=10, query_vector=v, reranker=reranker))[0])
        alone.append(timed(lambda: search(KB, q, k=10, query_vector=v, rerank=False))[0])
    p50, base = statistics.median(with_rerank), statistics.median(alone)
    return {"top_n": top_n, "p50_ms": round(p50, 2), "p95_ms": round(pct(with_rerank, 0.95), 2),
            "hybrid_p50_ms": round(base, 2), "over_hybrid": round(p50 / base, 2)}


if __name__ == "__main__":
    main()
