"""`tune_retriever` end to end on the session's local Ray: pairs from a small KB, a Ray Train run
per kind, the model directory with lineage, and --apply (the KB re-embedded and owning the tuned
bi-encoder; the tuned cross-encoder as the KB's default reranker, used by search)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from llmops_ray.cluster import apply_process_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
apply_process_env()

DOCS = {
    "warranty.md": "# Warranty policy\n\n## Claims\n\nEvery thermostat has a two-year limited warranty from the date of "
                   "purchase. Claims are made in the app under Support. Water damage and lightning are not covered.",
    "install.md": "# Installing the T3\n\n## Wiring\n\nTurn off the power at the breaker before you start. Push each "
                  "wire into the connector with the same label. Without a C wire, connect the power adapter kit.",
    "api.md": "# Cloud API\n\n## Authentication\n\nApplications use OAuth 2.0 with the authorization code flow. Access "
              "tokens expire after one hour and refresh tokens after ninety days of inactivity.",
    "privacy.md": "# Privacy\n\n## Location\n\nThe app reports only home or away. Coordinates never leave the phone. "
                  "Detailed readings are kept for twenty-five months.",
}
HELDOUT = ("name: h\nitems:\n"
           "  - {type: retrieval, query: 'When do API tokens stop working?', gold_sources: [api.md]}\n"
           "  - {type: retrieval, query: 'Is a lightning strike covered?', gold_sources: [warranty.md]}\n")


@pytest.fixture(scope="module")
def kb(tmp_path_factory, ray_session):
    from llmops_ray.data.embed import ChunkEmbedder
    from llmops_ray.data.ingest import IngestConfig, _commit
    from llmops_ray.data.stages import chunk_batch, read_clean_batch
    from llmops_ray.kb.embed import default_model_path
    from llmops_ray.kb.store import connect

    d = tmp_path_factory.mktemp("tunedocs")
    for name, text in DOCS.items():
        (d / name).write_text(text + "\n", encoding="utf-8")
    paths = [str(d / n) for n in sorted(DOCS)]
    cfg = IngestConfig()
    docs = read_clean_batch(pa.table({"path": paths, "source": paths}), cfg.quality.model_dump(), True, 128)
    chunks = ChunkEmbedder(None, threads=1)(chunk_batch(docs, frozenset(paths), "default", 200, 20, default_model_path()))
    for name in ("tune_bi", "tune_ce"):
        _commit(connect(), None, name, "default", "incremental", [chunks], [], None)
    (d / "heldout.yaml").write_text(HELDOUT, encoding="utf-8")
    return d


def _config(kind: str, out: Path):
    from llmops_ray.train.retriever import TuneRetrieverConfig

    # 2 CPUs in CI: the worker takes a small explicit share.
    return TuneRetrieverConfig(kind=kind, epochs=1, batch_size=8, sentences_per_chunk=2, cpus_per_worker=0.5,
                               out=str(out), rerank_top_n=5, keep_if_worse=True)


def test_bi_encoder_tuned_and_applied(kb, tmp_path):
    from llmops_ray.kb import search
    from llmops_ray.kb.embed import weights_fingerprint
    from llmops_ray.kb.store import embedder_of, ingest_tags, open_table
    from llmops_ray.train.retriever import tune_retriever

    before = open_table("tune_bi").version
    out = tune_retriever("tune_bi", _config("bi-encoder", tmp_path / "bi"), apply=True,
                         heldout=str(kb / "heldout.yaml"))
    assert out["kind"] == "bi-encoder" and out["pairs"] >= 12 and out["applied"]
    model_dir = Path(out["model_dir"])
    lineage = json.loads((model_dir / "lineage.json").read_text())
    assert lineage["kb"] == "tune_bi" and lineage["kb_version"] == before and lineage["pairs"] == out["pairs"]
    assert lineage["history"][0]["steps"] >= 1 and out["train_loss"][0] > 0
    table = open_table("tune_bi")
    assert out["version"] == table.version > before
    record = embedder_of(table)
    assert record["model"] == str(model_dir) and record["fingerprint"] == weights_fingerprint(str(model_dir))
    assert ingest_tags(table)[max(ingest_tags(table), key=lambda t: ingest_tags(table)[t])] == table.version
    assert table.count_rows() == open_table("tune_bi", before).count_rows()
    assert search("tune_bi", "When do API tokens stop working?", k=1, mode="vector")[0]["source"].endswith("api.md")
    assert set(out["before"]) == set(out["after"]) == {"recall_at_5", "mrr", "questions"}


def test_cross_encoder_tuned_and_becomes_the_default_reranker(kb, tmp_path):
    from llmops_ray.kb import search
    from llmops_ray.kb.rerank import kb_reranker_config
    from llmops_ray.kb.store import open_table
    from llmops_ray.train.retriever import tune_retriever

    out = tune_retriever("tune_ce", _config("cross-encoder", tmp_path / "ce"), apply=True)
    assert out["kind"] == "cross-encoder" and out["applied"]
    config = kb_reranker_config(open_table("tune_ce"))
    assert config.model == out["model_dir"] and config.top_n == 5
    assert out["version"] == open_table("tune_ce").version
    hits = search("tune_ce", "Is a lightning strike covered?", k=3)
    assert all(h["reranked_by"] == out["model_dir"] for h in hits)
    assert json.loads((Path(out["model_dir"]) / "lineage.json").read_text())["kind"] == "cross-encoder"
