"""LanceDB storage of knowledge bases: one table per KB under ``config.kb_root()``.

Table schema (one row per chunk): ``chunk_id`` (key, ``<doc_id>:<index>``), ``doc_id``
(stable hash of tenant + source), ``chunk_index``, ``tenant``, ``source``, ``title``,
``text`` (PII-masked), ``fts_text`` (``text`` with Chinese split into character bigrams,
the column the full-text index covers), ``vector`` (normalised float32), ``content_hash``
(of the whole document), ``doc_minhash`` (the document's MinHash signature, on chunk 0
only, for near-duplicate checks of later ingests), ``lang``, ``doc_type``, ``metadata``
(JSON text), ``ingested_at``, ``parent_id`` / ``parent_text`` (parent-child KBs: the
enclosing section the generator reads; null otherwise), ``flagged`` (why the chunk addresses
the model: ``safety/ingest_flags.py``; null for ordinary chunks and in KBs written before
the column existed; retrieval leaves flagged chunks out unless asked).

Versions: every ingest lands as one commit (a new Lance version) and is tagged
``ingest-<n>``; ``NAME@VERSION`` (a number or a tag) reads an older one.
"""

from __future__ import annotations

import re
from typing import Any

from llmops_ray.config import UserError, kb_root

KB_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
FTS_COLUMN = "fts_text"
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def fts_normalise(text: str) -> str:
    """Text as the full-text index sees it: each run of CJK characters becomes its bigrams.

    LanceDB's tokenizers split on spaces and punctuation, which leaves a Chinese sentence as
    one token; bigrams (the usual CJK trick) make ``知识库`` match ``知识 识库``. Applied to
    both stored text and queries.
    """

    def bigrams(m: re.Match[str]) -> str:
        run = m.group(0)
        if len(run) == 1:
            return f" {run} "
        return " " + " ".join(run[i : i + 2] for i in range(len(run) - 1)) + " "

    return _CJK_RUN.sub(bigrams, text)


def check_kb_name(name: str) -> str:
    if not KB_NAME_RE.match(name or ""):
        raise UserError(f"invalid knowledge-base name {name!r}: use letters, digits, '_', '-', '.'")
    return name


def parse_kb_ref(ref: str) -> tuple[str, int | str | None]:
    """``NAME`` or ``NAME@VERSION`` (a version number or a tag such as ``ingest-2``)."""
    name, _, version = ref.partition("@")
    check_kb_name(name)
    if not _:
        return name, None
    if not version:
        raise UserError(f"{ref!r}: empty version after '@'")
    return name, int(version) if version.isdigit() else version


def schema(dim: int):
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("chunk_index", pa.int32()),
            pa.field("tenant", pa.string()),
            pa.field("source", pa.string()),
            pa.field("title", pa.string()),
            pa.field("text", pa.string()),
            pa.field(FTS_COLUMN, pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("content_hash", pa.string()),
            pa.field("doc_minhash", pa.list_(pa.uint32())),
            pa.field("lang", pa.string()),
            pa.field("doc_type", pa.string()),
            pa.field("metadata", pa.string()),
            pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
            pa.field("parent_id", pa.string()),
            pa.field("parent_text", pa.string()),
            pa.field("flagged", pa.string()),
        ]
    )


# Columns added after the first schema: (name, SQL that fills them in an older table).
LATER_COLUMNS = {"parent_id": "CAST(NULL AS STRING)", "parent_text": "CAST(NULL AS STRING)",
                 "flagged": "CAST(NULL AS STRING)"}


def add_missing_columns(table) -> list[str]:
    """Give a KB written before :data:`LATER_COLUMNS` existed those columns (null): a metadata-only
    Lance commit that leaves every row searchable. Returns the names added."""
    missing = {name: sql for name, sql in LATER_COLUMNS.items() if name not in table.schema.names}
    if missing:
        table.add_columns(missing)
    return sorted(missing)


_CONNECTIONS: dict[tuple[int, str], Any] = {}


def connect():
    """The LanceDB connection of the workspace's KB root, one per process and root: tables
    opened through it share its index and metadata caches, so a search does not re-read the
    vector index (1M chunks, benchmarks/search.py: vector search 53 -> 27 ms p50)."""
    import os

    import lancedb

    key = (os.getpid(), str(kb_root()))
    db = _CONNECTIONS.get(key)
    if db is None:
        db = _CONNECTIONS[key] = lancedb.connect(key[1])
    return db


def table_names(db=None) -> list[str]:
    db = db or connect()
    result = db.list_tables()
    names = getattr(result, "tables", result)
    return sorted(names)


