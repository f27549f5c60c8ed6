"""The per-block work of an ingest, run as Ray Data tasks and actors (see ``data/ingest.py``):

* :func:`read_clean_batch` -- file paths -> document rows (read, clean, quality filter, PII
  masking, content hash and MinHash signature); a file that fails is an ``error`` row;
* :func:`chunk_batch` -- kept documents -> chunk rows without vectors (``ChunkAndEmbed`` in
  ``data/embed.py`` adds them), each with ``flagged`` (``safety/ingest_flags.py``: why the
  chunk addresses the model, e.g. hidden HTML text; null for ordinary chunks).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def doc_id_for(tenant: str, source: str) -> str:
    """Stable id of a document: hash of tenant and source (same source = same document)."""
    return hashlib.sha1(f"{tenant}\x00{source}".encode("utf-8")).hexdigest()[:20]


_DOC_COLUMNS = ["kind", "source", "title", "text", "metadata", "lang", "doc_type", "content_hash", "minhash", "pii", "reason",
                "hidden"]


def read_clean_batch(batch: Any, quality: dict, mask_pii: bool, num_perm: int) -> Any:
    """Ray Data stage: file paths -> document rows (kind ``doc``, ``dropped`` or ``error``)."""
    import pyarrow as pa

    from llmops_ray.data.clean import QualityConfig, clean_text, detect_lang, quality_reason
    from llmops_ray.data.dedup import content_hash, minhash_signature
    from llmops_ray.common.readers import ReadError, read_file
    from llmops_ray.safety.ingest_flags import hidden_html_texts
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
        hidden: list[str] = []
        if doc_type in ("html", "htm"):
            # Text the page hides from readers: chunks holding it are flagged (issue 18).
            try:
                hidden = hidden_html_texts(Path(path).read_bytes().decode("utf-8", errors="replace"))
            except Exception:  # a malformed page is read as well as the reader could; no flags
                hidden = []
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
                hidden=json.dumps([clean_text(mask(h)[0] if mask_pii else h) for h in hidden], ensure_ascii=False),
            )
    schema = pa.schema(
        [(c, pa.string()) for c in _DOC_COLUMNS if c != "minhash"] + [("minhash", pa.list_(pa.uint32()))]
    )
    return pa.table({c: rows[c] for c in schema.names}, schema=schema)


def chunk_batch(batch: Any, keep: frozenset, tenant: str, size: int, overlap: int, model_path: str,
                parent_size: int = 0) -> Any:
    """Ray Data stage: kept documents -> chunk rows (without vectors).

    ``parent_size`` > 0: parent-child chunks (``data/chunk.py``): each row is a small chunk
    with its enclosing section in ``parent_text`` and ``parent_id`` (``<doc_id>:p<n>``);
    0: plain chunks, both columns null."""
    import pyarrow as pa

    from llmops_ray.data.chunk import chunk_parent_child, chunk_text, tokenizer_counter
    from llmops_ray.kb.store import fts_normalise
    from llmops_ray.safety.ingest_flags import flag_chunk

    count = tokenizer_counter(model_path)
    cols: dict[str, list] = {c: [] for c in ("chunk_id", "doc_id", "chunk_index", "tenant", "source", "title", "text",
                                              "fts_text", "content_hash", "doc_minhash", "lang", "doc_type", "metadata",
                                              "parent_id", "parent_text", "flagged")}
    for row in batch.to_pylist():
        if row["kind"] != "doc" or row["source"] not in keep:
            continue
        doc_id = doc_id_for(tenant, row["source"])
        hidden = json.loads(row.get("hidden") or "[]")
        if parent_size:
            pieces = chunk_parent_child(row["text"], parent_size, size, overlap, count)
        else:
            pieces = [(None, None, chunk) for chunk in chunk_text(row["text"], size, overlap, count)]
        for i, (parent_index, parent, chunk) in enumerate(pieces):
            body = chunk
            cols["parent_id"].append(None if parent_index is None else f"{doc_id}:p{parent_index:05d}")
            cols["parent_text"].append(parent)
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
            # Why the chunk addresses the model (null: it does not); retrieval leaves flagged chunks out.
            cols["flagged"].append(flag_chunk(body, hidden))
    schema = pa.schema(
        [
            ("chunk_id", pa.string()), ("doc_id", pa.string()), ("chunk_index", pa.int32()), ("tenant", pa.string()),
            ("source", pa.string()), ("title", pa.string()), ("text", pa.string()), ("fts_text", pa.string()),
            ("content_hash", pa.string()), ("doc_minhash", pa.list_(pa.uint32())), ("lang", pa.string()),
            ("doc_type", pa.string()), ("metadata", pa.string()), ("parent_id", pa.string()),
            ("parent_text", pa.string()), ("flagged", pa.string()),
        ]
    )
    return pa.table(cols, schema=schema)
