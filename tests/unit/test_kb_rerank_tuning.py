"""Training pairs built from a KB (synthetic queries, hard negatives from other documents),
the held-out metrics, and `llmops kb tune-retriever` argument errors. No Ray here: the Ray
Train run itself is tests/integration/test_tune_retriever.py."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from llmops_ray.config import UserError
from llmops_ray.data.embed import ChunkEmbedder
from llmops_ray.data.ingest import IngestConfig, _commit
from llmops_ray.data.stages import chunk_batch, read_clean_batch
from llmops_ray.kb.embed import default_model_path
from llmops_ray.kb.store import connect, table_names
from llmops_ray.train.retriever import (
    TuneRetrieverConfig,
    build_pairs,
    chunk_queries,
    hard_negatives,
    heldout_metrics,
    load_heldout,
    pairs_fingerprint,
)

LLMOPS = [sys.executable, "-c", "from llmops_ray.cli import main; main()"]
DOCS = {
    "warranty.md": "# Warranty policy\n\n## Claims\n\nEvery thermostat has a two-year limited warranty from the date of purchase. "
                   "Claims are made in the app under Support. Water damage and lightning are not covered.",
    "install.md": "# Installing the T3\n\n## Wiring\n\nTurn off the power at the breaker before you start. Push each wire "
                  "into the connector with the same label. Without a C wire, connect the power adapter kit.",
    "api.md": "# Cloud API\n\n## Authentication\n\nApplications use OAuth 2.0 with the authorization code flow. Access "
              "tokens expire after one hour and refresh tokens after ninety days of inactivity.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    d = tmp_path_factory.mktemp("tunedocs")
    for name, text in DOCS.items():
        (d / name).write_text(text + "\n", encoding="utf-8")
    paths = [str(d / n) for n in sorted(DOCS)]
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": paths, "source": paths}), cfg.quality.model_dump(), True, cfg.minhash_perms)
    keep = frozenset(r["source"] for r in docs.to_pylist() if r["kind"] == "doc")
    assert len(keep) == 3
    chunks = ChunkEmbedder(None, threads=1)(chunk_batch(docs, keep, "t1", 200, 20, default_model_path()))
    db = connect()
    table = db.open_table("tunekb") if "tunekb" in table_names(db) else None
    _commit(db, table, "tunekb", "t1", "incremental", [chunks], [], None)
    return d


def test_chunk_queries_title_headings_and_inverse_cloze():
    text = "# Warranty policy\n\n## Claims\n\nEvery thermostat has a two-year warranty. Claims are made in the app."
    out = chunk_queries("Warranty policy", text, 0, 2, 12, random.Random(0))
    origins = [o for _, _, o in out]
    assert origins.count("title") == 1 and "heading" in origins and origins.count("sentence") == 2
    assert ("Warranty policy: Claims", text, "heading") in out
    for query, positive, origin in out:
        if origin == "sentence":
            assert query in text and query not in positive  # the passage lost the sentence
    # Only a document's first chunk is asked about by its title.
    assert all(o != "title" for _, _, o in chunk_queries("Warranty policy", text, 3, 2, 12, random.Random(0)))


def test_hard_negatives_come_from_other_documents():
    rng = np.random.default_rng(0)
    chunks = rng.normal(size=(12, 8)).astype(np.float32)
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    docs = [f"d{i // 3}" for i in range(12)]  # four documents of three chunks
    queries = chunks[[0, 4, 11]] + 0.01
    picked = hard_negatives(queries, chunks, docs, ["d0", "d1", "d3"], per_query=2, block=5)  # blocks cross docs
    for q, (own, got) in enumerate(zip(["d0", "d1", "d3"], picked)):
        assert len(got) == 2 and all(docs[i] != own for i in got)
        sims = chunks @ queries[q]
        others = sorted((i for i in range(12) if docs[i] != own), key=lambda i: -sims[i])
        assert got == others[:2]  # the most similar chunks of other documents, best first


def test_build_pairs_from_the_kb(kb):
    built = build_pairs("tunekb", TuneRetrieverConfig(sentences_per_chunk=2, hard_negatives=1, seed=1))
    pairs = built["pairs"]
    assert built["chunks"] == 3 and len(pairs) >= 9
    texts = {p["doc_id"]: p["positive"] for p in pairs if p["origin"] == "title"}
    assert len(texts) == 3
    for p in pairs:
        assert len(p["negatives"]) == 1 and p["negatives"][0] not in texts.get(p["doc_id"], "")
        assert p["negatives"][0] in texts.values()  # a whole chunk of another document
    again = build_pairs("tunekb", TuneRetrieverConfig(sentences_per_chunk=2, hard_negatives=1, seed=1))["pairs"]
    assert pairs_fingerprint(again) == pairs_fingerprint(pairs)  # deterministic for a seed
    capped = build_pairs("tunekb", TuneRetrieverConfig(max_pairs=4, hard_negatives=0))["pairs"]
    assert len(capped) == 4 and all(p["negatives"] == [] for p in capped)


def test_heldout_metrics(kb, tmp_path):
    suite = tmp_path / "held.yaml"
    suite.write_text("name: h\nitems:\n"
                     "  - {type: retrieval, query: 'How long do access tokens last?', gold_sources: [api.md]}\n"
                     "  - {type: retrieval, query: 'Is lightning damage covered?', gold_sources: [warranty.md]}\n"
                     "  - {type: retrieval, query: 'unrelated', gold_sources: [missing.md]}\n"
                     "  - {type: perplexity, text: ignored}\n", encoding="utf-8")
    items = load_heldout(str(suite))
    assert len(items) == 3
    m = heldout_metrics("tunekb", items, k=5)
    assert m["questions"] == 3 and m["recall_at_5"] == pytest.approx(2 / 3, abs=1e-3)
    assert 0 < m["mrr"] <= m["recall_at_5"]
    m1 = heldout_metrics("tunekb", items[:1], k=1)
    assert m1["recall_at_1"] == m1["mrr"] == 1.0
    with pytest.raises(UserError, match="no retrieval items"):
        empty = tmp_path / "none.yaml"
        empty.write_text("name: x\nitems: [{type: perplexity, text: a}]\n", encoding="utf-8")
        load_heldout(str(empty))


def test_one_document_is_refused(tmp_path):
    (tmp_path / "only.md").write_text("# Only\n\n" + DOCS["api.md"] + "\n", encoding="utf-8")
    paths = [str(tmp_path / "only.md")]
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": paths, "source": paths}), cfg.quality.model_dump(), True, 128)
    chunks = ChunkEmbedder(None, threads=1)(chunk_batch(docs, frozenset(paths), "t1", 24, 4, default_model_path()))
    assert chunks.num_rows > 1
    _commit(connect(), None, "onedockb", "t1", "incremental", [chunks], [], None)
    with pytest.raises(UserError, match="one document"):
        build_pairs("onedockb", TuneRetrieverConfig())


@pytest.mark.parametrize("args, message", [
    (["--kb", "nokb"], "does not exist"),
    (["--kb", "x", "--kind", "colbert"], "--kind must be one of"),
    (["--kb", "x", "epochs=0"], "epochs"),
    (["--kb", "x", "nonsense_key=1"], "nonsense_key"),
    (["--kb", "x@3", "--apply"], "NAME, not NAME@VERSION"),
])
def test_cli_bad_input_exits_2(args, message, tmp_path):
    import os

    env = dict(os.environ, LLMOPS_HOME=str(tmp_path))
    proc = subprocess.run(LLMOPS + ["kb", "tune-retriever", *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("llmops: error:") and message in last


@pytest.mark.parametrize("keep_if_worse", [False, True])
def test_apply_is_reverted_when_the_heldout_gets_worse(kb, tmp_path, monkeypatch, keep_if_worse):
    """The Ray Train run is replaced by a saved cross-encoder (the training itself is the
    integration test's); the held-out figures are given, worse after than before."""
    from sentence_transformers import CrossEncoder

    import llmops_ray.train.retriever as retriever
    from llmops_ray.kb.rerank import kb_reranker_config
    from llmops_ray.kb.store import open_table

    def fake_fit(kb_name, config, pairs, base_model, out_dir, lineage):
        CrossEncoder(default_model_path(), num_labels=1, device="cpu").save_pretrained(str(out_dir))
        return {"history": [{"epoch": 1, "train_loss": 0.69, "steps": 1}]}

    figures = iter([{"recall_at_5": 1.0, "mrr": 0.9, "questions": 1}, {"recall_at_5": 1.0, "mrr": 0.5, "questions": 1}])
    monkeypatch.setattr(retriever, "fit", fake_fit)
    monkeypatch.setattr(retriever, "heldout_metrics", lambda *a, **kw: next(figures))
    suite = tmp_path / "h.yaml"
    suite.write_text("name: h\nitems: [{type: retrieval, query: q, gold_sources: [api.md]}]\n", encoding="utf-8")
    before = open_table("tunekb").version
    config = TuneRetrieverConfig(kind="cross-encoder", out=str(tmp_path / "ce"), keep_if_worse=keep_if_worse)
    out = retriever.tune_retriever("tunekb", config, apply=True, heldout=str(suite))
    table = open_table("tunekb")
    assert out["version"] == table.version > before
    if keep_if_worse:
        assert out["applied"] and "reverted" not in out
        assert kb_reranker_config(table).model == out["model_dir"]
        from llmops_ray.kb.rerank import set_kb_reranker

        set_kb_reranker(table, None)
    else:
        assert not out["applied"] and "restored to version" in out["reverted"]
        assert kb_reranker_config(table) is None  # back as it was before the apply
