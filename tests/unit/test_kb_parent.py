"""Parent-child chunks: small chunks are stored and searched, the generator gets their
enclosing section, citations keep pointing at the small chunk."""

from __future__ import annotations

import pyarrow as pa
import pytest

from llmops_ray.config import UserError
from llmops_ray.data.chunk import chunk_parent_child, tokenizer_counter
from llmops_ray.data.embed import ChunkEmbedder
from llmops_ray.data.ingest import IngestConfig, _commit, check_ingest_args
from llmops_ray.data.stages import chunk_batch, read_clean_batch
from llmops_ray.kb import search
from llmops_ray.kb.embed import default_model_path
from llmops_ray.kb.store import connect, open_table, schema, table_names

SECTION_A = ("# Warranty\n\n" + " ".join(
    f"Clause {i}: the Lumen warranty covers defects in materials number {i} under normal use." for i in range(8)))
SECTION_B = ("# Heat pumps\n\n" + " ".join(
    f"Note {i}: the T3 runs ground-source heat pumps with auxiliary stage {i} and changeover wire O/B." for i in range(8)))
DOC = SECTION_A + "\n\n" + SECTION_B + "\n"


@pytest.fixture(scope="module")
def count():
    return tokenizer_counter(default_model_path())


def test_children_nest_in_their_sections(count):
    pieces = chunk_parent_child(DOC, parent_size=400, size=40, overlap=8, count=count)
    parents = sorted({p for p, _, _ in pieces})
    assert parents == [0, 1]  # one parent per section: headings are hard boundaries
    for p, parent, child in pieces:
        assert child in parent
        assert count([child])[0] <= 40 and count([parent])[0] <= 400
        assert parent.startswith("# Warranty" if p == 0 else "# Heat pumps")
    assert sum(1 for p, _, _ in pieces if p == 0) > 2  # the section was split into several children
    # A section longer than parent_size is split into several parents.
    small = chunk_parent_child(DOC, parent_size=60, size=30, overlap=5, count=count)
    assert len({p for p, _, _ in small}) > 2 and all(c in par for _, par, c in small)
    with pytest.raises(ValueError):
        chunk_parent_child(DOC, parent_size=20, size=40, count=count)


def _chunks(tmp_path, parent_size: int, name: str):
    path = tmp_path / name
    path.write_text(DOC, encoding="utf-8")
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": [str(path)], "source": [str(path)]}), cfg.quality.model_dump(), True,
                            cfg.minhash_perms)
    keep = frozenset(r["source"] for r in docs.to_pylist() if r["kind"] == "doc")
    return chunk_batch(docs, keep, "t1", 40, 8, default_model_path(), parent_size=parent_size)


def _commit_to(kb: str, chunks) -> None:
    db = connect()
    table = db.open_table(kb) if kb in table_names(db) else None
    _commit(db, table, kb, "t1", "incremental", [ChunkEmbedder(None, threads=1)(chunks)], [], None)


def test_search_returns_the_section_as_context(tmp_path):
    chunks = _chunks(tmp_path, 400, "pc.md")
    rows = chunks.to_pylist()
    assert all(r["parent_id"] and r["text"] in r["parent_text"] for r in rows)
    assert len({r["parent_id"] for r in rows}) == 2 and len(rows) > 4
    _commit_to("parentkb", chunks)
    hits = search("parentkb", "ground-source heat pump auxiliary stage", k=3, tenant="t1")
    top = hits[0]
    assert top["parent_id"].endswith(":p00001")
    assert top["context"].startswith("# Heat pumps") and top["text"] in top["context"] and top["context"] != top["text"]
    assert top["chunk_id"] == next(r["chunk_id"] for r in rows if r["text"] == top["text"])

    plain = _chunks(tmp_path, 0, "plain.md")
    assert set(plain.column("parent_id").to_pylist()) == {None}
    _commit_to("plainkb", plain)
    hit = search("plainkb", "ground-source heat pump auxiliary stage", k=1)[0]
    assert hit["parent_id"] is None and hit["context"] == hit["text"]


def test_a_kb_from_before_parent_columns_gets_them(tmp_path):
    """A table written with the old schema (no parent columns) takes a parent-child ingest."""
    chunks = ChunkEmbedder(None, threads=1)(_chunks(tmp_path, 0, "old.md"))
    old_schema = pa.schema([f for f in schema(384) if f.name not in ("parent_id", "parent_text")])
    import datetime as dt

    now = pa.array([dt.datetime.now(dt.timezone.utc)] * chunks.num_rows, type=pa.timestamp("us", tz="UTC"))
    old = chunks.append_column("ingested_at", now).select(old_schema.names).cast(old_schema)
    connect().create_table("oldkb_parent", old, schema=old_schema)
    assert "parent_id" not in open_table("oldkb_parent").schema.names
    assert search("oldkb_parent", "warranty defects", k=1)[0]["context"]  # searchable without the columns
    db = connect()
    _commit(db, db.open_table("oldkb_parent"), "oldkb_parent", "t1", "incremental", [ChunkEmbedder(None, threads=1)(
        _chunks(tmp_path, 400, "new.md"))], [], None)
    table = open_table("oldkb_parent")
    assert {"parent_id", "parent_text"} <= set(table.schema.names)
    hits = search("oldkb_parent", "ground-source heat pump auxiliary stage", k=20)
    assert any(h["parent_id"] for h in hits) and any(h["parent_id"] is None for h in hits)


def test_rag_prompt_reads_the_section_and_cites_the_chunk():
    from llmops_ray.serve.rag import context_block, make_citations, prompt_texts

    hits = [
        {"doc_id": "d", "source": "a.md", "chunk_id": "d:00003", "text": "small child", "score": 0.9,
         "parent_id": "d:p00001", "context": "# Section\n\nwhole section with the small child inside"},
        {"doc_id": "e", "source": "b.md", "chunk_id": "e:00000", "text": "plain chunk", "score": 0.5,
         "parent_id": None, "context": "plain chunk"},
    ]
    texts = prompt_texts(hits)
    assert texts == [hits[0]["context"], "plain chunk"]
    citations = make_citations(hits, texts, [0, 1])
    assert [c["chunk_id"] for c in citations] == ["d:00003", "e:00000"]
    assert citations[0]["text"] == "small child"
    block = context_block(citations, texts)
    assert "whole section with the small child inside" in block and block.startswith("[1] (a.md)")


def test_parent_size_must_hold_a_child(tmp_path):
    config = IngestConfig.model_validate({"chunk_size": 200, "parent_child": {"enabled": True, "parent_size": 100}})
    with pytest.raises(UserError, match="parent_size"):
        check_ingest_args([str(tmp_path)], "kbx", "t1", "incremental", config)
    ok = IngestConfig.model_validate({"chunk_size": 100, "parent_child": {"enabled": True, "parent_size": 400}})
    assert check_ingest_args([str(tmp_path)], "kbx", "t1", "incremental", ok)
    with pytest.raises(ValueError):
        IngestConfig.model_validate({"parent_child": {"enabled": True, "size": 3}})
