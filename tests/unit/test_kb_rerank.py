"""The rerank stage: a cross-encoder built here from the packaged MiniLM weights (no download)
rescoring fused candidates, the KB's default reranker, request settings and load errors."""

from __future__ import annotations

import pyarrow as pa
import pytest

from llmops_ray.config import UserError
from llmops_ray.data.embed import ChunkEmbedder
from llmops_ray.data.ingest import IngestConfig, _commit
from llmops_ray.data.stages import chunk_batch, read_clean_batch
from llmops_ray.kb import search
from llmops_ray.kb.embed import default_model_path
from llmops_ray.kb.rerank import (
    RerankConfig,
    Reranker,
    kb_reranker_config,
    load_cross_encoder,
    passage_text,
    rerank_hits,
    resolve_device,
    set_kb_reranker,
)
from llmops_ray.kb.store import connect, open_table, table_names

KB = "rerankkb"


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    """A loadable cross-encoder: MiniLM's encoder with a new one-logit head, saved locally."""
    from sentence_transformers import CrossEncoder

    out = tmp_path_factory.mktemp("ce") / "minilm-ce"
    CrossEncoder(default_model_path(), num_labels=1, device="cpu").save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    embedder = ChunkEmbedder(None, batch_size=32, threads=1)
    d = tmp_path_factory.mktemp("rerankdocs")
    texts = {
        "warranty.md": "# Warranty\n\nEvery Lumen thermostat has a two-year limited warranty from the date of purchase.",
        "install.md": "# Installing\n\nInstalling the T3 takes about thirty minutes with a screwdriver.",
        "wifi.md": "# Wi-Fi\n\nThe T3 joins 2.4 GHz Wi-Fi networks only; 5 GHz networks are not supported.",
        "battery.md": "# Room Sensor battery\n\nThe Room Sensor runs about two years on one CR2477 coin cell.",
        "api.md": "# Cloud API\n\nApplications use OAuth 2.0; access tokens expire after one hour.",
    }
    for name, text in texts.items():
        (d / name).write_text(text + "\n", encoding="utf-8")
    paths = [str(d / n) for n in sorted(texts)]
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": paths, "source": paths}), cfg.quality.model_dump(), True, cfg.minhash_perms)
    keep = frozenset(r["source"] for r in docs.to_pylist() if r["kind"] == "doc")
    chunks = embedder(chunk_batch(docs, keep, "t1", 60, 10, default_model_path()))
    db = connect()
    table = db.open_table(KB) if KB in table_names(db) else None
    version, _tag, committed = _commit(db, table, KB, "t1", "incremental", [chunks], [], None)
    assert committed
    return version


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir):
    return Reranker(load_cross_encoder(str(cross_encoder_dir)), str(cross_encoder_dir), top_n=4, batch_size=2)


QUERY = "how long is the warranty"


def test_rerank_orders_by_cross_encoder_scores(kb, reranker):
    fused = search(KB, QUERY, k=4, rerank=False)
    assert len(fused) == 4 and all("reranked_by" not in h for h in fused)
    out = rerank_hits(reranker, QUERY, fused, k=4, top_n=3)
    expected = reranker.model.predict([(QUERY, passage_text(h)) for h in fused[:3]])
    by_id = {h["chunk_id"]: float(s) for h, s in zip(fused[:3], expected)}
    head = out[:3]
    assert [h["chunk_id"] for h in head] == sorted(by_id, key=lambda c: (-by_id[c], c))
    for h in head:
        assert h["score"] == pytest.approx(by_id[h["chunk_id"]], abs=1e-5)
        assert h["reranked_by"] == reranker.name
        assert h["fusion_score"] == next(f["score"] for f in fused if f["chunk_id"] == h["chunk_id"])
    # The candidate past top_n was not rescored and keeps its fused place after them.
    assert out[3]["chunk_id"] == fused[3]["chunk_id"] and "reranked_by" not in out[3]
    assert [h["chunk_id"] for h in rerank_hits(reranker, QUERY, fused, k=2, top_n=3)] == [h["chunk_id"] for h in head[:2]]


