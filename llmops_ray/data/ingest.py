"""The ingest pipeline, ``ingest``: files -> one new, tagged version of a LanceDB knowledge base, on Ray Data.

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

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from llmops_ray.common.cli_output import Progress, say
from llmops_ray.config import StrictModel, UserError, load_config
from llmops_ray.data.clean import QualityConfig
from llmops_ray.data.stages import read_clean_batch
from llmops_ray.kb.index import VectorIndexConfig

MODES = ("incremental", "rebuild")


class ParentChildConfig(StrictModel):
    """Parent-child chunks (``data/chunk.py``: ``chunk_parent_child``)."""

    enabled: bool = False
    """Store small chunks (``chunk_size`` / ``chunk_overlap`` are then the children's) with
    their enclosing section; searches rank the children, RAG prompts get the section while
    citations point to the child."""
    parent_size: int = Field(512, ge=16)
    """Largest parent, in the embedding model's tokens: a section longer than this is split
    (no overlap). The parent only goes to the generator, never to the embedder, so it may
    exceed the embedder's 256-token window."""


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
    parent_child: ParentChildConfig = Field(default_factory=lambda: ParentChildConfig())
    """Parent-child chunks: search the small chunks, give the generator their enclosing section."""
    index: VectorIndexConfig = Field(default_factory=VectorIndexConfig)
    """The KB's vector (ANN) index: when it is built, its type and its search settings
    (recorded in the KB; searches use them)."""


def load_ingest_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> IngestConfig:
    """:class:`IngestConfig` from a YAML file (or defaults) with ``key=value`` overrides."""
    return load_config(IngestConfig, path, overrides)


def _file_of(source: str) -> str:
    """File a source came from (a JSONL record's source is ``<path>#<id>``)."""
    head, sep, _ = source.partition("#")
    return head if sep and head.lower().endswith(".jsonl") else source


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


@dataclass
class ReadResult:
    """Stage 1's output: the materialised document rows and their metadata on the driver."""

    docs_ds: Any
    """Ray Dataset of document rows (None when no file was found)."""
    docs: list[dict]
    """``kind`` ``doc`` or ``dropped`` rows (source, content_hash, minhash, pii, reason)."""
    errors: list[dict]
    """``[{source, error}]`` of files or records that could not be read, by source."""


@dataclass
class ChangePlan:
    """Stage 2's decision: what the commit writes and deletes."""

    to_write: list[str]
    """Sources whose chunks are (re)written."""
    unchanged: int
    """Documents already in the KB with the same content."""
    stale_sources: list[str]
    """Sources whose rows in the KB are replaced or deleted."""
    stale_doc_ids: list[str]
    """Their document ids (the commit's delete condition)."""
    dropped: dict[str, list[str]]
    """Reason -> sources of this run left out (quality filter, duplicates)."""
    removed: dict[str, str]
    """Source already in the KB -> why it is deleted (gone, duplicate of a kept source)."""
    pii_masked: dict[str, int]
    """PII type -> masked count over the documents written."""


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
    (``[{source, error}]``), ``pii_masked`` (type -> count over written documents), ``flagged``
    (reason -> sources with chunks that address the model, see ``safety/ingest_flags.py``;
    stored with the flag and left out of retrieval by default), ``seconds``,
    ``skipped`` (extension -> count of files inside the directories that no reader handles),
    ``vector_index`` (what the ANN index step did, see ``kb.index.refresh_vector_index``;
    None when nothing was committed).
    """
    started = time.monotonic()
    config = config or IngestConfig()
    paths = check_ingest_args(paths, kb, tenant, mode, config)

    from llmops_ray.cluster import init_ray
    from llmops_ray.common.readers import list_files, skipped_extensions
    from llmops_ray.kb.store import connect, table_names

    files = list_files(paths)
    say(progress, f"[ingest] {len(files)} files under {', '.join(paths)} -> kb {kb!r} (tenant {tenant!r}, {mode})")
    db = connect()
    table = db.open_table(kb) if kb in table_names(db) else None
    config = check_embedder(table, kb, mode, config)  # before Ray starts: a refusal costs nothing
    init_ray()

    read = read_documents(files, config)
    quality_dropped = sum(1 for r in read.docs if r["kind"] == "dropped")
    say(progress, f"[ingest] read {len(read.docs)} documents, {len(read.errors)} errors, "
                   f"{quality_dropped} dropped by the quality filter")
    existing = _existing_docs(table, tenant) if table is not None and mode == "incremental" else {}
    plan = plan_changes(read, existing, files, paths, sync and mode == "incremental", config)
    say(progress, f"[ingest] {len(plan.to_write)} documents to embed, {plan.unchanged} unchanged, "
                   f"{len(plan.removed)} to remove")
    chunk_tables = embed_chunks(read.docs_ds, plan.to_write, tenant, config, progress)
    read.docs_ds = None  # frees the materialised blocks before the commit
    index_report: dict[str, Any] = {}
    version, tag, committed = _commit(db, table, kb, tenant, mode, chunk_tables, plan.stale_doc_ids, progress, config,
                                      index_report)
    write_set = set(plan.to_write)
    return {
        "kb": kb, "tenant": tenant, "mode": mode, "version": version, "tag": tag, "committed": committed,
        "files": len(files), "documents_read": len(read.docs), "documents_written": len(plan.to_write),
        "documents_unchanged": plan.unchanged,
        "documents_deleted": len({existing[s]["doc_id"] for s in plan.stale_sources if s not in write_set}),
        "chunks_written": sum(t.num_rows for t in chunk_tables),
        "dropped": {reason: sorted(sources) for reason, sources in sorted(plan.dropped.items())},
        "removed": dict(sorted(plan.removed.items())), "errors": read.errors,
        "pii_masked": dict(sorted(plan.pii_masked.items())), "flagged": flagged_sources(chunk_tables),
        "seconds": round(time.monotonic() - started, 2),
        "skipped": skipped_extensions(paths), "vector_index": index_report or None,
    }


def flagged_sources(chunk_tables: list) -> dict[str, list[str]]:
    """Reason -> sorted sources, over the written chunks whose ``flagged`` column is set."""
    out: dict[str, set[str]] = {}
    for table in chunk_tables:
        if "flagged" not in table.schema.names:
            continue
        for source, reason in zip(table.column("source").to_pylist(), table.column("flagged").to_pylist()):
            if reason:
                out.setdefault(reason, set()).add(source)
    return {reason: sorted(sources) for reason, sources in sorted(out.items())}


def check_embedder(table, kb: str, mode: str, config: IngestConfig) -> IngestConfig:
    """A KB owns its embedder: a config that names none gets the KB's own; an incremental
    ingest naming other weights is refused (one line). Returns the config to ingest with."""
    from llmops_ray.kb.embed import DEFAULT_MODEL_NAME, model_ref, same_embedder
    from llmops_ray.kb.store import embedder_of

    record = embedder_of(table) if table is not None else None
    if record is not None and "embedder" not in config.model_fields_set:
        model = None if record["model"] == DEFAULT_MODEL_NAME else record["model"]
        return config.model_copy(update={"embedder": model})
    if record is None or mode == "rebuild" or same_embedder(record, config.embedder):
        return config
    raise UserError(f"kb {kb!r} was built with embedder {record['model']} (fingerprint {record['fingerprint']}), "
                    f"not {model_ref(config.embedder)}; ingest with its embedder or use --mode rebuild")


def check_ingest_args(paths: list[str] | str, kb: str, tenant: str, mode: str, config: IngestConfig) -> list[str]:
    """The input paths as a list; UserError for anything that would fail later."""
    from llmops_ray.kb.store import check_kb_name

    if config.chunk_overlap >= config.chunk_size:
        raise UserError("chunk_overlap must be smaller than chunk_size")
    if config.parent_child.enabled and config.parent_child.parent_size < config.chunk_size:
        raise UserError("parent_child.parent_size must be at least chunk_size (the children's size)")
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
    return paths


def read_documents(files: list[str], config: IngestConfig) -> ReadResult:
    """Stage 1 (Ray tasks): read, clean, quality-filter, PII-mask and hash every file."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = config.ray_progress_bars
    if not files:
        return ReadResult(None, [], [])
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
    rows: list[dict] = []
    columns = ["kind", "source", "content_hash", "minhash", "pii", "reason"]
    for batch in docs_ds.select_columns(columns).iter_batches(batch_format="pyarrow", batch_size=None):
        rows.extend(batch.to_pylist())
    errors = sorted(({"source": r["source"], "error": r["reason"]} for r in rows if r["kind"] == "error"),
                    key=lambda e: e["source"])
    return ReadResult(docs_ds, [r for r in rows if r["kind"] != "error"], errors)


def plan_changes(read: ReadResult, existing: dict[str, dict], files: list[str], paths: list[str], sync: bool,
                 config: IngestConfig) -> ChangePlan:
    """Stage 2 (driver): global, deterministic dedup over this run and what the KB holds,
    then what to write, keep and delete."""
    from llmops_ray.data.dedup import DedupItem, find_duplicates

    run_sources = {r["source"] for r in read.docs}
    gone = _gone_sources(existing, run_sources, read.errors, files, paths) if sync else set()
    candidates = [r for r in read.docs if r["kind"] == "doc"]
    items = [DedupItem(r["source"], r["source"], r["content_hash"], r["minhash"]) for r in candidates]
    items += [DedupItem(source, source, info["content_hash"], info["minhash"])
              for source, info in existing.items() if source not in run_sources and source not in gone]
    decisions = find_duplicates(items, threshold=config.dedup_threshold, num_perm=config.minhash_perms)
    dropped: dict[str, list[str]] = {}
    for r in read.docs:
        if r["kind"] == "dropped":
            dropped.setdefault(r["reason"], []).append(r["source"])
    removed: dict[str, str] = {s: "source_gone" for s in gone}
    for key, decision in decisions.items():
        if key in run_sources:
            dropped.setdefault(decision.reason, []).append(key)
        else:
            removed[key] = f"{decision.reason}_of:{decision.kept_source}"
    to_write: list[str] = []
    unchanged = 0
    pii_total: dict[str, int] = {}
    for r in candidates:
        if r["source"] in decisions:
            continue
        old = existing.get(r["source"])
        if old is not None and old["content_hash"] == r["content_hash"]:
            unchanged += 1
            continue
        to_write.append(r["source"])
        for k, v in json.loads(r["pii"] or "{}").items():
            pii_total[k] = pii_total.get(k, 0) + v
    # Stale rows: changed docs, docs of this run now dropped, gone sources, older duplicates.
    quality_dropped = {r["source"] for r in read.docs if r["kind"] == "dropped"}
    write_set = set(to_write)
    stale = [s for s in existing if s in write_set or s in decisions or s in quality_dropped]
    stale += [s for s in removed if s in existing]
    stale_ids = sorted({existing[s]["doc_id"] for s in stale})
    return ChangePlan(to_write, unchanged, stale, stale_ids, dropped, removed, pii_total)


def _gone_sources(existing: dict[str, dict], run_sources: set[str], errors: list[dict], files: list[str],
                  paths: list[str]) -> set[str]:
    """Sources in the KB, under ``paths``, that this run did not see (``--sync`` deletes them).
    A file that could not be read this time is kept rather than lost."""
    errored_files = {_file_of(e["source"]) for e in errors}
    listed = set(files)
    gone = set()
    for source in existing:
        file = _file_of(source)
        if source in run_sources or not _under(file, paths):
            continue
        if file in listed and file in errored_files:
            continue
        gone.add(source)
    return gone


def embed_chunks(docs_ds: Any, to_write: list[str], tenant: str, config: IngestConfig, progress: Progress) -> list:
    """Stage 3 (actor pool): chunk and embed the documents to write; returns pyarrow tables."""
    if not to_write:
        return []
    import ray

    from llmops_ray.data.embed import ChunkAndEmbed
    from llmops_ray.kb.embed import resolve_model

    threads = config.embed_threads or max(1, math.ceil(config.embed_num_cpus))
    chunks_ds = docs_ds.map_batches(
        ChunkAndEmbed,
        fn_constructor_kwargs={"model": resolve_model(config.embedder), "keep": frozenset(to_write), "tenant": tenant,
                               "size": config.chunk_size, "overlap": config.chunk_overlap,
                               "batch_size": config.embed_batch_size, "threads": threads,
                               "parent_size": config.parent_child.parent_size if config.parent_child.enabled else 0},
        batch_size=config.docs_per_embed_call,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=config.embed_actors),
        num_cpus=config.embed_num_cpus,
    )
    tables, done, last_report = [], 0, time.monotonic()
    for batch in chunks_ds.iter_batches(batch_format="pyarrow", batch_size=None):
        if batch.num_rows:
            tables.append(batch)
            done += batch.num_rows
        if time.monotonic() - last_report > 5:
            say(progress, f"[ingest] embedded {done} chunks")
            last_report = time.monotonic()
    say(progress, f"[ingest] embedded {done} chunks")
    return tables


