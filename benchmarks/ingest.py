"""Ingest throughput: the Ray Data pipeline against single-process baselines, same model, same chunks.

    python benchmarks/ingest.py [--docs 10000] [--per-doc-sample 1000] [--actors CORES] [--actor-cpus 1.0]

(a) ``llmops_ray.data.ingest`` end to end (read, clean, PII, dedup, chunk, embed in a Ray Data
    actor pool, one LanceDB commit, FTS index), ``mode=rebuild`` into a fresh KB;
(b) the exact chunks (a) stored, embedded in this process with the same model's batched
    ``encode`` (batch 64, all cores): the pure-compute baseline, no I/O, no cleaning, no store;
(c) a per-document loop as a naive script does it: read, clean, mask, chunk, ``encode`` the
    document's chunks, ``table.add`` them; timed on the first ``--per-doc-sample`` documents
    (it is the slow one) and reported as chunks/s.
Ray start-up is excluded (a running cluster is the normal case). Peak memory: highest PSS sum
of this process and its children (the local Ray's processes) sampled every 0.5 s during (a),
and during (b)+(c). Targets on a 2-core machine: a/b >= 0.9, a/c >= 5.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

WORDS = (
    "thermostat heating cooling schedule sensor room temperature humidity winter summer energy report filter "
    "furnace boiler pump wire install display network app account support warranty replacement battery home "
    "night morning comfort saving degree system stage setting menu ring update firmware cloud data privacy "
    "household member family window door kitchen living bedroom hallway wall light sun outdoor indoor weather "
    "season autumn spring week month year hour minute time early late quickly slowly quietly always never "
    "often sometimes usually rarely customer installer engineer technician team company product device unit "
    "code error check test result problem solution answer question guide manual page card note list table"
).split()
VERBS = "keeps learns reports shows sends reads measures controls starts stops saves uses needs finds checks".split()
ADJ = "small large warm cold new old quiet bright simple careful reliable efficient modern careful daily".split()


def synthetic_docs(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct English-like documents of 80-140 words (about one 200-token chunk each)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        sentences = [f"Document {i} describes case {rng.randint(0, 10**9)} of the fleet."]
        while sum(len(s.split()) for s in sentences) < rng.randint(80, 140):
            words = [rng.choice(ADJ), rng.choice(WORDS), rng.choice(VERBS), "the", rng.choice(ADJ),
                     rng.choice(WORDS)] + [rng.choice(WORDS) for _ in range(rng.randint(2, 8))]
            sentences.append(" ".join(words).capitalize() + ".")
        docs.append(f"# Note {i}\n\n" + " ".join(sentences) + "\n")
    return docs


class PeakRss:
    """Samples the memory (PSS) of this process plus all its descendants (Ray's processes) in a thread."""

    def __init__(self, interval: float = 0.5):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                # PSS: shared pages (Ray's object store, libraries) are split between the
                # processes that map them instead of being counted once per process.
                total += p.memory_full_info().pss
            except Exception:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingest throughput benchmark")
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--per-doc-sample", type=int, default=1000, help="documents timed in the per-document loop (c)")
    parser.add_argument("--actors", type=int, default=os.cpu_count() or 2,
                        help="embedding actor pool size (default: one per core, one torch thread each)")
    parser.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs Ray reserves per embedding actor")
    parser.add_argument("--actor-threads", type=int, default=0, help="torch threads per actor (0 = all cores / actors)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray instance")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="llmops-bench-"))
    os.environ["LLMOPS_HOME"] = str(home)
    from llmops_ray.cluster import apply_process_env, init_ray

    apply_process_env()
    corpus = home / "corpus"
    corpus.mkdir()
    for i, text in enumerate(synthetic_docs(args.docs)):
        (corpus / f"doc{i:06d}.md").write_text(text, encoding="utf-8")
    # A fresh local instance of exactly --cpus CPUs, even when another `ray start` cluster runs
    # on this machine (ray.init would otherwise attach to it).
    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=args.cpus, address="local")

    import torch

    from llmops_ray.data.chunk import chunk_text, tokenizer_counter
    from llmops_ray.data.clean import clean_text
    from llmops_ray.data.ingest import IngestConfig, ingest
    from llmops_ray.kb.embed import default_model_path, embed_texts, load_embedder
    from llmops_ray.kb.store import connect, open_table, schema
    from llmops_ray.safety.pii import mask_pii

    threads = args.actor_threads or max(1, args.cpus // args.actors)
    config = IngestConfig(embed_actors=args.actors, embed_num_cpus=args.actor_cpus, embed_threads=threads)
    print(f"[bench] {args.docs} synthetic docs; Ray with {args.cpus} CPUs; {args.actors} embedding actor(s) x "
          f"{threads} torch thread(s), {args.actor_cpus} CPU each", flush=True)

    # (a) Ray Data pipeline
    with PeakRss() as mem_a:
        t0 = time.perf_counter()
        summary = ingest([str(corpus)], "bench", mode="rebuild", config=config,
                         progress=lambda m: print(f"  {time.perf_counter() - t0:7.1f}s {m}", flush=True))
        t_a = time.perf_counter() - t0
    chunks = summary["chunks_written"]
    rate_a = chunks / t_a
    print(f"[bench] (a) {chunks} chunks from {summary['documents_written']} docs in {t_a:.1f} s", flush=True)

    import ray

    ray.shutdown()  # give (b) and (c) the whole machine, as (a) had it
    texts = open_table("bench").to_arrow().column("text").to_pylist()

    with PeakRss() as mem_bc:
        torch.set_num_threads(args.cpus)
        model = load_embedder(None)
        embed_texts(model, texts[:64])  # warm-up outside the timing
        # (b) the same chunks, batched encode in one process
        t0 = time.perf_counter()
        vectors = embed_texts(model, texts, batch_size=config.embed_batch_size)
        t_b = time.perf_counter() - t0
        rate_b = len(texts) / t_b
        assert vectors.shape[0] == chunks
        print(f"[bench] (b) {len(texts)} chunks in {t_b:.1f} s", flush=True)

        # (c) per-document loop on a sample
        import datetime as dt

        import pyarrow as pa

        count = tokenizer_counter(default_model_path())
        files = sorted(corpus.iterdir())[: args.per_doc_sample]
        db = connect()
        table = None
        n_c = 0
        t0 = time.perf_counter()
        for i, path in enumerate(files):
            text, _ = mask_pii(clean_text(path.read_text(encoding="utf-8")))
            pieces = chunk_text(text, config.chunk_size, config.chunk_overlap, count)
            vecs = embed_texts(model, pieces, batch_size=config.embed_batch_size)
            rows = pa.table({
                "chunk_id": [f"{i}:{j}" for j in range(len(pieces))], "doc_id": [str(i)] * len(pieces),
                "chunk_index": pa.array(range(len(pieces)), pa.int32()), "tenant": ["default"] * len(pieces),
                "source": [str(path)] * len(pieces), "title": [""] * len(pieces), "text": pieces, "fts_text": pieces,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1]),
                "content_hash": [""] * len(pieces), "doc_minhash": pa.nulls(len(pieces), pa.list_(pa.uint32())),
                "lang": ["en"] * len(pieces), "doc_type": ["md"] * len(pieces), "metadata": ["{}"] * len(pieces),
                "ingested_at": pa.array([dt.datetime.now(dt.timezone.utc)] * len(pieces), pa.timestamp("us", tz="UTC")),
            }).cast(schema(vecs.shape[1]))
            if table is None:
                table = db.create_table("bench_per_doc", rows)
            else:
                table.add(rows)
            n_c += len(pieces)
        t_c = time.perf_counter() - t0
        rate_c = n_c / t_c
        print(f"[bench] (c) {n_c} chunks from {len(files)} docs in {t_c:.1f} s", flush=True)

    gib = 1024**3
    print()
    print(f"{'variant':<48} {'chunks':>8} {'seconds':>9} {'chunks/s':>9} {'peak PSS':>10}")
    print(f"{'(a) Ray Data pipeline (end to end)':<48} {chunks:>8} {t_a:>9.1f} {rate_a:>9.1f} {mem_a.peak / gib:>8.2f} G")
    print(f"{'(b) single process, batched encode only':<48} {len(texts):>8} {t_b:>9.1f} {rate_b:>9.1f} {mem_bc.peak / gib:>8.2f} G")
    print(f"{'(c) per-document loop (sample)':<48} {n_c:>8} {t_c:>9.1f} {rate_c:>9.1f} {mem_bc.peak / gib:>8.2f} G")
    print()
    print(f"a/b = {rate_a / rate_b:.2f}   (target >= 0.9)")
    print(f"a/c = {rate_a / rate_c:.2f}   (target >= 5)")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
