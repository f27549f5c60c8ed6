"""``ingest``: files -> one new, tagged version of a LanceDB knowledge base, on Ray Data.

Stages (Ray Data unless noted):

1. read + clean + quality filter + PII masking + hashes (``map_batches`` tasks over file
   paths; a file that fails is an ``error`` row, never an exception);
2. dedup decision on the driver over (source, hash, MinHash) of every document of the run
   and the documents the KB already holds for the tenant: global and deterministic;
3. chunk + embed (``ChunkAndEmbed`` actor pool) for the new/changed documents;
4. one commit on the driver: a LanceDB ``merge_insert`` keyed on ``chunk_id`` that inserts
   or updates the new chunks and, in the same transaction, deletes (``when_not_matched_by_
   source_delete`` with a ``doc_id IN (...)`` condition) the stale chunks of changed,
   duplicate and (``sync``) vanished documents. Then the FTS index is rebuilt and the new
   version is tagged ``ingest-<n>``.

Nothing touches the table before step 4, and step 4 is a single Lance commit, so an ingest
that dies anywhere leaves the previous version as the latest, intact and readable.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import Field

from llmops_ray.config import StrictModel, UserError, load_config
from llmops_ray.data.clean import QualityConfig

MODES = ("incremental", "rebuild")
Progress = Optional[Callable[[str], None]]


class IngestConfig(StrictModel):
    """Settings of an ingest run (YAML file + ``key=value`` overrides, see ``load_ingest_config``)."""

    chunk_size: int = Field(200, ge=16)
    """Largest chunk, in the embedding model's tokens (MiniLM truncates at 256)."""
    chunk_overlap: int = Field(30, ge=0)
    """Tokens of trailing sentences repeated at the start of the next chunk."""
    dedup_threshold: float = Field(0.8, gt=0.0, le=1.0)
    """MinHash Jaccard similarity (word 3-grams) at or above which a document is a near duplicate."""
    minhash_perms: int = Field(128, ge=16)
    """MinHash permutations (signature length); more is more precise and slower."""
    quality: QualityConfig = Field(default_factory=QualityConfig)
    """Thresholds of the quality filter."""
    mask_pii: bool = True
    """Replace emails, phones, cards, IDs, IPs and IBANs with typed placeholders before storing."""
    embedder: Optional[str] = None
    """sentence-transformers model path or id; None = the packaged offline all-MiniLM-L6-v2."""
    embed_actors: int = Field(1, ge=1)
    """Size of the embedding actor pool (``ActorPoolStrategy(size=...)``)."""
    embed_num_cpus: float = Field(1.0, gt=0.0)
    """CPUs Ray reserves for each embedding actor."""
    embed_threads: int = Field(0, ge=0)
    """Torch threads per embedding actor; 0 = ``embed_num_cpus`` rounded up."""
    embed_batch_size: int = Field(32, ge=1)
    """Chunks per forward pass inside ``encode`` (an actor call encodes all chunks of
    ``docs_per_embed_call`` documents, this many at a time). 32 rather than 64 on CPU:
    MiniLM's activations at 64 x ~200 tokens outgrow the caches (benchmarks/ingest.py: one
    torch thread ~10% more chunks/s at 32; the pipeline 45.3 -> 47.6 chunks/s); on a GPU raise it."""
    read_num_cpus: float = Field(1.0, gt=0.0)
    """CPUs reserved by each read/clean task. Reading and cleaning cost well under a
    millisecond per document, so few, long-lived workers beat many: at 0.25 a 2-core
    machine starts 8 worker processes whose imports alone took twice the reading time."""
    files_per_task: int = Field(512, ge=1)
    """Most files read by one read task (one Ray Data block). Fewer, larger tasks: on 2 cores
    10,000 small files read in 3.9 s as 20 tasks and in 8.3 s as 157 (64 files each), and
    the driver collected their dedup columns in 0.2 s instead of 1.6 s. A small corpus is
    still split over every read slot of the cluster (CPUs / ``read_num_cpus``)."""
    docs_per_embed_call: int = Field(256, ge=1)
    """Documents chunked and embedded per call of an embedding actor. All their chunks go
    through one ``encode``, which sorts them by length before batching, so a larger call
    pads less: one MiniLM thread embedded 22 chunks/s in calls of 64 documents and 27 in
    calls of 256 (512 and 1024 gave no more, and a larger last call idles the other actors)."""
    ray_progress_bars: bool = False
    """Show Ray Data's own progress bars (stderr) in addition to our progress lines."""