def _commit(db, table, kb: str, tenant: str, mode: str, chunk_tables: list, stale_doc_ids: list[str], progress: Progress,
            config: IngestConfig | None = None, index_report: dict | None = None):
    """Write the run as one Lance commit, then bring the FTS and vector indexes up to date and
    tag the result; returns (version, tag, committed). ``index_report`` (when given) receives
    what the vector index step did (``kb.index.refresh_vector_index``)."""
    import datetime as dt

    import pyarrow as pa

    from llmops_ray.kb.query import _sql_literal
    from llmops_ray.kb.embed import embedder_record, same_embedder
    from llmops_ray.kb.index import refresh_vector_index
    from llmops_ray.kb.store import (add_missing_columns, embedder_of, ingest_tags, next_ingest_tag, refresh_fts_index,
                                     schema, with_embedder)

    config = config or IngestConfig()

    data = pa.concat_tables(chunk_tables) if chunk_tables else None
    if data is not None:
        dim = data.schema.field("vector").type.list_size
        now = pa.array([dt.datetime.now(dt.timezone.utc)] * data.num_rows, type=pa.timestamp("us", tz="UTC"))
        data = data.append_column("ingested_at", now)
        # The KB's embedder record rides in the schema metadata of the commit that writes the data.
        data = data.select(schema(dim).names).cast(with_embedder(schema(dim), embedder_record(config.embedder, dim)))

    if table is None:
        if data is None:
            return None, None, False
        table = db.create_table(kb, data, schema=data.schema)
        say(progress, f"[ingest] created table {kb!r} at version {table.version}")
    else:
        table_dim = table.schema.field("vector").type.list_size
        tenant_only = f"tenant = {_sql_literal(tenant)}"
        if data is not None:
            add_missing_columns(table)  # a KB from before parent-child columns existed
        if mode == "rebuild":
            others = table.count_rows(f"NOT ({tenant_only})")
            new_embedder = data is not None and (data.schema.field("vector").type.list_size != table_dim
                                                 or not same_embedder(embedder_of(table), config.embedder))
            if new_embedder:
                if others:
                    raise UserError(f"kb {kb!r}: the embedder differs from the KB's and other tenants' "
                                    "data is in it; use a new knowledge base")
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
                say(progress, "[ingest] nothing changed; no new version")
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
        say(progress, f"[ingest] committed version {table.version}")
    refresh_fts_index(table)
    index = refresh_vector_index(table, config.index)
    if index_report is not None:
        index_report.update(index)
    if index.get("warning"):
        say(progress, f"[ingest] warning: {index['warning']}")
    say(progress, f"[ingest] vector index: {index['action']} ({index['indexed_rows']} rows indexed)")
    tag = next_ingest_tag(table)
    table.tags.create(tag, table.version)
    say(progress, f"[ingest] full-text index refreshed; tagged version {table.version} as {tag}")
    return table.version, tag, True
