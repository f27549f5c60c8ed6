"""Search a knowledge base: vector, full-text (BM25) and hybrid (reciprocal rank fusion).

A plain library call: no Ray. Hybrid runs both searches with a deeper candidate list and
fuses their rankings with RRF, ``score = sum(1 / (RRF_K + rank))`` over the two lists
(rank from 1), which needs no score calibration between cosine and BM25.

Filters: ``tenant`` and the columns in :data:`COLUMN_FILTERS` are applied inside LanceDB
(pre-filter); other keys are matched against the record's JSON ``metadata`` after the
search, on an over-fetched candidate list. A value may be a scalar (equality) or a list
(any of).
"""

from __future__ import annotations

import json
from typing import Any

from llmops_ray.config import UserError
from llmops_ray.kb.store import FTS_COLUMN, fts_normalise, open_table, parse_kb_ref

MODES = ("vector", "fts", "hybrid")
RRF_K = 60
COLUMN_FILTERS = ("source", "doc_id", "title", "lang", "doc_type", "chunk_id")
HIT_FIELDS = ("doc_id", "source", "chunk_id", "text", "title", "tenant", "chunk_index", "lang", "doc_type", "metadata")


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _condition(column: str, value: Any) -> str:
    if isinstance(value, (list, tuple, set)):
        if not value:
            return "false"
        return f"{column} IN ({', '.join(_sql_literal(v) for v in value)})"
    return f"{column} = {_sql_literal(value)}"


def build_where(tenant: str | None, filters: dict | None) -> tuple[str | None, dict]:
    """(SQL predicate for LanceDB, remaining metadata filters)."""
    parts = []
    if tenant is not None:
        parts.append(_condition("tenant", tenant))
    rest = {}
    for key, value in (filters or {}).items():
        if key == "tenant":
            parts.append(_condition("tenant", value))
        elif key in COLUMN_FILTERS:
            parts.append(_condition(key, value))
        else:
            rest[key] = value
    return (" AND ".join(f"({p})" for p in parts) or None), rest


def _metadata_ok(row: dict, wanted: dict) -> bool:
    if not wanted:
        return True
    try:
        meta = json.loads(row.get("metadata") or "{}")
    except json.JSONDecodeError:
        return False
    for key, value in wanted.items():
        have = meta.get(key)
        options = value if isinstance(value, (list, tuple, set)) else [value]
        if have not in options and str(have) not in [str(v) for v in options]:
            return False
    return True


# Columns a hit never needs: not fetched (at 1M chunks the vector alone doubled the fetch).
_HEAVY_COLUMNS = ("vector", "fts_text", "doc_minhash")


def _result_columns(table) -> list[str]:
    return [c for c in table.schema.names if c not in _HEAVY_COLUMNS]


def _hit(row: dict, score: float) -> dict:
    hit = {k: row.get(k) for k in HIT_FIELDS}
    hit["score"] = float(score)
    # Parent-child KBs: the enclosing section for the generator; others: the chunk itself.
    hit["parent_id"] = row.get("parent_id")
    hit["context"] = row.get("parent_text") or row.get("text")
    if row.get("flagged"):  # only reachable with include_flagged: why ingest flagged the chunk
        hit["flagged"] = row["flagged"]
    return hit


def _vector_rows(table, query: str, limit: int, where: str | None, embedder: Any, vector: Any = None) -> list[dict]:
    from llmops_ray.kb.embed import embed_texts
    from llmops_ray.kb.index import apply_search_settings, search_settings

    if vector is None:
        model = embedder if embedder is not None else _kb_embedder(table)
        vector = embed_texts(model, [query])[0]
    q = (table.search(vector, vector_column_name="vector").distance_type("cosine").limit(limit)
         .select(_result_columns(table)))
    q = apply_search_settings(q, search_settings(table))  # the KB's ANN settings (no-op when flat)
    if where:
        q = q.where(where, prefilter=True)
    rows = q.to_list()
    for row in rows:
        row["_rank_score"] = 1.0 - float(row.get("_distance", 1.0))  # cosine similarity
    return rows


def _kb_embedder(table) -> Any:
    """The embedder the KB's vectors were written with (its record), loaded once per process."""
    from llmops_ray.kb.embed import kb_embedder
    from llmops_ray.kb.store import embedder_of

    return kb_embedder(embedder_of(table))


def _check_embedder(table, embedder: Any) -> None:
    """A caller's own embedder must at least give the KB's dimension."""
    from llmops_ray.kb.embed import embedding_dim

    dim = table.schema.field("vector").type.list_size
    if embedding_dim(embedder) != dim:
        raise UserError(f"the embedder gives {embedding_dim(embedder)}-dim vectors but the knowledge base holds "
                        f"{dim}-dim ones; leave the embedder out to use the KB's own")


