"""`llmops search`, `llmops kb list|versions` and `llmops ingest` argument errors, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[2]
LLMOPS = [sys.executable, "-c", "from llmops_ray.cli import main; main()"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A workspace holding KB ``clikb`` (two docs), written without Ray by the pipeline's own stages."""
    from llmops_ray.data.embed import ChunkEmbedder
    from llmops_ray.data.ingest import IngestConfig, _commit
    from llmops_ray.data.stages import chunk_batch, read_clean_batch
    from llmops_ray.kb.embed import default_model_path
    from llmops_ray.kb.store import connect

    home = tmp_path_factory.mktemp("clihome")
    docs_dir = tmp_path_factory.mktemp("clidocs")
    (docs_dir / "a.md").write_text("# Filters\n\nReplace the furnace filter every three months; Lumen Plus reminds you based on run time.\n", encoding="utf-8")
    (docs_dir / "b.jsonl").write_text(json.dumps({"id": "w1", "text": "The warranty lasts two years from the date of purchase and covers defects in materials."}) + "\n", encoding="utf-8")
    old = os.environ["LLMOPS_HOME"]
    os.environ["LLMOPS_HOME"] = str(home)
    try:
        cfg = IngestConfig()
        files = [str(docs_dir / "a.md"), str(docs_dir / "b.jsonl")]
        docs = read_clean_batch(pa.table({"path": files, "source": files}), cfg.quality.model_dump(), True, 128)
        chunks = chunk_batch(docs, frozenset(docs.column("source").to_pylist()), "default", 100, 10, default_model_path())
        _commit(connect(), None, "clikb", "default", "incremental", [ChunkEmbedder(None)(chunks)], [], None)
    finally:
        os.environ["LLMOPS_HOME"] = old
    return home, docs_dir


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LLMOPS_HOME=str(home))
    return subprocess.run([*LLMOPS, *args], capture_output=True, text=True, cwd=REPO, timeout=180, env=env)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("llmops: error:"), result.stderr
    return lines[0]


def test_search_queries_file(home, tmp_path):
    home, docs_dir = home
    queries = tmp_path / "q.txt"
    queries.write_text("how often to replace the filter\n\nhow long is the warranty\n", encoding="utf-8")
    result = run(home, "search", "--kb", "clikb", "--queries-file", str(queries), "--k", "1", "--mode", "fts")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["how often to replace the filter", "how long is the warranty"]
    assert lines[0]["hits"][0]["source"] == str(docs_dir / "a.md")
    assert lines[1]["hits"][0]["source"] == f"{docs_dir / 'b.jsonl'}#w1"
    assert set(lines[0]["hits"][0]) >= {"doc_id", "source", "chunk_id", "text", "score"}


def test_search_hybrid_at_version(home):
    home, docs_dir = home
    result = run(home, "search", "--kb", "clikb@ingest-1", "--query", "warranty years", "--k", "2")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["hits"][0]["source"].endswith("#w1") and len(out["hits"]) == 2


def test_kb_list_and_versions(home):
    home, _ = home
    listing = [json.loads(line) for line in run(home, "kb", "list").stdout.splitlines()]
    assert [(i["name"], i["documents"], i["latest_tag"]) for i in listing] == [("clikb", 2, "ingest-1")]
    versions = [json.loads(line) for line in run(home, "kb", "versions", "clikb").stdout.splitlines()]
    assert versions[-1]["tags"] == ["ingest-1"]


def test_errors_exit_2(home):
    home, _ = home
    assert "does not exist" in _one_line_error(run(home, "ingest", "/no/such/path", "--kb", "x"))
    assert "does not exist" in _one_line_error(run(home, "search", "--kb", "nokb", "--query", "x"))
    assert "exactly one of" in _one_line_error(run(home, "search", "--kb", "clikb"))
    assert "unknown key" in _one_line_error(run(home, "ingest", str(REPO / "README.md"), "--kb", "x", "--set", "chunk_sise=3"))
    assert "unknown mode" in _one_line_error(run(home, "ingest", str(REPO / "pyproject.toml"), "--kb", "x", "--mode", "fast"))
    assert "does not exist" in _one_line_error(run(home, "kb", "versions", "nokb"))
