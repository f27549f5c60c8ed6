"""Retrievers tuned on a knowledge base: ``llmops kb tune-retriever`` (and ``jobs/tune_retriever.py``).

No reranker or embedder weights beyond the packaged all-MiniLM-L6-v2 can be downloaded here,
so the training signal comes from the KB itself:

1. **Pairs** (:func:`build_pairs`, driver): for every chunk, synthetic queries from its
   document title (first chunk only: a title names the whole document), its headings and a
   few of its sentences. A sentence query is paired with the chunk *without* that sentence
   (the inverse cloze task: otherwise the pair is a verbatim copy and teaches nothing but
   string matching). Each query gets hard negatives: the best hits of the KB's current
   search for that query that come from *other* documents.
2. **Fine-tuning on Ray Train** (:func:`train_loop`, ``TorchTrainer`` with an explicit CPU
   share): either the bi-encoder (the KB's own embedder; in-batch + hard negatives,
   the multiple-negatives ranking loss: cross-entropy over scaled cosine similarities), or a
   cross-encoder initialised from MiniLM (a new one-logit head; binary cross-entropy on
   positive / hard-negative pairs).
3. **A model directory** with ``lineage.json`` (KB and version the pairs came from, pair-set
   hash, base model, config, loss per epoch, code commit).
4. ``--apply`` (:func:`apply_model`): a bi-encoder re-embeds every chunk of the KB into a new
   version whose embedder record names the tuned model (the KB owns it from then on); a
   cross-encoder becomes the KB's default reranker (``kb/rerank.py``). ``llmops search`` and
   the retriever deployment then use it.

:func:`heldout_metrics` measures recall@k / MRR on a set of questions written by hand
(``resources/eval_suites/sample_kb_heldout.yaml`` for the sample corpus), never on the
synthetic pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field

from llmops_ray.common.cli_output import Progress, say
from llmops_ray.config import StrictModel, UserError

KINDS = ("bi-encoder", "cross-encoder")
_SENT = re.compile(r"(?<=[.!?。！？])\s*")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


class TuneRetrieverConfig(StrictModel):
    """Settings of ``llmops kb tune-retriever`` (YAML + ``key=value`` overrides)."""

    kind: Literal["bi-encoder", "cross-encoder"] = "bi-encoder"
    """What to fine-tune: the KB's embedder (``bi-encoder``) or a reranker (``cross-encoder``)."""
    base_model: Optional[str] = None
    """Starting weights; None = the KB's own embedder (bi-encoder) or the packaged MiniLM
    with a new one-logit head (cross-encoder)."""
    tenant: Optional[str] = None
    """Only this tenant's chunks make pairs (None = all)."""
    sentences_per_chunk: int = Field(3, ge=0)
    """Sentence queries drawn from each chunk."""
    max_pairs: int = Field(3000, ge=1)
    """At most this many (query, positive) pairs (a random sample when there are more)."""
    hard_negatives: int = Field(1, ge=0, le=8)
    """Hard negatives per query: top search hits from other documents."""
    min_query_chars: int = Field(12, ge=1)
    """Shorter queries (and sentences) are not used."""
    epochs: int = Field(2, ge=1)
    """Passes over the pairs."""
    batch_size: int = Field(16, ge=2)
    """Queries per step (the bi-encoder's in-batch negatives grow with it)."""
    lr: float = Field(2e-5, gt=0)
    """AdamW learning rate of the pretrained weights."""
    head_lr: float = Field(1e-3, gt=0)
    """Cross-encoder: learning rate of its new one-logit head (randomly initialised: at the
    encoder's rate it barely moves in a few hundred steps and the loss stays at ln 2)."""
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    """Share of the steps with a linear learning-rate warm-up."""
    scale: float = Field(20.0, gt=0)
    """Bi-encoder: cosine similarities are multiplied by this before the softmax (1 / temperature)."""
    max_length: int = Field(256, ge=16)
    """Tokens per input (pair, for the cross-encoder)."""
    seed: int = 0
    """Pair sampling, shuffling and head initialisation."""
    num_workers: int = Field(1, ge=1)
    """Ray Train workers (data-parallel)."""
    cpus_per_worker: float = Field(1.0, gt=0)
    """CPU share each worker reserves (its torch threads: this, rounded up)."""
    use_gpu: bool = False
    """One GPU per worker."""
    rerank_top_n: int = Field(20, ge=1, le=200)
    """``--apply`` of a cross-encoder: fused candidates it rescores by default."""
    out: Optional[str] = None
    """Model directory (default ``<workspace>/models/retriever-<kb>-<kind>-<utc time>``)."""
    keep_if_worse: bool = False
    """``--apply`` with ``--heldout``: keep the tuned model in use even when its held-out MRR
    is below the one before (by default the KB is restored to its previous version)."""


