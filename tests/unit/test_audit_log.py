"""Audit log: append-only JSON lines, concurrent writers, filters, CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
from datetime import datetime, timedelta, timezone

import pytest

from llmops_ray.config import UserError
from llmops_ray.common.audit import audit, audit_path, read_audit


def test_append_and_read(workspace_dir):
    before = len(read_audit())
    rec = audit("registry.promoted", stack="s-audit", version=3, alias="production", when=datetime(2026, 1, 1))
    assert rec["event"] == "registry.promoted"
    assert audit_path() == workspace_dir / "audit" / "audit.jsonl"
    lines = audit_path().read_text(encoding="utf-8").splitlines()
    last = json.loads(lines[-1])
    assert last["fields"] == {"stack": "s-audit", "version": 3, "alias": "production", "when": "2026-01-01 00:00:00"}
    assert datetime.fromisoformat(last["timestamp"]).tzinfo is not None
    assert len(read_audit()) == before + 1
    with pytest.raises(ValueError):
        audit("")


def test_filters(workspace_dir):
    audit("registry.rollback", stack="s-filter", reason="manual")
    audit("registry.auto_rollback", stack="s-filter", reason="p95 latency")
    audit("request.blocked", stack="s-filter", rail="input.injection", tenant="t-filter")
    assert [r["event"] for r in read_audit(event="registry", stack="s-filter")] == ["registry.rollback", "registry.auto_rollback"]
    assert [r["event"] for r in read_audit(event="request.blocked", tenant="t-filter")] == ["request.blocked"]
    assert read_audit(since="1h", stack="s-filter", limit=1)[0]["event"] == "request.blocked"
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert read_audit(since=future.isoformat(), stack="s-filter") == []
    with pytest.raises(UserError):
        read_audit(since="yesterday")


def _writer(n: int, tag: str) -> None:
    for i in range(n):
        audit("test.concurrent", writer=tag, i=i, payload="x" * 300)


def test_concurrent_writers_never_interleave(workspace_dir):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(100, f"w{i}")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    records = read_audit(event="test.concurrent")
    assert len(records) == 400
    for tag in ("w0", "w1", "w2", "w3"):
        assert [r["fields"]["i"] for r in records if r["fields"]["writer"] == tag] == list(range(100))
    for line in audit_path().read_text(encoding="utf-8").splitlines():
        json.loads(line)  # every line is whole


def test_torn_line_is_skipped(workspace_dir):
    with open(audit_path(), "a", encoding="utf-8") as f:
        f.write('{"timestamp": "2026-')  # a writer killed mid-line
    audit("test.after_torn", ok=True)
    assert [r["fields"] for r in read_audit(event="test.after_torn")] == [{"ok": True}]


def test_cli(capsys):
    from llmops_ray.cli import main

    audit("test.cli", tenant="cli-audit")
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--event", "test.cli", "--tenant", "cli-audit", "--limit", "5"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert [json.loads(line)["event"] for line in out.strip().splitlines()] == ["test.cli"]
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--since", "not-a-time"])
    assert exc.value.code == 2