def test_search_with_a_reranker_and_request_settings(kb, reranker):
    hits = search(KB, QUERY, k=3, reranker=reranker)
    assert len(hits) == 3 and all(h["reranked_by"] == reranker.name for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # An integer request setting is the number of fused candidates rescored.
    two = search(KB, QUERY, k=3, reranker=reranker, rerank=2)
    assert sum(1 for h in two if "reranked_by" in h) == 2
    assert all("reranked_by" not in h for h in search(KB, QUERY, k=3, reranker=reranker, rerank=False))
    with pytest.raises(UserError, match="no reranker"):
        search(KB, QUERY, k=3, rerank=True)
    for bad in (0, 201, "yes", 2.5):
        with pytest.raises(UserError, match="rerank must be"):
            search(KB, QUERY, k=3, rerank=bad)


def test_kb_default_reranker_is_recorded_and_versioned(kb, cross_encoder_dir):
    table = open_table(KB)
    before = table.version
    assert kb_reranker_config(table) is None
    with pytest.raises(UserError, match="cannot load rerank model"):
        set_kb_reranker(table, RerankConfig(model=str(cross_encoder_dir / "missing")))
    assert kb_reranker_config(open_table(KB)) is None
    version = set_kb_reranker(table, RerankConfig(model=str(cross_encoder_dir), top_n=3))
    assert version > before
    assert kb_reranker_config(open_table(KB)).top_n == 3
    hits = search(KB, QUERY, k=4)  # reranked by default now
    assert sum(1 for h in hits if h.get("reranked_by") == str(cross_encoder_dir)) == 3 and len(hits) == 4
    # The older version had no reranker: searching it does not rerank.
    assert all("reranked_by" not in h for h in search(f"{KB}@{before}", QUERY, k=4))
    set_kb_reranker(open_table(KB), None)
    assert all("reranked_by" not in h for h in search(KB, QUERY, k=4))


def test_load_errors_are_user_errors(tmp_path, cross_encoder_dir):
    with pytest.raises(UserError, match="cannot load rerank model"):
        load_cross_encoder(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="rerank device"):
        resolve_device("tpu")
    with pytest.raises(ValueError):
        RerankConfig(model="x", top_n=0)
    with pytest.raises(ValueError):
        RerankConfig(model="x", unknown=1)


def test_retriever_refuses_a_broken_reranker_at_deploy_time(tmp_path, cross_encoder_dir):
    from llmops_ray.serve.rag import Retriever, retriever_app

    with pytest.raises(UserError, match="cannot load rerank model"):
        retriever_app(reranker={"model": str(tmp_path / "nope")})
    with pytest.raises(UserError, match="no GPU share"):
        retriever_app(reranker={"model": str(cross_encoder_dir), "device": "cuda"})
    with pytest.raises(UserError, match="cannot load rerank model"):
        Retriever(reranker={"model": str(tmp_path / "nope")})
    app = retriever_app(reranker={"model": str(cross_encoder_dir), "top_n": 5})
    assert app is not None


def test_retrieval_settings_rerank():
    from llmops_ray.serve.rag import retrieval_settings

    assert retrieval_settings({}, 4, "hybrid")["rerank"] is None
    assert retrieval_settings({"rerank": False}, 4, "hybrid")["rerank"] is False
    assert retrieval_settings({"rerank": 30}, 4, "hybrid")["rerank"] == 30
    for bad in (0, 500, "yes", 1.5, [3]):
        with pytest.raises(ValueError, match="retrieval.rerank"):
            retrieval_settings({"rerank": bad}, 4, "hybrid")


def test_cli_set_reranker_and_search(kb, cross_encoder_dir, tmp_path):
    import json
    import subprocess
    import sys

    llmops = [sys.executable, "-c", "from llmops_ray.cli import main; main()"]

    def run(*args):
        return subprocess.run(llmops + list(args), capture_output=True, text=True, timeout=180)

    bad = run("kb", "set-reranker", KB, "--model", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "cannot load rerank model" in bad.stderr.strip().splitlines()[-1]
    assert run("kb", "set-reranker", KB).returncode == 2  # neither --model nor --off
    assert run("search", "--kb", KB, "--query", QUERY, "--no-rerank", "--rerank-top-n", "2").returncode == 2
    ok = run("kb", "set-reranker", KB, "--model", str(cross_encoder_dir), "--top-n", "2")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["reranker"]["top_n"] == 2
    out = run("search", "--kb", KB, "--query", QUERY, "--k", "3")
    hits = json.loads(out.stdout.strip().splitlines()[-1])["hits"]
    assert sum(1 for h in hits if h.get("reranked_by")) == 2 and all("fusion_score" in h for h in hits[:2])
    plain = run("search", "--kb", KB, "--query", QUERY, "--k", "3", "--no-rerank")
    assert not any("reranked_by" in h for h in json.loads(plain.stdout.strip().splitlines()[-1])["hits"])
    assert run("kb", "set-reranker", KB, "--off").returncode == 0