# --------------------------------------------------------------------------- pairs


def _clean_line(line: str) -> str:
    return " ".join(_LIST.sub("", line).replace("**", "").replace("`", "").split())


def chunk_queries(title: str, text: str, chunk_index: int, sentences_per_chunk: int, min_chars: int,
                  rng: random.Random) -> list[tuple[str, str, str]]:
    """Synthetic ``(query, positive passage, origin)`` of one chunk; ``origin`` is
    ``title``, ``heading`` or ``sentence``."""
    out: list[tuple[str, str, str]] = []
    title = (title or "").strip()
    if title and chunk_index == 0 and len(title) >= min_chars // 2:
        out.append((title, text, "title"))
    for heading in _HEADING.findall(text):
        heading = _clean_line(heading)
        if len(heading) >= min_chars // 2 and heading != title:
            out.append((f"{title}: {heading}" if title else heading, text, "heading"))
    sentences: list[str] = []
    for line in text.splitlines():
        if _HEADING.match(line):
            continue
        for raw in _SENT.split(_clean_line(line)):
            if len(raw.strip()) >= min_chars:
                sentences.append(raw.strip())
    picked = rng.sample(sentences, min(sentences_per_chunk, len(sentences))) if len(sentences) > 1 else []
    for sentence in picked:
        # Inverse cloze: the passage without the sentence that became the query.
        rest = text.replace(sentence, " ").strip()
        if len(rest) >= min_chars:
            out.append((sentence, rest, "sentence"))
    return out


def read_chunks(kb: str, tenant: str | None = None) -> tuple[list[dict], Any, Any]:
    """Every chunk row (chunk_id, doc_id, chunk_index, title, text) of ``kb`` (sorted by
    chunk id), their vectors as a float32 array (rows, dim), and the table at that version."""
    import numpy as np

    from llmops_ray.kb.query import _sql_literal
    from llmops_ray.kb.store import open_table, parse_kb_ref

    name, version = parse_kb_ref(kb)
    table = open_table(name, version)
    where = f"tenant = {_sql_literal(tenant)}" if tenant else None
    arrow = table.to_lance().to_table(columns=["chunk_id", "doc_id", "chunk_index", "title", "text", "vector"],
                                      filter=where).sort_by("chunk_id")
    vectors = np.asarray(arrow.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                         dtype=np.float32).reshape(arrow.num_rows, -1) if arrow.num_rows else np.zeros((0, 1), np.float32)
    return arrow.drop_columns(["vector"]).to_pylist(), vectors, table