def load_ingest_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> IngestConfig:
    """:class:`IngestConfig` from a YAML file (or defaults) with ``key=value`` overrides."""
    return load_config(IngestConfig, path, overrides)


def doc_id_for(tenant: str, source: str) -> str:
    """Stable id of a document: hash of tenant and source (same source = same document)."""
    return hashlib.sha1(f"{tenant}\x00{source}".encode("utf-8")).hexdigest()[:20]


def _file_of(source: str) -> str:
    """File a source came from (a JSONL record's source is ``<path>#<id>``)."""
    head, sep, _ = source.partition("#")
    return head if sep and head.lower().endswith(".jsonl") else source


# --------------------------------------------------------------------------- stage 1 (tasks)

_DOC_COLUMNS = ["kind", "source", "title", "text", "metadata", "lang", "doc_type", "content_hash", "minhash", "pii", "reason"]


def read_clean_batch(batch: Any, quality: dict, mask_pii: bool, num_perm: int) -> Any:
    """Ray Data stage: file paths -> document rows (kind ``doc``, ``dropped`` or ``error``)."""
    import pyarrow as pa

    from llmops_ray.data.clean import QualityConfig, clean_text, detect_lang, quality_reason
    from llmops_ray.data.dedup import content_hash, minhash_signature
    from llmops_ray.data.readers import ReadError, read_file
    from llmops_ray.safety.pii import mask_pii as mask

    qcfg = QualityConfig.model_validate(quality)
    rows: dict[str, list] = {c: [] for c in _DOC_COLUMNS}

    def emit(**kw: Any) -> None:
        for c in _DOC_COLUMNS:
            rows[c].append(kw.get(c))

    for path, label in zip(batch.column("path").to_pylist(), batch.column("source").to_pylist()):
        try:
            docs = read_file(path, label)
        except ReadError as exc:
            emit(kind="error", source=label, reason=str(exc))
            continue
        except Exception as exc:  # a reader bug must not sink the run: report it
            emit(kind="error", source=label, reason=f"{type(exc).__name__}: {str(exc)[:200]}")
            continue
        doc_type = Path(path).suffix.lower().lstrip(".")
        for doc in docs:
            if doc.get("error"):
                emit(kind="error", source=doc["source"], reason=doc["error"])
                continue
            text = clean_text(doc["text"])
            title = clean_text(doc.get("title") or "")
            counts: dict[str, int] = {}
            if mask_pii:
                text, counts = mask(text)
                title, title_counts = mask(title)
                for k, v in title_counts.items():
                    counts[k] = counts.get(k, 0) + v
            reason = quality_reason(text, qcfg)
            emit(
                kind="dropped" if reason else "doc",
                source=doc["source"],
                title=title,
                text=text,
                metadata=json.dumps(doc.get("metadata") or {}, ensure_ascii=False, sort_keys=True),
                lang=detect_lang(text),
                doc_type=doc_type,
                content_hash=content_hash(text),
                minhash=None if reason else minhash_signature(text, num_perm).tolist(),
                pii=json.dumps(counts, sort_keys=True),
                reason=reason,
            )
    schema = pa.schema(
        [(c, pa.string()) for c in _DOC_COLUMNS if c != "minhash"] + [("minhash", pa.list_(pa.uint32()))]
    )
    return pa.table({c: rows[c] for c in schema.names}, schema=schema)


# --------------------------------------------------------------------------- stage 3 (tasks)


def chunk_batch(batch: Any, keep: frozenset, tenant: str, size: int, overlap: int, model_path: str) -> Any:
    """Ray Data stage: kept documents -> chunk rows (without vectors)."""
    import pyarrow as pa

    from llmops_ray.data.chunk import chunk_text, tokenizer_counter
    from llmops_ray.kb.store import fts_normalise

    count = tokenizer_counter(model_path)
    cols: dict[str, list] = {c: [] for c in ("chunk_id", "doc_id", "chunk_index", "tenant", "source", "title", "text",
                                              "fts_text", "content_hash", "doc_minhash", "lang", "doc_type", "metadata")}
    for row in batch.to_pylist():
        if row["kind"] != "doc" or row["source"] not in keep:
            continue
        doc_id = doc_id_for(tenant, row["source"])
        for i, chunk in enumerate(chunk_text(row["text"], size, overlap, count)):
            body = chunk
            cols["chunk_id"].append(f"{doc_id}:{i:05d}")
            cols["doc_id"].append(doc_id)
            cols["chunk_index"].append(i)
            cols["tenant"].append(tenant)
            cols["source"].append(row["source"])
            cols["title"].append(row["title"])
            cols["text"].append(body)
            # The title is indexed with every chunk so that a query naming a page finds its chunks.
            cols["fts_text"].append(fts_normalise(f"{row['title']}\n{body}"))
            cols["content_hash"].append(row["content_hash"])
            cols["doc_minhash"].append(row["minhash"] if i == 0 else None)
            cols["lang"].append(row["lang"])
            cols["doc_type"].append(row["doc_type"])
            cols["metadata"].append(row["metadata"])
    schema = pa.schema(
        [
            ("chunk_id", pa.string()), ("doc_id", pa.string()), ("chunk_index", pa.int32()), ("tenant", pa.string()),
            ("source", pa.string()), ("title", pa.string()), ("text", pa.string()), ("fts_text", pa.string()),
            ("content_hash", pa.string()), ("doc_minhash", pa.list_(pa.uint32())), ("lang", pa.string()),
            ("doc_type", pa.string()), ("metadata", pa.string()),
        ]
    )
    return pa.table(cols, schema=schema)


