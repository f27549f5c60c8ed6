"""The vector (ANN) index of a knowledge base: when it is built, how it is kept current, how it is searched.

Below ``min_rows`` chunks a KB is searched by a flat scan (exact, and fast enough: see
``benchmarks/search.py``). From ``min_rows`` on, each ingest leaves an IVF index over the
``vector`` column (LanceDB's own ``IVF_PQ`` or ``IVF_HNSW_SQ``, cosine):

* no index yet -> trained and built;
* an index exists -> the new rows are added to its partitions (``optimize_indices``: no
  retraining, seconds), unless the table grew ``retrain_growth`` times since the index was
  trained or its settings changed, then it is retrained;
* an index that cannot be built (too few rows for the partitions asked, a training error)
  leaves the KB on flat search with a warning; the ingest itself never fails for it.

Every step is its own Lance commit after the ingest's data commit and before its
``ingest-<n>`` tag, so a killed ingest leaves a searchable table whatever the moment:
LanceDB searches rows the index does not cover yet with a flat scan and merges the results.

The settings the KB was indexed with (this config) are kept in the Lance dataset's config
under :data:`CONFIG_KEY` (versioned with the table); searches read ``nprobes`` /
``refine_factor`` / ``ef`` from there.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Literal, Optional

from pydantic import Field

from llmops_ray.config import StrictModel

logger = logging.getLogger("llmops_ray.kb.index")

CONFIG_KEY = "llmops.vector_index"
INDEX_NAME = "vector_idx"
VECTOR_COLUMN = "vector"
# PQ with 8-bit codes trains 256 centroids per sub-vector: fewer rows cannot train it.
MIN_TRAIN_ROWS = 256


class VectorIndexConfig(StrictModel):
    """Vector index of a knowledge base (the ``index:`` section of an ingest config)."""

    enabled: bool = True
    """Build an ANN index once the KB has ``min_rows`` chunks; False keeps flat (exact) search."""
    min_rows: int = Field(20_000, ge=1)
    """Chunks from which an index is built. Below it a flat scan is exact and fast enough
    (benchmarks/search.py on the shared 2-core machine: 19-32 ms p50 at 20,000 x 384-d, where
    the index answered in 4-8 ms; 1.8 s at 1,000,000)."""
    index_type: Literal["IVF_PQ", "IVF_HNSW_SQ"] = "IVF_HNSW_SQ"
    """``IVF_HNSW_SQ`` (an HNSW graph per partition over 8-bit scalar-quantised vectors) or
    ``IVF_PQ`` (compact product-quantised codes, refined with exact distances). HNSW-SQ by
    default: at 20,000 rows it trained in 8.5 s against 93 s for IVF_PQ (48 sub-vectors) on
    2 cores, and needs no refine step for recall@10 >= 0.95; IVF_PQ's index is ~8x smaller."""
    num_partitions: Optional[int] = Field(None, ge=1)
    """IVF partitions; None = sqrt(rows) at build time."""
    num_sub_vectors: Optional[int] = Field(None, ge=1)
    """PQ sub-vectors (must divide the dimension); None = dim / 8 (48 for 384-d vectors)."""
    nprobes: int = Field(20, ge=1)
    """Partitions searched per query (1M rows: 10, 20 and 40 gave the same recall with
    sqrt(rows) partitions; 20 leaves margin for data less clustered than the benchmark's)."""
    refine_factor: Optional[int] = Field(10, ge=1)
    """IVF_PQ: re-rank ``k x refine_factor`` candidates with exact distances (None = off;
    20,000 rows: recall@10 0.44 without, 0.90 at 5, 0.998 at 10)."""
    ef: int = Field(128, ge=1)
    """IVF_HNSW_SQ: candidate list size of the graph search (1M rows: recall@10 0.916 at 32,
    0.952 at 64, 0.966 at 128, all at 5-8 ms p50)."""
    retrain_growth: float = Field(2.0, gt=1.0)
    """Retrain (rather than extend) the index once the table has this many times the rows it
    was trained on: the partitions were fitted to the old data."""


def index_settings(table) -> dict[str, Any] | None:
    """The recorded index settings of a table's current version (None when never recorded)."""
    raw = (_lance(table).config() or {}).get(CONFIG_KEY)
    return json.loads(raw) if raw else None


def _lance(table):
    return table.to_lance()


def vector_index_stats(table) -> dict[str, Any] | None:
    """``{index_type, indexed_rows, unindexed_rows}`` of the vector index, None without one."""
    names = [i.name for i in table.list_indices() if VECTOR_COLUMN in list(i.columns) and i.name == INDEX_NAME]
    if not names:
        return None
    stats = table.index_stats(INDEX_NAME)
    return {"index_type": stats.index_type, "indexed_rows": int(stats.num_indexed_rows),
            "unindexed_rows": int(stats.num_unindexed_rows)}