def hard_negatives(query_vectors, chunk_vectors, chunk_docs: list[str], query_docs: list[str], per_query: int,
                   block: int = 50_000) -> list[list[int]]:
    """For each query, the indices of the ``per_query`` chunks most similar to it (cosine: all
    vectors are normalised) among chunks of *other* documents. Shapes: queries (Q, d), chunks
    (N, d); the similarity matrix is built ``block`` chunks at a time (Q x block floats)."""
    import numpy as np

    docs = np.asarray(chunk_docs)
    best_scores = np.full((len(query_docs), 0), -np.inf, dtype=np.float32)
    best_index = np.zeros((len(query_docs), 0), dtype=np.int64)
    for start in range(0, len(chunk_docs), block):
        sims = query_vectors @ chunk_vectors[start : start + block].T  # (Q, block)
        same = docs[start : start + block][None, :] == np.asarray(query_docs)[:, None]
        sims = np.where(same, -np.inf, sims)
        take = min(per_query, sims.shape[1])
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take] if take else np.zeros((len(query_docs), 0), int)
        best_scores = np.concatenate([best_scores, np.take_along_axis(sims, top, axis=1)], axis=1)
        best_index = np.concatenate([best_index, top + start], axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")[:, :per_query]
    out = []
    for q in range(len(query_docs)):
        picked = [int(best_index[q, j]) for j in order[q] if np.isfinite(best_scores[q, j])]
        out.append(picked)
    return out


def build_pairs(kb: str, config: TuneRetrieverConfig, progress: Progress = None) -> dict[str, Any]:
    """``{pairs: [{query, positive, negatives, doc_id, chunk_id, origin}], chunks, version}``.

    Hard negatives: the chunks of *other* documents closest to the query under the KB's own
    embedder (another chunk of the same document may well answer it too, so it is never a
    negative). One batched embedding of all queries against the stored vectors, no search calls."""
    from llmops_ray.kb.embed import embed_texts, kb_embedder
    from llmops_ray.kb.rerank import passage_text
    from llmops_ray.kb.store import embedder_of

    rows, vectors, table = read_chunks(kb, config.tenant)
    if len(rows) < 2:
        raise UserError(f"knowledge base {kb!r} has {len(rows)} chunk(s): too few to build training pairs")
    if len({r["doc_id"] for r in rows}) < 2:
        raise UserError(f"knowledge base {kb!r} holds one document: hard negatives need at least two")
    rng = random.Random(config.seed)
    candidates = []
    for row in rows:
        for query, positive, origin in chunk_queries(row["title"], row["text"], row["chunk_index"],
                                                     config.sentences_per_chunk, config.min_query_chars, rng):
            candidates.append({"query": query, "positive": passage_text({"title": row["title"], "text": positive}),
                               "doc_id": row["doc_id"], "chunk_id": row["chunk_id"], "origin": origin})
    if not candidates:
        raise UserError(f"knowledge base {kb!r}: no chunk gave a synthetic query (texts too short?)")
    if len(candidates) > config.max_pairs:
        candidates = rng.sample(candidates, config.max_pairs)
    say(progress, f"[tune-retriever] {len(candidates)} synthetic queries from {len(rows)} chunks; mining hard negatives")
    negatives: list[list[int]] = [[] for _ in candidates]
    if config.hard_negatives:
        model = kb_embedder(embedder_of(table))
        query_vectors = embed_texts(model, [c["query"] for c in candidates])
        negatives = hard_negatives(query_vectors, vectors, [r["doc_id"] for r in rows],
                                   [c["doc_id"] for c in candidates], config.hard_negatives)
    pairs = [{**cand, "negatives": [passage_text(rows[i]) for i in picked]} for cand, picked in zip(candidates, negatives)]
    return {"pairs": pairs, "chunks": len(rows), "version": int(table.version)}


def pairs_fingerprint(pairs: list[dict]) -> str:
    digest = hashlib.sha256()
    for p in pairs:
        digest.update(json.dumps([p["query"], p["positive"], p["negatives"]], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- training (Ray Train worker)


def _batches(items: list, size: int, rng: random.Random) -> list[list]:
    order = list(items)
    rng.shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _bi_encoder_loss(model, batch: list[dict], scale: float):
    """Multiple-negatives ranking loss: each query against every positive and hard negative of
    the batch, cross-entropy towards its own positive. Shapes: q (B, d), docs (B + H, d)."""
    import torch
    import torch.nn.functional as F

    inner = getattr(model, "module", model)
    queries = [p["query"] for p in batch]
    docs = [p["positive"] for p in batch] + [n for p in batch for n in p["negatives"]]
    q = model(inner.preprocess(queries))["sentence_embedding"]
    d = model(inner.preprocess(docs))["sentence_embedding"]
    sims = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T * scale
    return F.cross_entropy(sims, torch.arange(len(batch), device=sims.device))


def _cross_encoder_loss(model, batch: list[dict], rng: random.Random):
    """Binary cross-entropy on (query, positive) = 1 and (query, negative) = 0; a query without a
    hard negative gets another query's positive."""
    import torch
    import torch.nn.functional as F

    inner = getattr(model, "module", model)
    pairs, labels = [], []
    for i, p in enumerate(batch):
        pairs.append((p["query"], p["positive"]))
        labels.append(1.0)
        negatives = p["negatives"] or [batch[(i + 1) % len(batch)]["positive"]]
        for n in negatives:
            pairs.append((p["query"], n))
            labels.append(0.0)
    logits = model(inner.preprocess(pairs))["scores"].view(-1)
    return F.binary_cross_entropy_with_logits(logits, torch.tensor(labels, device=logits.device))


def train_loop(config: dict) -> None:
    """Ray Train worker: fine-tune, report the loss per epoch, checkpoint the model at the end."""
    import math
    import os
    import tempfile

    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model

    cfg = TuneRetrieverConfig.model_validate(config["settings"])
    torch.set_num_threads(max(1, math.ceil(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    pairs = config["pairs"][rank::world]  # each worker its shard
    device = str(get_device())
    if cfg.kind == "bi-encoder":
        from sentence_transformers import SentenceTransformer

        net = SentenceTransformer(config["base_model"], device=device)
    else:
        from sentence_transformers import CrossEncoder

        net = CrossEncoder(config["base_model"], num_labels=1, device=device)
    net.max_seq_length = min(cfg.max_length, net.max_seq_length or cfg.max_length)
    model = prepare_model(net)
    model.train()
    rng = random.Random(cfg.seed + rank)
    steps_per_epoch = max(1, math.ceil(len(pairs) / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_ratio)
    head = [p for n, p in net.named_parameters() if "classifier" in n] if cfg.kind == "cross-encoder" else []
    head_ids = {id(p) for p in head}
    groups = [{"params": [p for p in net.parameters() if id(p) not in head_ids], "lr": cfg.lr}]
    if head:
        groups.append({"params": head, "lr": cfg.head_lr})
    optimizer = torch.optim.AdamW(groups)
    # Linear warm-up over ``warmup`` steps, then linear decay to zero at the last step.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    history = []
    for epoch in range(cfg.epochs):
        losses = []
        for batch in _batches(pairs, cfg.batch_size, rng):
            if len(batch) < 2 and cfg.kind == "bi-encoder":
                continue  # one query has no in-batch negatives
            loss = _bi_encoder_loss(model, batch, cfg.scale) if cfg.kind == "bi-encoder" else \
                _cross_encoder_loss(model, batch, rng)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        mean = sum(losses) / max(1, len(losses))
        history.append({"epoch": epoch + 1, "train_loss": round(mean, 5), "steps": len(losses)})
        if rank == 0:  # a progress line in the driver's log (Ray forwards worker stdout)
            print(f"[tune-retriever] epoch {epoch + 1}/{cfg.epochs}: mean loss {mean:.4f} over {len(losses)} steps",
                  flush=True)
        last = epoch == cfg.epochs - 1
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if last and rank == 0:
                net.eval()
                net.save_pretrained(os.path.join(tmp, "model"))
                Path(tmp, "history.json").write_text(json.dumps(history))
                checkpoint = Checkpoint.from_directory(tmp)
            ray.train.report({"epoch": epoch + 1, "train_loss": mean}, checkpoint=checkpoint)


def default_out(kb: str, kind: str) -> Path:
    from llmops_ray.config import models_root

    name = kb.split("@", 1)[0]
    return models_root() / f"retriever-{name}-{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def fit(kb: str, config: TuneRetrieverConfig, pairs: list[dict], base_model: str, out_dir: Path,
        lineage: dict[str, Any]) -> dict[str, Any]:
    """Run the TorchTrainer and publish its model into ``out_dir``; returns its history."""
    import os
    import shutil

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from llmops_ray.cluster import init_ray, runtime_env
    from llmops_ray.common.artifacts import publish_dir, staging_dir
    from llmops_ray.config import runs_root
    from llmops_ray.models.base import write_lineage

    import ray

    from llmops_ray.train.runner import fit_cpus_per_worker

    init_ray()
    # Ask for what the cluster has free (a Serve app may hold part of it), or Train waits forever.
    cpus = fit_cpus_per_worker(config.num_workers, config.cpus_per_worker,
                               float(ray.available_resources().get("CPU", 0.0)))
    resources = {"CPU": cpus}
    if config.use_gpu:
        resources["GPU"] = 1
    # A fresh run name per call: Train V2 would treat a reused name as a run to resume.
    run_name = f"{out_dir.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"settings": config.model_dump(mode="json"), "pairs": pairs, "base_model": base_model},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        run_config=RunConfig(name=run_name, storage_path=str(runs_root()), worker_runtime_env=runtime_env()),
    )
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"retriever tuning {run_name!r} failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError(f"retriever tuning {run_name!r} reported no checkpoint")
    tmp = staging_dir(out_dir)
    with result.checkpoint.as_directory() as ckpt:
        shutil.copytree(Path(ckpt) / "model", tmp, dirs_exist_ok=True)
        history = json.loads((Path(ckpt) / "history.json").read_text())
    write_lineage(tmp, {**lineage, "history": history, "ray_train_run": run_name})
    publish_dir(tmp, out_dir)
    return {"history": history}


# --------------------------------------------------------------------------- apply


def reembed_kb(kb: str, model_dir: str, progress: Progress = None, batch_size: int = 64) -> int:
    """Re-embed every chunk of ``kb`` with ``model_dir`` into one new version (the vectors and
    the embedder record change in the same commit; the KB owns that embedder from then on).
    The FTS and vector indexes are rebuilt, the reranker setting kept, and the version tagged
    ``ingest-<n>``. Returns the new version."""
    import pyarrow as pa

    from llmops_ray.kb.embed import embed_texts, embedder_record, load_embedder
    from llmops_ray.kb.index import index_settings, refresh_vector_index, VectorIndexConfig
    from llmops_ray.kb.rerank import kb_reranker_config, set_kb_reranker
    from llmops_ray.kb.store import next_ingest_tag, open_table, refresh_fts_index, with_embedder

    table = open_table(kb)
    reranker = kb_reranker_config(table)
    recorded = (index_settings(table) or {}).get("config")
    data = table.to_lance().to_table()
    model = load_embedder(model_dir)
    say(progress, f"[tune-retriever] re-embedding {data.num_rows} chunks of {kb!r} with {model_dir}")
    texts = data.column("text").to_pylist()
    vectors = embed_texts(model, texts, batch_size=batch_size)
    dim = vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    data = data.set_column(data.schema.get_field_index("vector"), pa.field("vector", column.type), column)
    data = data.cast(with_embedder(data.schema, embedder_record(model_dir, dim)))
    table.add(data, mode="overwrite")  # one commit: new vectors + the new embedder record
    refresh_fts_index(table)
    refresh_vector_index(table, VectorIndexConfig.model_validate(recorded) if recorded else None)
    if reranker is not None:
        set_kb_reranker(table, reranker)
    table.checkout_latest()
    table.tags.create(next_ingest_tag(table), table.version)
    return int(table.version)


def apply_model(kb: str, kind: str, model_dir: str, config: TuneRetrieverConfig, progress: Progress = None) -> int:
    """Put a tuned model to work on ``kb``; returns the KB version that uses it."""
    from llmops_ray.kb.rerank import RerankConfig, set_kb_reranker
    from llmops_ray.kb.store import open_table

    if kind == "bi-encoder":
        return reembed_kb(kb, model_dir, progress)
    version = set_kb_reranker(open_table(kb), RerankConfig(model=model_dir, top_n=config.rerank_top_n))
    say(progress, f"[tune-retriever] {model_dir} is now the default reranker of {kb!r} (version {version})")
    return version


# --------------------------------------------------------------------------- held-out evaluation


def load_heldout(path: str) -> list[dict]:
    """Retrieval items ``{query, gold_sources}`` of an evaluation-suite YAML (other items skipped)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from exc
    items = [i for i in (data or {}).get("items", []) if i.get("type") == "retrieval"]
    if not items:
        raise UserError(f"{path}: no retrieval items (type: retrieval, query, gold_sources)")
    return items


def heldout_metrics(kb: str, items: list[dict], k: int = 5, mode: str = "hybrid", tenant: str | None = None,
                    rerank: bool | None = None) -> dict[str, Any]:
    """recall@k (a gold source among the top k) and MRR (1 / rank of the first gold hit, 0
    past k) of ``items`` on ``kb``; a gold source matches a hit whose source ends with it."""
    from llmops_ray.kb.query import search

    recall, rr = 0.0, 0.0
    for item in items:
        hits = search(kb, item["query"], k=k, mode=mode, tenant=tenant, rerank=rerank)
        rank = next((i for i, h in enumerate(hits, 1)
                     if any(str(h["source"]).endswith(g) for g in item["gold_sources"])), None)
        if rank is not None:
            recall += 1
            rr += 1.0 / rank
    n = max(1, len(items))
    return {f"recall_at_{k}": round(recall / n, 4), "mrr": round(rr / n, 4), "questions": len(items)}


# --------------------------------------------------------------------------- the command


def tune_retriever(kb: str, config: TuneRetrieverConfig, apply: bool = False, heldout: str | None = None,
                   progress: Progress = None) -> dict[str, Any]:
    """Build pairs from ``kb``, fine-tune on Ray Train, write the model dir, optionally apply it.

    Returns ``model_dir``, ``kind``, ``pairs``, ``version`` (the KB version that uses the model
    after ``apply``, else the version the pairs came from), ``applied``, ``base_model``,
    ``train_loss``, ``seconds`` and, with ``heldout``, ``before`` / ``after`` metrics.
    """
    from llmops_ray.common.artifacts import git_commit, ray_job_id
    from llmops_ray.kb.embed import DEFAULT_MODEL_NAME, default_model_path
    from llmops_ray.kb.store import embedder_of, open_table, parse_kb_ref

    started = time.monotonic()
    name, pinned = parse_kb_ref(kb)
    if apply and pinned is not None:
        raise UserError("--apply writes a new version of the KB: give its NAME, not NAME@VERSION")
    items = load_heldout(heldout) if heldout else None
    table = open_table(name, pinned)
    if config.base_model:
        base = config.base_model
    elif config.kind == "bi-encoder":
        record = embedder_of(table) or {}
        model = record.get("model")
        base = default_model_path() if model in (None, DEFAULT_MODEL_NAME) else model
    else:
        base = default_model_path()
    rerank_eval = None if config.kind == "cross-encoder" else False
    before = heldout_metrics(kb, items, tenant=config.tenant, rerank=rerank_eval) if items else None
    built = build_pairs(kb, config, progress)
    pairs = built["pairs"]
    out_dir = Path(config.out).expanduser().resolve() if config.out else default_out(kb, config.kind)
    lineage = {"kind": config.kind, "kb": name, "kb_version": built["version"], "tenant": config.tenant,
               "base_model": base, "pairs": len(pairs), "pairs_sha256_16": pairs_fingerprint(pairs),
               "pair_origins": {o: sum(1 for p in pairs if p["origin"] == o) for o in ("title", "heading", "sentence")},
               "config": config.model_dump(mode="json"), "git_commit": git_commit(), "ray_job_id": ray_job_id()}
    say(progress, f"[tune-retriever] fine-tuning a {config.kind} from {base} on {len(pairs)} pairs "
                   f"({config.epochs} epochs, {config.num_workers} worker(s) x {config.cpus_per_worker:g} CPU)")
    trained = fit(kb, config, pairs, base, out_dir, lineage)
    version = built["version"]
    if apply:
        previous = open_table(name).version
        version = apply_model(name, config.kind, str(out_dir), config, progress)
    out: dict[str, Any] = {
        "model_dir": str(out_dir), "kind": config.kind, "pairs": len(pairs), "version": version, "kb": name,
        "applied": apply, "base_model": base, "train_loss": [h["train_loss"] for h in trained["history"]],
        "seconds": round(time.monotonic() - started, 1),
    }
    if items:
        out["before"] = before
        if apply:
            out["after"] = after = heldout_metrics(name, items, tenant=config.tenant, rerank=rerank_eval)
            if after["mrr"] < before["mrr"] and not config.keep_if_worse:
                # Worse on questions it never saw: put the KB back as it was (a new version equal
                # to the previous one: vectors, embedder record and reranker setting included).
                table = open_table(name)
                table.restore(previous)
                table.checkout_latest()
                out.update(applied=False, version=int(table.version),
                           reverted=f"held-out MRR fell from {before['mrr']} to {after['mrr']}: the KB was restored "
                                    f"to version {previous} (keep_if_worse=true keeps the tuned model)")
                say(progress, f"[tune-retriever] {out['reverted']}")
    return out
