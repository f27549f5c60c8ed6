"""The KB owns its embedder: recorded at the first ingest, other weights refused unless
``--mode rebuild``, and every search path (library, CLI, retriever) embeds with it.

The second embedder is a tiny BERT with mean pooling built here from a random-init config
(no download), saved as a sentence-transformers directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from llmops_ray.config import UserError
from llmops_ray.data.embed import ChunkEmbedder
from llmops_ray.data.ingest import IngestConfig, _commit, check_embedder, ingest
from llmops_ray.data.stages import chunk_batch, read_clean_batch
from llmops_ray.kb import search
from llmops_ray.kb.embed import DEFAULT_MODEL_NAME, default_model_path, weights_fingerprint
from llmops_ray.kb.store import connect, embedder_of, kb_info, open_table, table_names

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_embedder_dir(tmp_path_factory) -> str:
    """A 32-dim sentence-transformers model: random-init 2-layer BERT + mean pooling."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("tinybert")
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    BertModel(config).save_pretrained(base / "hf")
    tokenizer.save_pretrained(base / "hf")
    word = models.Transformer(str(base / "hf"), max_seq_length=128)
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    out = base / "st"
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(out))
    return str(out)


def _chunks(docs_dir: Path, model: str | None):
    cfg = IngestConfig()
    files = sorted(str(p) for p in docs_dir.iterdir())
    docs = read_clean_batch(pa.table({"path": files, "source": files}), cfg.quality.model_dump(), True, 128)
    chunks = chunk_batch(docs, frozenset(docs.column("source").to_pylist()), "default", 100, 10, default_model_path())
    return ChunkEmbedder(model)(chunks)


def _commit_with(kb: str, docs_dir: Path, model: str | None, mode: str = "incremental"):
    db = connect()
    table = db.open_table(kb) if kb in table_names(db) else None
    cfg = IngestConfig(embedder=model)
    check_embedder(table, kb, mode, cfg)
    return _commit(db, table, kb, "default", mode, [_chunks(docs_dir, model)], [], None, cfg)


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("embdocs")
    (d / "filters.md").write_text("# Filters\n\nReplace the furnace filter every three months; the thermostat reminds "
                                  "you based on run time.\n", encoding="utf-8")
    (d / "warranty.md").write_text("# Warranty\n\nThe warranty lasts two years from the date of purchase and covers "
                                   "defects in materials and workmanship.\n", encoding="utf-8")
    return d


def test_fingerprint_follows_weights_not_path(tmp_path, tiny_embedder_dir):
    copy = tmp_path / "copy"
    shutil.copytree(default_model_path(), copy)
    assert weights_fingerprint(str(copy)) == weights_fingerprint(None) == weights_fingerprint(DEFAULT_MODEL_NAME)
    assert weights_fingerprint(tiny_embedder_dir) != weights_fingerprint(None)


def test_first_ingest_records_embedder_and_other_is_refused(docs_dir, tiny_embedder_dir, tmp_path):
    version, tag, committed = _commit_with("embkb", docs_dir, None)
    assert committed and tag == "ingest-1"
    record = embedder_of(open_table("embkb"))
    assert record == {"model": DEFAULT_MODEL_NAME, "dim": 384, "fingerprint": weights_fingerprint(None)}
    # The same weights under another path are the same embedder: accepted.
    copy = tmp_path / "minilm-copy"
    shutil.copytree(default_model_path(), copy)
    check_embedder(open_table("embkb"), "embkb", "incremental", IngestConfig(embedder=str(copy)))
    # Other weights: refused with one line naming both, before any Ray work.
    with pytest.raises(UserError) as info:
        ingest([str(docs_dir)], "embkb", config=IngestConfig(embedder=tiny_embedder_dir))
    message = str(info.value)
    assert "\n" not in message and "--mode rebuild" in message and DEFAULT_MODEL_NAME in message
    assert tiny_embedder_dir in message


def test_rebuild_switches_embedder_and_every_search_path_follows(docs_dir, tiny_embedder_dir):
    _commit_with("swkb", docs_dir, None)
    before = search("swkb", "how long is the warranty", k=1, mode="vector")
    assert before[0]["source"].endswith("warranty.md")
    version, tag, committed = _commit_with("swkb", docs_dir, tiny_embedder_dir, mode="rebuild")
    assert committed and tag == "ingest-2"
    info = kb_info("swkb")
    assert info["embedder"]["model"] == tiny_embedder_dir and info["embedder"]["dim"] == 32
    assert info["embedder"]["fingerprint"] == weights_fingerprint(tiny_embedder_dir)
    # Library: a query embedded with MiniLM (384-d) could not search a 32-d column at all.
    hits = search("swkb", "warranty", k=2, mode="vector")
    assert len(hits) == 2
    assert len(search("swkb", "warranty", k=2, mode="hybrid")) == 2
    # The older version keeps its own embedder.
    assert kb_info("swkb@ingest-1")["embedder"]["dim"] == 384
    assert search("swkb@ingest-1", "how long is the warranty", k=1, mode="vector")[0]["source"].endswith("warranty.md")
    # A caller's embedder of the wrong dimension is a user error, not a LanceDB error.
    from llmops_ray.kb.embed import cached_embedder

    with pytest.raises(UserError, match="32-dim"):
        search("swkb", "warranty", k=1, mode="vector", embedder=cached_embedder(None))
    # The retriever deployment's body (called directly, no Serve): it preloads MiniLM but
    # searches each KB with that KB's embedder.
    from llmops_ray.serve.rag import Retriever

    assert len(Retriever(None)._search("swkb", "warranty", 2, "vector", "default", None)) == 2
    # Evaluation retrieval goes through the same library call.
    from llmops_ray.evaluate.run import _retrieve

    assert len(_retrieve("swkb", "warranty", 2, "vector")) == 2
    # An ingest that names no embedder gets the KB's own; naming MiniLM is now the refused one.
    assert check_embedder(open_table("swkb"), "swkb", "incremental", IngestConfig()).embedder == tiny_embedder_dir
    with pytest.raises(UserError, match="swkb"):
        check_embedder(open_table("swkb"), "swkb", "incremental", IngestConfig(embedder=None))


def test_kb_show_and_search_cli(docs_dir, tiny_embedder_dir):
    _commit_with("clishow", docs_dir, tiny_embedder_dir)
    env = dict(os.environ)
    cmd = [sys.executable, "-c", "from llmops_ray.cli import main; main()"]
    shown = subprocess.run([*cmd, "kb", "show", "clishow"], capture_output=True, text=True, cwd=REPO, env=env, timeout=180)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout.strip().splitlines()[-1])
    assert info["embedder"]["model"] == tiny_embedder_dir and info["embedder"]["dim"] == 32
    assert info["vector_index"] is None and info["search"]["nprobes"] >= 1
    found = subprocess.run([*cmd, "search", "--kb", "clishow", "--query", "warranty", "--mode", "vector", "--k", "2"],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=180)
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout.strip().splitlines()[-1])["hits"]) == 2
    missing = subprocess.run([*cmd, "kb", "show", "nosuchkb"], capture_output=True, text=True, cwd=REPO, env=env, timeout=180)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