def _build_params(config: VectorIndexConfig, rows: int, dim: int) -> dict[str, Any]:
    partitions = config.num_partitions or max(1, int(round(math.sqrt(rows))))
    params: dict[str, Any] = {"index_type": config.index_type, "num_partitions": partitions}
    if config.index_type == "IVF_PQ":
        sub = config.num_sub_vectors or max(1, dim // 8)
        params["num_sub_vectors"] = sub
    return params


def _create(table, params: dict[str, Any], dim: int) -> None:
    from lancedb.index import IvfHnswSq, IvfPq

    if params["index_type"] == "IVF_PQ":
        if dim % params["num_sub_vectors"]:
            raise ValueError(f"num_sub_vectors {params['num_sub_vectors']} does not divide the dimension {dim}")
        config = IvfPq(distance_type="cosine", num_partitions=params["num_partitions"],
                       num_sub_vectors=params["num_sub_vectors"])
    else:
        config = IvfHnswSq(distance_type="cosine", num_partitions=params["num_partitions"])
    table.create_index(VECTOR_COLUMN, config=config, replace=True, name=INDEX_NAME)


def refresh_vector_index(table, config: VectorIndexConfig | None = None) -> dict[str, Any]:
    """Bring the vector index of ``table`` up to date after an ingest commit (see module doc).

    Returns ``{action, index_type, indexed_rows, unindexed_rows, seconds[, warning]}`` with
    ``action`` one of ``built``, ``retrained``, ``updated``, ``current``, ``flat``.
    """
    config = config or VectorIndexConfig()
    started = time.monotonic()
    rows = table.count_rows()
    dim = table.schema.field(VECTOR_COLUMN).type.list_size
    recorded = index_settings(table) or {}
    stats = vector_index_stats(table)
    out: dict[str, Any] = {"action": "current"}
    wanted = config.model_dump()

    if not config.enabled or (stats is None and rows < config.min_rows):
        if stats is not None:
            table.drop_index(INDEX_NAME)
        out["action"] = "flat"
    else:
        params = _build_params(config, rows, dim)
        old = recorded.get("params") or {}
        built_rows = int(recorded.get("built_rows") or 0)
        # Partitions that follow sqrt(rows) change with every ingest: only a change the user
        # asked for (type, explicit partitions or sub-vectors) or enough growth retrains.
        settings_changed = stats is not None and (
            old.get("index_type", stats["index_type"]) != config.index_type
            or (config.num_partitions is not None and old.get("num_partitions") != config.num_partitions)
            or (config.index_type == "IVF_PQ" and config.num_sub_vectors is not None
                and old.get("num_sub_vectors") != config.num_sub_vectors))
        grown = bool(built_rows) and rows >= config.retrain_growth * built_rows
        if stats is None or settings_changed or grown:
            needed = max(MIN_TRAIN_ROWS if config.index_type == "IVF_PQ" else 1, params["num_partitions"])
            if rows < needed:
                warning = (f"vector index not built: {rows} rows cannot train {params['num_partitions']} partitions"
                           f"{' and 256 PQ centroids' if config.index_type == 'IVF_PQ' else ''}; flat search")
                return _flat(out, warning, stats, started)
            try:
                _create(table, params, dim)
            except Exception as exc:  # training errors come as RuntimeError/ValueError/lance errors
                warning = f"vector index not built ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); flat search"
                return _flat(out, warning, stats, started)
            out["action"] = "retrained" if stats is not None else "built"
            built_rows = rows
        else:
            params = old or params
            if stats["unindexed_rows"]:
                _lance(table).optimize.optimize_indices(index_names=[INDEX_NAME])
                out["action"] = "updated"
        recorded_now = {"config": wanted, "params": params, "built_rows": built_rows}
        if recorded_now != recorded:
            _lance(table).update_config({CONFIG_KEY: json.dumps(recorded_now, sort_keys=True)})
    if out["action"] == "flat":
        recorded_now = {"config": wanted, "params": None, "built_rows": 0}
        if recorded_now != recorded:
            _lance(table).update_config({CONFIG_KEY: json.dumps(recorded_now, sort_keys=True)})
    table.checkout_latest()
    return _finish(out, table, started)


def _flat(out: dict, warning: str, stats: dict | None, started: float) -> dict[str, Any]:
    logger.warning(warning)
    out.update(action="flat", warning=warning)
    out.update(index_type=stats["index_type"] if stats else None,
               indexed_rows=stats["indexed_rows"] if stats else 0,
               unindexed_rows=stats["unindexed_rows"] if stats else None)
    out["seconds"] = round(time.monotonic() - started, 2)
    return out


def _finish(out: dict, table, started: float) -> dict[str, Any]:
    stats = vector_index_stats(table)
    out.update(index_type=stats["index_type"] if stats else None,
               indexed_rows=stats["indexed_rows"] if stats else 0,
               unindexed_rows=stats["unindexed_rows"] if stats else table.count_rows())
    out["seconds"] = round(time.monotonic() - started, 2)
    return out


def search_settings(table) -> dict[str, Any]:
    """``nprobes`` / ``refine_factor`` / ``ef`` a vector query of this table uses (the KB's
    recorded config, else the defaults)."""
    recorded = (index_settings(table) or {}).get("config") or {}
    defaults = VectorIndexConfig().model_dump()
    return {key: recorded.get(key, defaults[key]) for key in ("index_type", "nprobes", "refine_factor", "ef")}


def apply_search_settings(query, settings: dict[str, Any]):
    """A LanceDB vector query with the KB's ANN settings (ignored by a flat scan)."""
    query = query.nprobes(int(settings["nprobes"]))
    if settings.get("index_type") == "IVF_HNSW_SQ":
        return query.ef(int(settings["ef"]))
    if settings.get("refine_factor"):
        query = query.refine_factor(int(settings["refine_factor"]))
    return query
