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


def _hit(row: dict, score: float) -> dict:
    hit = {k: row.get(k) for k in HIT_FIELDS}
    hit["score"] = float(score)
    return hit


def _vector_rows(table, query: str, limit: int, where: str | None, embedder: Any) -> list[dict]:
    from llmops_ray.kb.embed import cached_embedder, embed_texts

    model = embedder if embedder is not None else cached_embedder(None)
    vector = embed_texts(model, [query])[0]
    q = table.search(vector, vector_column_name="vector").distance_type("cosine").limit(limit)
    if where:
        q = q.where(where, prefilter=True)
    rows = q.to_list()
    for row in rows:
        row["_rank_score"] = 1.0 - float(row.get("_distance", 1.0))  # cosine similarity
    return rows


def _fts_rows(table, query: str, limit: int, where: str | None) -> list[dict]:
    text = fts_normalise(query).strip()
    if not text:
        return []
    try:
        q = table.search(text, query_type="fts", fts_columns=FTS_COLUMN).limit(limit)
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
) -> list[dict]:
    """Top-``k`` chunks of KB ``kb`` (``NAME`` or ``NAME@VERSION``) for ``query``, best first.

    Each hit: ``doc_id``, ``source``, ``chunk_id``, ``text``, ``score`` (cosine similarity,
    BM25 or RRF depending on ``mode``), ``title``, ``tenant``, plus ``chunk_index``,
    ``lang``, ``doc_type``, ``metadata`` (JSON text). ``embedder``: an already loaded
    sentence-transformers model to reuse; by default the KB's default embedder (cached).
    """
    if mode not in MODES:
        raise UserError(f"unknown search mode {mode!r} (use one of {', '.join(MODES)})")
    if k <= 0:
        raise UserError("k must be a positive number of hits")
    name, version = parse_kb_ref(kb)
    table = open_table(name, version)
    where, meta_filters = build_where(tenant, filters)
    depth = max(k * 4, 20) * (5 if meta_filters else 1)

    if mode == "vector":
        ranked = [(r, r["_rank_score"]) for r in _vector_rows(table, query, depth, where, embedder)]
    elif mode == "fts":
        ranked = [(r, r["_rank_score"]) for r in _fts_rows(table, query, depth, where)]
    else:
        fused: dict[str, list] = {}
        for rows in (_vector_rows(table, query, depth, where, embedder), _fts_rows(table, query, depth, where)):
            rows = [r for r in rows if _metadata_ok(r, meta_filters)]
            for rank, row in enumerate(rows, 1):
                entry = fused.setdefault(row["chunk_id"], [row, 0.0])
                entry[1] += 1.0 / (RRF_K + rank)
        ranked = sorted(fused.values(), key=lambda e: (-e[1], e[0]["chunk_id"]))
        return [_hit(row, score) for row, score in ranked[:k]]
    ranked = [(r, s) for r, s in ranked if _metadata_ok(r, meta_filters)]
    ranked.sort(key=lambda e: (-e[1], e[0]["chunk_id"]))
    return [_hit(row, score) for row, score in ranked[:k]]