# --------------------------------------------------------------------------- driver helpers


def _under(file: str, roots: list[str]) -> bool:
    for root in roots:
        if file == root or file.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _existing_docs(table, tenant: str) -> dict[str, dict]:
    """source -> {doc_id, content_hash, minhash} of the tenant's documents already in the KB."""
    from llmops_ray.kb.query import _sql_literal

    arrow = table.to_lance().to_table(
        columns=["source", "doc_id", "content_hash", "doc_minhash"],
        filter=f"tenant = {_sql_literal(tenant)} AND chunk_index = 0",
    )
    out = {}
    for row in arrow.to_pylist():
        out[row["source"]] = {"doc_id": row["doc_id"], "content_hash": row["content_hash"], "minhash": row["doc_minhash"]}
    return out


def _in_list(column: str, values: list[str]) -> str:
    from llmops_ray.kb.query import _sql_literal

    return f"{column} IN ({', '.join(_sql_literal(v) for v in sorted(values))})"


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


# --------------------------------------------------------------------------- ingest


def ingest(
    paths: list[str] | str,
    kb: str,
    tenant: str = "default",
    mode: str = "incremental",
    sync: bool = False,
    config: IngestConfig | None = None,
    progress: Progress = None,
) -> dict[str, Any]:
    """Ingest files/directories ``paths`` into knowledge base ``kb``; returns the run summary.

    ``mode``: ``incremental`` (default; unchanged documents are not rewritten, changed ones
    have their chunks replaced) or ``rebuild`` (the tenant's documents are rewritten from
    these paths only). ``sync``: also delete documents whose source was under ``paths`` but
    is gone. Raises :class:`UserError` for paths that do not exist or bad arguments.

    Summary keys: ``kb``, ``tenant``, ``mode``, ``version`` (latest table version after the
    run), ``tag``, ``committed``, ``documents_read``, ``documents_written``,
    ``documents_unchanged``, ``documents_deleted``, ``chunks_written``, ``dropped``
    (reason -> sources), ``removed`` (deleted sources -> reason), ``errors``
    (``[{source, error}]``), ``pii_masked`` (type -> count over written documents), ``seconds``.
    """
    from llmops_ray.kb.store import check_kb_name

    started = time.monotonic()
    config = config or IngestConfig()
    if config.chunk_overlap >= config.chunk_size:
        raise UserError("chunk_overlap must be smaller than chunk_size")
    if isinstance(paths, (str, Path)):
        paths = [str(paths)]
    paths = [str(Path(p)) for p in paths]
    if not paths:
        raise UserError("no input paths given")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"path does not exist: {', '.join(missing)}")
    check_kb_name(kb)
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r} (use incremental or rebuild)")
    if not tenant:
        raise UserError("tenant must not be empty")

    from llmops_ray.data.readers import list_files

    files = list_files(paths)
    _say(progress, f"[ingest] {len(files)} files under {', '.join(paths)} -> kb {kb!r} (tenant {tenant!r}, {mode})")

    import ray

    from llmops_ray.cluster import init_ray
    from llmops_ray.data.dedup import DedupItem, find_duplicates
    from llmops_ray.kb.embed import resolve_model
    from llmops_ray.kb.store import connect, table_names

    init_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.ray_progress_bars

    summary: dict[str, Any] = {
        "kb": kb, "tenant": tenant, "mode": mode, "version": None, "tag": None, "committed": False,
        "files": len(files), "documents_read": 0, "documents_written": 0, "documents_unchanged": 0,
        "documents_deleted": 0, "chunks_written": 0, "dropped": {}, "removed": {}, "errors": [],
        "pii_masked": {}, "seconds": 0.0,
    }

    db = connect()
    table = db.open_table(kb) if kb in table_names(db) else None

    # ---- stage 1: read, clean, quality, PII, hashes (Ray tasks) -------------------------
    docs_ds = None
    meta_rows: list[dict] = []
    if files:
        read_slots = max(1, int(ray.cluster_resources().get("CPU", 1) / config.read_num_cpus))
        blocks = min(len(files), max(read_slots, math.ceil(len(files) / config.files_per_task)))
        docs_ds = (
            # Workers read the absolute path (their working directory may differ); the
            # documents are labelled with the path as given.
            ray.data.from_items([{"path": str(Path(f).resolve()), "source": f} for f in files], override_num_blocks=blocks)
            .map_batches(
                read_clean_batch,
                batch_size=None,  # one call per block: its files
                batch_format="pyarrow",
                num_cpus=config.read_num_cpus,
                fn_kwargs={"quality": config.quality.model_dump(), "mask_pii": config.mask_pii, "num_perm": config.minhash_perms},
            )
            .materialize()
        )
        for batch in docs_ds.select_columns(["kind", "source", "content_hash", "minhash", "pii", "reason"]).iter_batches(
            batch_format="pyarrow", batch_size=None
        ):
            meta_rows.extend(batch.to_pylist())
    errors = [{"source": r["source"], "error": r["reason"]} for r in meta_rows if r["kind"] == "error"]
    run_docs = [r for r in meta_rows if r["kind"] != "error"]
    summary["errors"] = sorted(errors, key=lambda e: e["source"])
    summary["documents_read"] = len(run_docs)
    dropped: dict[str, list[str]] = {}
    for r in run_docs:
        if r["kind"] == "dropped":
            dropped.setdefault(r["reason"], []).append(r["source"])
    _say(progress, f"[ingest] read {len(run_docs)} documents, {len(errors)} errors, "
                   f"{sum(len(v) for v in dropped.values())} dropped by the quality filter")

    # ---- stage 2: what changes (driver) --------------------------------------------------
    existing = _existing_docs(table, tenant) if table is not None and mode == "incremental" else {}
    run_sources = {r["source"] for r in run_docs}
    errored_files = {_file_of(e["source"]) for e in errors}
    listed = set(files)
    gone: set[str] = set()
    if sync and mode == "incremental":
        for source in existing:
            file = _file_of(source)
            if source in run_sources or not _under(file, paths):
                continue
            if file in listed and file in errored_files:
                continue  # unreadable this time: keep what we have rather than lose it
            gone.add(source)
    candidates = [r for r in run_docs if r["kind"] == "doc"]
    items = [DedupItem(r["source"], r["source"], r["content_hash"], r["minhash"]) for r in candidates]
    items += [
        DedupItem(source, source, info["content_hash"], info["minhash"])
        for source, info in existing.items()
        if source not in run_sources and source not in gone
    ]
    decisions = find_duplicates(items, threshold=config.dedup_threshold, num_perm=config.minhash_perms)
    removed: dict[str, str] = {s: "source_gone" for s in gone}
    for key, decision in decisions.items():
        if key in run_sources:
            dropped.setdefault(decision.reason, []).append(key)
        else:
            removed[key] = f"{decision.reason}_of:{decision.kept_source}"
    to_write: list[str] = []
    pii_total: dict[str, int] = {}
    for r in candidates:
        if r["source"] in decisions:
            continue
        old = existing.get(r["source"])
        if old is not None and old["content_hash"] == r["content_hash"]:
            summary["documents_unchanged"] += 1
            continue
        to_write.append(r["source"])
        for k, v in json.loads(r["pii"] or "{}").items():
            pii_total[k] = pii_total.get(k, 0) + v
    # Stale rows: changed docs, docs of this run now dropped, gone sources, older duplicates.
    quality_dropped = {r["source"] for r in run_docs if r["kind"] == "dropped"}
    write_set = set(to_write)
    stale_sources = [s for s in existing if s in write_set or s in decisions or s in quality_dropped]
    stale_sources += [s for s in removed if s in existing]
    stale_doc_ids = sorted({existing[s]["doc_id"] for s in stale_sources})
    summary["dropped"] = {reason: sorted(sources) for reason, sources in sorted(dropped.items())}
    summary["removed"] = dict(sorted(removed.items()))
    summary["pii_masked"] = dict(sorted(pii_total.items()))
    _say(progress, f"[ingest] {len(to_write)} documents to embed, {summary['documents_unchanged']} unchanged, "
                   f"{len(removed)} to remove")

    # ---- stage 3: chunk and embed (actor pool) -------------------------------------------
    chunk_tables = []
    if to_write:
        from llmops_ray.data.embed import ChunkAndEmbed

        model_path = resolve_model(config.embedder)
        threads = config.embed_threads or max(1, math.ceil(config.embed_num_cpus))
        chunks_ds = docs_ds.map_batches(
            ChunkAndEmbed,
            fn_constructor_kwargs={"model": model_path, "keep": frozenset(to_write), "tenant": tenant,
                                   "size": config.chunk_size, "overlap": config.chunk_overlap,
                                   "batch_size": config.embed_batch_size, "threads": threads},
            batch_size=config.docs_per_embed_call,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=config.embed_actors),
            num_cpus=config.embed_num_cpus,
        )
        done = 0
        last_report = time.monotonic()
        for batch in chunks_ds.iter_batches(batch_format="pyarrow", batch_size=None):
            if batch.num_rows:
                chunk_tables.append(batch)
                done += batch.num_rows
            if time.monotonic() - last_report > 5:
                _say(progress, f"[ingest] embedded {done} chunks")
                last_report = time.monotonic()
        _say(progress, f"[ingest] embedded {done} chunks")
    if docs_ds is not None:
        del docs_ds

    # ---- stage 4: one commit (driver) ----------------------------------------------------
    version, tag, committed = _commit(db, table, kb, tenant, mode, chunk_tables, stale_doc_ids, progress)
    summary.update(version=version, tag=tag, committed=committed)
    summary["documents_written"] = len(to_write)
    summary["chunks_written"] = sum(t.num_rows for t in chunk_tables)
    summary["documents_deleted"] = len({existing[s]["doc_id"] for s in stale_sources if s not in write_set})
    summary["seconds"] = round(time.monotonic() - started, 2)
    return summary


