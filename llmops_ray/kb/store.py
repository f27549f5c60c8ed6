"""LanceDB storage of knowledge bases: one table per KB under ``config.kb_root()``.

Table schema (one row per chunk): ``chunk_id`` (key, ``<doc_id>:<index>``), ``doc_id``
(stable hash of tenant + source), ``chunk_index``, ``tenant``, ``source``, ``title``,
``text`` (PII-masked), ``fts_text`` (``text`` with Chinese split into character bigrams,
the column the full-text index covers), ``vector`` (normalised float32), ``content_hash``
(of the whole document), ``doc_minhash`` (the document's MinHash signature, on chunk 0
only, for near-duplicate checks of later ingests), ``lang``, ``doc_type``, ``metadata``
(JSON text), ``ingested_at``.

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
        ]
    )


def connect():
    import lancedb

    return lancedb.connect(str(kb_root()))


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