def _vector_and_fts(table, query: str, limit: int, where: str | None, embedder: Any,
                    vector: Any = None) -> tuple[list, list]:
    """Both candidate lists of a hybrid search, run side by side: LanceDB releases the GIL,
    so the hybrid latency is about the slower of the two rather than their sum."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        fts = pool.submit(_fts_rows, table, query, limit, where)
        rows = _vector_rows(table, query, limit, where, embedder, vector)
        return rows, fts.result()


def _fts_rows(table, query: str, limit: int, where: str | None) -> list[dict]:
    text = fts_normalise(query).strip()
    if not text:
        return []
    try:
        q = table.search(text, query_type="fts", fts_columns=FTS_COLUMN).limit(limit).select(_result_columns(table))
        if where:
            q = q.where(where, prefilter=True)
        rows = q.to_list()
    except (ValueError, RuntimeError) as exc:
        if "index" in str(exc).lower():  # a KB written without an FTS index (should not happen)
            return []
        raise
    for row in rows:
        row["_rank_score"] = float(row.get("_score", 0.0))
    return rows


def search(
    kb: str,
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    tenant: str | None = None,
    filters: dict | None = None,
    embedder: Any = None,
    rerank: bool | int | None = None,
    reranker: Any = None,
    query_vector: Any = None,
    include_flagged: bool = False,
) -> list[dict]:
    """Top-``k`` chunks of KB ``kb`` (``NAME`` or ``NAME@VERSION``) for ``query``, best first.

    Each hit: ``doc_id``, ``source``, ``chunk_id``, ``text``, ``score`` (cosine similarity,
    BM25 or RRF depending on ``mode``), ``title``, ``tenant``, plus ``chunk_index``,
    ``lang``, ``doc_type``, ``metadata`` (JSON text). ``embedder``: an already loaded
    sentence-transformers model to reuse (it must give the KB's dimension); by default the
    embedder the KB records (``llmops kb show``), loaded once per process. ``query_vector``:
    the query already embedded by the KB's embedder (normalised, the KB's dimension), e.g. for
    a batch of queries embedded at once; the text is still used for full-text search.

    Rerank stage (``kb/rerank.py``): ``rerank`` False = off, True = required, an integer =
    that many fused candidates rescored, None = on when a reranker is available; ``reranker``
    is a loaded :class:`~llmops_ray.kb.rerank.Reranker` to use instead of the KB's default.
    A reranked hit's ``score`` is the cross-encoder's (``fusion_score`` keeps the first one).

    Parent-child chunks: ``context`` is the text a generator should read, the enclosing
    section (``parent_id``) for a KB ingested with ``parent_child`` on, else the chunk itself;
    ``text`` and ``chunk_id`` stay the small chunk's (what a citation points to).

    Chunks that ingest flagged as addressing the model (``flagged``, issue 18: hidden HTML
    text, instructions to an assistant) are left out unless ``include_flagged``; then their
    hits carry ``flagged`` (the reason). KBs written before the column existed have none.
    """
    from llmops_ray.kb.rerank import plan_rerank, rerank_hits

    if mode not in MODES:
        raise UserError(f"unknown search mode {mode!r} (use one of {', '.join(MODES)})")
    if k <= 0:
        raise UserError("k must be a positive number of hits")
    name, version = parse_kb_ref(kb)
    table = open_table(name, version)
    if embedder is not None and mode != "fts":
        _check_embedder(table, embedder)
    where, meta_filters = build_where(tenant, filters)
    if not include_flagged and "flagged" in table.schema.names:
        where = f"({where}) AND (flagged IS NULL)" if where else "flagged IS NULL"
    rerank_plan = plan_rerank(table, rerank, reranker)
    # Enough fused candidates for the rerank stage to choose from.
    keep = max(k, rerank_plan[1]) if rerank_plan else k
    depth = max(keep * 4, 20) * (5 if meta_filters else 1)

    if mode == "vector":
        ranked = [(r, r["_rank_score"]) for r in _vector_rows(table, query, depth, where, embedder, query_vector)]
    elif mode == "fts":
        ranked = [(r, r["_rank_score"]) for r in _fts_rows(table, query, depth, where)]
    else:
        fused: dict[str, list] = {}
        for rows in _vector_and_fts(table, query, depth, where, embedder, query_vector):
            rows = [r for r in rows if _metadata_ok(r, meta_filters)]
            for rank, row in enumerate(rows, 1):
                entry = fused.setdefault(row["chunk_id"], [row, 0.0])
                entry[1] += 1.0 / (RRF_K + rank)
        ranked = sorted(fused.values(), key=lambda e: (-e[1], e[0]["chunk_id"]))
    if mode != "hybrid":  # hybrid filtered each list before fusing
        ranked = [(r, s) for r, s in ranked if _metadata_ok(r, meta_filters)]
        ranked.sort(key=lambda e: (-e[1], e[0]["chunk_id"]))
    hits = [_hit(row, score) for row, score in ranked[:keep]]
    if rerank_plan:
        return rerank_hits(rerank_plan[0], query, hits, k, rerank_plan[1])
    return hits[:k]
