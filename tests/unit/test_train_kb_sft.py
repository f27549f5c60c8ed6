"""``llmops data sft-from-kb`` over a real LanceDB table laid out like the KB's (no Ray needed)."""

from __future__ import annotations

import json

import pytest

from llmops_ray.cli import main


@pytest.fixture
def kb_table():
    import lancedb
    import pyarrow as pa

    from llmops_ray.config import kb_root

    rows = [
        {"doc_id": "d1", "chunk_id": "d1-0", "source": "en/refunds.md", "title": "Refund policy", "tenant": "default",
         "text": "# Refunds\nA refund is a return of money to the customer. Refunds take five business days."},
        {"doc_id": "d2", "chunk_id": "d2-0", "source": "zh/vpn.md", "title": "VPN 指南", "tenant": "default",
         "text": "VPN是一种加密的网络连接。连接公司网络前请先安装客户端。"},
        {"doc_id": "d3", "chunk_id": "d3-0", "source": "other.md", "title": "Other tenant", "tenant": "acme",
         "text": "The badge office is on the second floor of building B."},
    ]
    db = lancedb.connect(str(kb_root()))
    db.create_table("sftunit", data=pa.Table.from_pylist(rows), mode="overwrite")
    yield "sftunit"
    db.drop_table("sftunit")


def test_sft_from_kb_writes_extractive_chat_pairs(kb_table, tmp_path, capsys):
    out = tmp_path / "sft.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(["data", "sft-from-kb", "--kb", kb_table, "--out", str(out)])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert summary["pairs"] == len(records) >= 3 and summary["chunks"] == 3 and summary["pairs_zh"] >= 1
    pairs = {(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records}
    assert ("What is refund?", "A refund is a return of money to the customer.") in pairs
    assert ("VPN是什么？", "VPN是一种加密的网络连接。") in pairs
    for r in records:  # extractive: every answer is text of its source chunk
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    from llmops_ray.train.data import validate_dataset

    assert validate_dataset(str(out))["records"] == len(records)  # directly usable by finetune

    from llmops_ray.train.kb_sft import build_sft_from_kb

    only_acme = build_sft_from_kb(kb_table, str(tmp_path / "acme.jsonl"), tenant="acme")
    assert only_acme["chunks"] == 1