def open_table(name: str, version: int | str | None = None, db=None):
    """Open KB ``name`` (at ``version`` when given); unknown names/versions are a UserError."""
    db = db or connect()
    check_kb_name(name)
    if name not in table_names(db):
        raise UserError(f"knowledge base {name!r} does not exist (known: {', '.join(table_names(db)) or 'none'})")
    table = db.open_table(name)
    if version is not None:
        try:
            table.checkout(version)
        except Exception as exc:  # lance raises ValueError / RuntimeError variants
            raise UserError(f"knowledge base {name!r} has no version {version!r}") from exc
    return table


def ingest_tags(table) -> dict[str, int]:
    """``ingest-<n>`` tags of a table -> version."""
    out = {}
    for tag, info in table.tags.list().items():
        version = info["version"] if isinstance(info, dict) else getattr(info, "version", None)
        out[tag] = int(version)
    return out


def next_ingest_tag(table) -> str:
    numbers = [int(t.split("-", 1)[1]) for t in ingest_tags(table) if re.fullmatch(r"ingest-\d+", t)]
    return f"ingest-{max(numbers, default=0) + 1}"


def refresh_fts_index(table) -> None:
    """(Re)build the full-text index over ``fts_text`` so it covers the latest commit."""
    from lancedb.index import FTS

    table.create_index(FTS_COLUMN, config=FTS(with_position=False), replace=True)


def list_kbs() -> list[dict[str, Any]]:
    """Every KB: name, latest version, chunk and document counts, tenants, latest tag."""
    db = connect()
    out = []
    for name in table_names(db):
        table = db.open_table(name)
        if not {"doc_id", "tenant"} <= set(table.schema.names):
            continue  # some other table in the same database, not a knowledge base
        arrow = table.to_lance().to_table(columns=["doc_id", "tenant"])
        tags = ingest_tags(table)
        out.append(
            {
                "name": name,
                "version": table.version,
                "chunks": arrow.num_rows,
                "documents": len(set(arrow.column("doc_id").to_pylist())),
                "tenants": sorted(set(arrow.column("tenant").to_pylist())),
                "latest_tag": max(tags, key=lambda t: tags[t], default=None),
            }
        )
    return out


def kb_versions(name: str) -> list[dict[str, Any]]:
    """Versions of KB ``name``, oldest first: version, timestamp, rows, tags pointing at it."""
    table = open_table(name)
    tags_by_version: dict[int, list[str]] = {}
    for tag, version in ingest_tags(table).items():
        tags_by_version.setdefault(version, []).append(tag)
    out = []
    for info in table.list_versions():
        version = int(info["version"])
        ts = info.get("timestamp")
        meta = info.get("metadata") or {}
        out.append(
            {
                "version": version,
                "timestamp": ts.isoformat() if hasattr(ts, "isoformat") else str(ts),
                "rows": int(meta["total_rows"]) if "total_rows" in meta else None,
                "tags": sorted(tags_by_version.get(version, [])),
            }
        )
    return out


# --------------------------------------------------------------------------- the KB's embedder and index

EMBEDDER_KEY = "llmops.embedder"


def embedder_of(table) -> dict[str, Any] | None:
    """The embedder record (``model``, ``dim``, ``fingerprint``) of a table's current version,
    kept in its schema metadata; None for a KB written before records existed."""
    import json

    raw = (table.schema.metadata or {}).get(EMBEDDER_KEY.encode())
    return json.loads(raw) if raw else None


def with_embedder(arrow_schema, record: dict[str, Any]):
    """``arrow_schema`` carrying ``record``: the commit that writes the data also writes it."""
    import json

    meta = dict(arrow_schema.metadata or {})
    meta[EMBEDDER_KEY.encode()] = json.dumps(record, sort_keys=True).encode()
    return arrow_schema.with_metadata(meta)


def kb_info(ref: str) -> dict[str, Any]:
    """``llmops kb show``: a KB (``NAME`` or ``NAME@VERSION``) with its embedder, vector index
    and search settings."""
    from llmops_ray.kb.index import index_settings, search_settings, vector_index_stats

    name, version = parse_kb_ref(ref)
    table = open_table(name, version)
    tags = ingest_tags(table)
    recorded = index_settings(table) or {}
    return {
        "name": name,
        "version": table.version,
        "tags": sorted(t for t, v in tags.items() if v == table.version),
        "chunks": table.count_rows(),
        "embedder": embedder_of(table),
        "vector_index": vector_index_stats(table),
        "index_config": recorded.get("config"),
        "index_params": recorded.get("params"),
        "search": search_settings(table),
    }