def _commit(db, table, kb: str, tenant: str, mode: str, chunk_tables: list, stale_doc_ids: list[str], progress: Progress):
    """Write the run as one Lance commit; returns (version, tag, committed)."""
    import datetime as dt

    import pyarrow as pa

    from llmops_ray.kb.query import _sql_literal
    from llmops_ray.kb.store import ingest_tags, next_ingest_tag, refresh_fts_index, schema

    data = pa.concat_tables(chunk_tables) if chunk_tables else None
    if data is not None:
        dim = data.schema.field("vector").type.list_size
        now = pa.array([dt.datetime.now(dt.timezone.utc)] * data.num_rows, type=pa.timestamp("us", tz="UTC"))
        data = data.append_column("ingested_at", now)
        data = data.select(schema(dim).names).cast(schema(dim))

    if table is None:
        if data is None:
            return None, None, False
        table = db.create_table(kb, data, schema=data.schema)
        _say(progress, f"[ingest] created table {kb!r} at version {table.version}")
    else:
        table_dim = table.schema.field("vector").type.list_size
        tenant_only = f"tenant = {_sql_literal(tenant)}"
        if mode == "rebuild":
            others = table.count_rows(f"NOT ({tenant_only})")
            if data is not None and data.schema.field("vector").type.list_size != table_dim:
                if others:
                    raise UserError(f"kb {kb!r}: the embedder's dimension differs from the table's and other "
                                    "tenants' data is in it; use a new knowledge base")
                table.add(data, mode="overwrite")
            elif data is None:
                table.delete(tenant_only)
            else:
                (table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all()
                 .when_not_matched_by_source_delete(tenant_only).execute(data))
        else:
            if data is not None and data.schema.field("vector").type.list_size != table_dim:
                raise UserError(f"kb {kb!r} holds {table_dim}-dim vectors but the embedder gives "
                                f"{data.schema.field('vector').type.list_size}; ingest with --mode rebuild")
            if data is None and not stale_doc_ids:
                _say(progress, "[ingest] nothing changed; no new version")
                tags = {v: t for t, v in ingest_tags(table).items()}
                return table.version, tags.get(table.version), False
            if data is None:
                table.delete(_in_list("doc_id", stale_doc_ids))
            else:
                builder = table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all()
                if stale_doc_ids:
                    # Rows of these documents that the new data does not overwrite are deleted in
                    # the same commit (fewer chunks than before, or the document is gone).
                    builder = builder.when_not_matched_by_source_delete(_in_list("doc_id", stale_doc_ids))
                builder.execute(data)
        _say(progress, f"[ingest] committed version {table.version}")
    refresh_fts_index(table)
    tag = next_ingest_tag(table)
    table.tags.create(tag, table.version)
    _say(progress, f"[ingest] full-text index refreshed; tagged version {table.version} as {tag}")
    return table.version, tag, True
