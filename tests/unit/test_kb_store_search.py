"""LanceDB store and search without Ray: the pipeline's stage functions called directly.

Covers one-commit replacement of a document's chunks, tags and ``NAME@VERSION``, the three
search modes, tenant / column / metadata filters, and user errors.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from llmops_ray.config import UserError
from llmops_ray.data.embed import ChunkEmbedder
from llmops_ray.data.ingest import IngestConfig, _commit
from llmops_ray.data.stages import chunk_batch, doc_id_for, read_clean_batch
from llmops_ray.kb import kb_versions, list_kbs, search
from llmops_ray.kb.embed import default_model_path
from llmops_ray.kb.store import connect, open_table, parse_kb_ref, table_names


@pytest.fixture(scope="module")
def embedder():
    return ChunkEmbedder(None, batch_size=32, threads=1)


def _chunks(paths, tenant, embedder, size=60):
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": [str(p) for p in paths], "source": [str(p) for p in paths]}), cfg.quality.model_dump(), True, cfg.minhash_perms)
    keep = frozenset(r["source"] for r in docs.to_pylist() if r["kind"] == "doc")
    chunks = chunk_batch(docs, keep, tenant, size, 10, default_model_path())
    return embedder(chunks)


def _write(kb, chunk_tables, tenant="t1", stale=()):
    db = connect()
    table = db.open_table(kb) if kb in table_names(db) else None
    return _commit(db, table, kb, tenant, "incremental", chunk_tables, sorted(stale), None)


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    d = tmp_path_factory.mktemp("kbdocs")
    (d / "heat.md").write_text(
        "# Heat pumps\n\nThe Lumen T3 supports air-source and ground-source heat pumps with auxiliary heat. "
        "Error E12 on a heat pump usually means the O/B changeover setting is reversed.\n", encoding="utf-8")
    (d / "zh.md").write_text("# 保修政策\n\n所有流明温控器自购买之日起享受两年有限保修，保修范围包括正常使用下的材料和工艺缺陷。\n", encoding="utf-8")
    (d / "faq.jsonl").write_text(
        json.dumps({"id": "q1", "title": "Lumen Plus price", "text": "Lumen Plus costs 4 euros per month or 40 euros per year per home, with priority support.", "category": "billing"}) + "\n"
        + json.dumps({"id": "q2", "title": "Camera", "text": "The T3 has no camera and no microphone; its occupancy sensor only detects movement and heat.", "category": "privacy"}) + "\n",
        encoding="utf-8")
    (d / "other.md").write_text("Tenant two keeps its own notes about heat pumps and the E12 error code in a separate space.\n", encoding="utf-8")
    version, tag, committed = _write("unitkb", [_chunks([d / "heat.md", d / "zh.md", d / "faq.jsonl"], "t1", embedder)])
    assert committed and tag == "ingest-1"
    v2, tag2, _ = _write("unitkb", [_chunks([d / "other.md"], "t2", embedder)], tenant="t2")
    assert tag2 == "ingest-2" and v2 > version
    return d


def test_modes_and_scores(kb):
    for mode in ("vector", "fts", "hybrid"):
        hits = search("unitkb", "what does error E12 mean on a heat pump", k=3, mode=mode, tenant="t1")
        assert hits and hits[0]["source"].endswith("heat.md"), mode
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert set(hits[0]) >= {"doc_id", "source", "chunk_id", "text", "score", "title", "tenant"}
        assert hits[0]["doc_id"] == doc_id_for("t1", hits[0]["source"])


def test_chinese_fts(kb):
    hits = search("unitkb", "保修", k=2, mode="fts")
    assert hits and hits[0]["source"].endswith("zh.md")


def test_filters(kb):
    assert {h["tenant"] for h in search("unitkb", "heat pump E12", k=10, mode="hybrid")} == {"t1", "t2"}
    assert {h["tenant"] for h in search("unitkb", "heat pump E12", k=10, tenant="t2")} == {"t2"}
    hits = search("unitkb", "price per month", k=5, filters={"category": "billing"})
    assert [h["source"].rsplit("#", 1)[1] for h in hits] == ["q1"]
    hits = search("unitkb", "warranty", k=5, mode="vector", filters={"lang": "zh"})
    assert hits and all(h["lang"] == "zh" for h in hits)
    assert search("unitkb", "anything", k=5, filters={"category": ["nope"]}) == []


def test_replace_document_is_one_commit_and_old_version_stays_readable(kb, embedder, tmp_path):
    table = open_table("unitkb")
    before = table.version
    src = next(h["source"] for h in search("unitkb", "heat pumps", k=5, mode="fts") if h["source"].endswith("heat.md"))
    old_ids = {r["chunk_id"] for r in table.search().where(f"source = '{src}'").limit(100).to_list()}
    # Same source, new content: write the new chunks and delete the stale ones in one merge.
    (kb / "heat.md").write_text("# Heat pumps\n\nFirmware 4.2 uses the auxiliary stage of heat pumps less often.\n", encoding="utf-8")
    version, tag, _ = _write("unitkb", [_chunks([kb / "heat.md"], "t1", embedder)], stale=[doc_id_for("t1", src)])
    versions = kb_versions("unitkb")
    # one data commit + one FTS index refresh, tagged
    assert version == before + 2 and tag == "ingest-3"
    assert any(v["version"] == version and v["tags"] == ["ingest-3"] for v in versions)
    rows = open_table("unitkb").search().where(f"source = '{src}'").limit(100).to_list()
    assert len(rows) == 1 and "Firmware 4.2" in rows[0]["text"] and {r["chunk_id"] for r in rows} <= old_ids
    assert "reversed" not in " ".join(h["text"] for h in search("unitkb", "O/B changeover reversed", k=5, mode="fts"))
    old = search("unitkb@ingest-2", "O/B changeover reversed", k=5, mode="fts")
    assert old and "reversed" in old[0]["text"]
    assert search(f"unitkb@{before}", "O/B changeover reversed", k=1, mode="vector")[0]["source"] == src


def test_listing(kb):
    info = next(i for i in list_kbs() if i["name"] == "unitkb")
    assert info["tenants"] == ["t1", "t2"] and info["documents"] == 5 and info["chunks"] >= 5


def test_user_errors(kb):
    with pytest.raises(UserError, match="does not exist"):
        search("nokb", "x")
    with pytest.raises(UserError, match="no version"):
        search("unitkb@999", "x")
    with pytest.raises(UserError, match="unknown search mode"):
        search("unitkb", "x", mode="magic")
    with pytest.raises(UserError, match="invalid knowledge-base name"):
        parse_kb_ref("bad name")
    assert parse_kb_ref("a@3") == ("a", 3) and parse_kb_ref("a@ingest-2") == ("a", "ingest-2")


def test_listing_skips_tables_that_are_not_knowledge_bases(kb):
    import lancedb

    from llmops_ray.config import kb_root

    lancedb.connect(str(kb_root())).create_table("not-a-kb", data=[{"x": 1}], mode="overwrite")
    names = [info["name"] for info in list_kbs()]
    assert "not-a-kb" not in names and "unitkb" in names


def test_chunk_and_embed_actor_matches_the_two_stages_it_fuses(tmp_path, embedder):
    """The pipeline's actor (chunk + embed in one call) gives what chunk_batch -> ChunkEmbedder
    give, and only for the documents it is told to keep; the default model (None) works."""
    from llmops_ray.data.embed import ChunkAndEmbed

    paths = []
    texts = [" ".join(f"Filter number {n} in room {n % 7} needs cleaning after {n * 3} days of use." for n in range(40)),
             " ".join(f"Battery pack {n} lasts about {n % 5 + 1} years in sensor {n * 11}." for n in range(40))]
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"d{i}.md")
        paths[-1].write_text(text)
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": [str(p) for p in paths], "source": [str(p) for p in paths]}),
                            cfg.quality.model_dump(), True, cfg.minhash_perms)
    keep = frozenset([str(paths[0])])
    fused = ChunkAndEmbed(None, keep, "t1", 60, 10, batch_size=32, threads=1)(docs)
    staged = embedder(chunk_batch(docs, keep, "t1", 60, 10, default_model_path()))
    assert fused.num_rows == staged.num_rows > 1
    assert set(fused.column("source").to_pylist()) == {str(paths[0])}
    assert fused.column("text").to_pylist() == staged.column("text").to_pylist()
    a = fused.column("vector").to_pylist()
    b = staged.column("vector").to_pylist()
    assert max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v)) < 1e-4
