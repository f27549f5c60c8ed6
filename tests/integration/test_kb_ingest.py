"""End to end on a local Ray: ingest the sample corpus, search, re-ingest, change, sync, fail.

One module-scoped KB walks through the life of a knowledge base; each test checks one step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmops_ray.cluster import apply_process_env
from llmops_ray.config import UserError
from llmops_ray.data.ingest import IngestConfig, ingest
from llmops_ray.kb import kb_versions, search
from llmops_ray.kb.store import open_table
from llmops_ray.safety.pii import find_pii

CORPUS = Path(__file__).resolve().parents[2] / "llmops_ray" / "resources" / "sample_corpus"
KB = "itkb"
RAW_PII = ["maria.keller@example.com", "415 555 0132", "4111 1111 1111 1111", "GB82 WEST", "203.0.113.42",
           "2001:db8::17", "13812345678", "138-1234-5678", "11010519491231002X", "privacy@lumenfield.example"]

pytestmark = pytest.mark.integration

# Ray reads RAY_AUTH_MODE when it is imported; the session fixture imports ray before
# init_ray() sets it, so set the process environment as the CLI does, at collection time.
apply_process_env()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(CORPUS, root)
    return root


@pytest.fixture(scope="module")
def first(corpus):
    lines: list[str] = []
    summary = ingest([str(corpus)], KB, config=IngestConfig(embed_num_cpus=1.0), progress=lines.append)
    return summary, lines


def _src(corpus: Path, rel: str) -> str:
    return str(corpus / rel)


def test_first_ingest_summary(corpus, first):
    s, lines = first
    assert any("embedded" in line for line in lines)
    assert s["committed"] and s["tag"] == "ingest-1" and s["version"] >= 1
    assert s["documents_written"] >= 25 and s["chunks_written"] >= s["documents_written"]
    assert s["dropped"]["duplicate"] == sorted([_src(corpus, "faq/faq.jsonl#faq-011"), _src(corpus, "old/troubleshooting.md")])
    assert s["dropped"]["near_duplicate"] == [_src(corpus, "old/warranty_policy_2024.md")]
    assert _src(corpus, "junk/todo.md") in s["dropped"]["too_short"]
    assert s["dropped"]["repetitive"] == [_src(corpus, "junk/keyboard_mash.txt")]
    assert s["dropped"]["low_alpha"] == [_src(corpus, "junk/sensor_dump.txt")]
    errors = {e["source"]: e["error"] for e in s["errors"]}
    assert set(errors) == {_src(corpus, p) for p in ("junk/empty.txt", "junk/broken.pdf", "junk/legacy_notes.txt", "faq/faq.jsonl#line15")}
    assert s["pii_masked"]["EMAIL"] >= 2 and s["pii_masked"]["CARD"] == 1 and s["pii_masked"]["CN_ID"] == 1
    assert json.loads(json.dumps(s)) == s


def test_no_raw_pii_in_the_table(first):
    rows = open_table(KB).to_arrow().select(["text", "title", "fts_text", "metadata"]).to_pylist()
    blob = "\n".join(v for r in rows for v in r.values() if v)
    for raw in RAW_PII:
        assert raw not in blob
    assert "[EMAIL]" in blob and "[CN_ID]" in blob and "[IBAN]" in blob
    assert all(not find_pii(r["text"]) for r in rows)


def test_search_three_modes(corpus, first):
    for mode in ("vector", "fts", "hybrid"):
        hits = search(KB, "what does error E12 mean", k=3, mode=mode)
        assert hits[0]["source"] == _src(corpus, "en/troubleshooting.md"), mode
    hits = search(KB, "How much does Lumen Plus cost per month?", k=3)
    assert _src(corpus, "faq/faq.jsonl#faq-004") in [h["source"] for h in hits]
    assert search(KB, "保修 多久", k=3, mode="fts")[0]["source"].endswith("保修与售后.md")


def test_reingest_unchanged_writes_nothing(corpus, first):
    before = open_table(KB).version
    s = ingest([str(corpus)], KB)
    assert s["chunks_written"] == 0 and s["documents_written"] == 0 and not s["committed"]
    assert s["documents_unchanged"] == first[0]["documents_written"]
    assert s["version"] == before == open_table(KB).version


def test_change_one_file_replaces_only_its_chunks(corpus, first):
    table = open_table(KB)
    before = {r["chunk_id"]: (r["text"], r["ingested_at"]) for r in table.to_arrow().select(["chunk_id", "text", "ingested_at"]).to_pylist()}
    target = corpus / "en" / "energy_saving_tips.md"
    target.write_text(target.read_text(encoding="utf-8") + "\n11. Close the garage door in winter: a cold garage pulls heat from the rooms above it.\n", encoding="utf-8")
    s = ingest([str(corpus)], KB)
    assert s["documents_written"] == 1 and s["tag"] == "ingest-2" and s["chunks_written"] >= 1
    rows = open_table(KB).to_arrow().select(["chunk_id", "source", "text", "ingested_at"]).to_pylist()
    changed = {r["chunk_id"] for r in rows if r["source"] == str(target)}
    for r in rows:
        if r["source"] != str(target):
            assert before[r["chunk_id"]] == (r["text"], r["ingested_at"])
    assert len(rows) == len(before) - len([c for c in before if c.split(":")[0] == next(iter(changed)).split(":")[0]]) + len(changed)
    assert "garage" in search(KB, "garage door in winter", k=1, mode="fts")[0]["text"]


def test_older_version_still_readable(corpus, first):
    old = search(f"{KB}@ingest-1", "garage door in winter", k=3, mode="fts")
    assert all("garage" not in h["text"] for h in old)
    assert search(f"{KB}@{first[0]['version']}", "what does error E12 mean", k=1)[0]["source"].endswith("troubleshooting.md")


def test_sync_removes_gone_sources_and_duplicates_follow_the_kept_one(corpus, first):
    (corpus / "en" / "careers_copy.md").write_text("unused", encoding="utf-8")
    (corpus / "en" / "careers_copy.md").unlink()
    (corpus / "web" / "careers.html").unlink()
    s = ingest([str(corpus)], KB, sync=True)
    assert s["removed"] == {str(corpus / "web" / "careers.html"): "source_gone"} and s["documents_deleted"] == 1
    assert all(not h["source"].endswith("careers.html") for h in search(KB, "open positions firmware engineer", k=5))
    # The kept copy of the troubleshooting page goes away: next time the duplicate is kept.
    (corpus / "en" / "troubleshooting.md").unlink()
    s = ingest([str(corpus)], KB, sync=True)
    assert s["documents_written"] == 1 and "duplicate" not in s["dropped"].get("duplicate", [""])[0].split("/")[-1]
    assert search(KB, "what does error E12 mean", k=1)[0]["source"] == str(corpus / "old" / "troubleshooting.md")


def test_failed_ingest_leaves_previous_version(corpus, first):
    table = open_table(KB)
    before_version, before_rows = table.version, table.count_rows()
    (corpus / "en" / "new_page.md").write_text("# New page\n\nThe Lumen T4 prototype has a colour display and an air quality sensor for living rooms.\n", encoding="utf-8")
    # An incremental ingest naming weights that do not load (or other weights than the KB's
    # own) is refused on the driver, before Ray starts any work.
    lines: list[str] = []
    with pytest.raises(UserError, match="cannot load embedding model") as excinfo:
        ingest([str(corpus)], KB, config=IngestConfig(embedder=str(corpus / "no-such-model")), progress=lines.append)
    assert "no-such-model" in str(excinfo.value)
    assert not any("documents to embed" in line for line in lines)
    # A rebuild may change the embedder; a missing one fails inside the Ray Data chunk/embed
    # stages, after reading and planning, and the commit never happens.
    lines = []
    with pytest.raises(Exception) as excinfo:
        ingest([str(corpus)], KB, mode="rebuild", config=IngestConfig(embedder=str(corpus / "no-such-model")),
               progress=lines.append)
    assert "no-such-model" in str(excinfo.value)
    assert any("documents to embed" in line for line in lines)
    table = open_table(KB)
    assert table.version == before_version and table.count_rows() == before_rows
    assert search(KB, "what does error E12 mean", k=1)[0]["source"].endswith("troubleshooting.md")
    versions = [v["version"] for v in kb_versions(KB)]
    assert max(versions) == before_version


def test_tenants_and_rebuild(corpus, first):
    other = corpus.parent / "acme"
    other.mkdir()
    (other / "note.md").write_text("# Acme heating\n\nAcme keeps its boiler maintenance notes here: service the boiler every autumn before the first cold night.\n", encoding="utf-8")
    s = ingest([str(other)], KB, tenant="acme", mode="rebuild")
    assert s["documents_written"] == 1
    assert {h["tenant"] for h in search(KB, "boiler maintenance", k=5, tenant="acme")} == {"acme"}
    assert all(h["tenant"] == "default" for h in search(KB, "boiler maintenance", k=5, tenant="default"))
    default_rows = open_table(KB).count_rows("tenant = 'default'")
    s = ingest([str(other)], KB, tenant="acme", mode="rebuild")
    assert s["documents_written"] == 1 and open_table(KB).count_rows("tenant = 'default'") == default_rows


def test_missing_path_is_a_user_error(ray_session):
    with pytest.raises(UserError, match="does not exist"):
        ingest(["/no/such/dir"], KB)
