"""``llmops data sft-from-kb``: a small extractive SFT set (chat form) from a knowledge base.

Each chunk of the KB's LanceDB table gives a few question/answer pairs whose answers are
sentences of the chunk itself (extractive, so nothing is invented): definitional sentences
("X is Y." / "X是Y。") become "What is X?" / "X是什么？", others are asked about through the
document title. English and Chinese text are both handled.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Iterator

from llmops_ray.config import UserError

CJK = re.compile(r"[\u4e00-\u9fff]")
EN_SENT = re.compile(r"(?<=[.!?])\s+")
ZH_SENT = re.compile(r"(?<=[。！？])")
EN_DEF = re.compile(r"^(?:The |A |An )?([A-Za-z0-9][\w\- ()/.+]{1,60}?) (is|are|was|were|means|refers to) (.{8,})$")
ZH_DEF = re.compile(r"^(.{2,20}?)(?:是|指)(.{4,})$")


def is_chinese(text: str) -> bool:
    return len(CJK.findall(text)) > 0.2 * max(1, len(text.replace(" ", "")))


def sentences(text: str) -> list[str]:
    """Sentences of a chunk: markdown headings dropped, list markers removed, each line split."""
    out = []
    for line in text.splitlines():
        if re.match(r"^\s*#", line):
            continue
        line = re.sub(r"^\s*(?:[-*]|\d+\.)\s+", "", line).strip()
        if not line:
            continue
        splitter = ZH_SENT if is_chinese(line) else EN_SENT
        for raw in splitter.split(line):
            s = " ".join(raw.split()).strip()
            if 12 <= len(s) <= 400 or (CJK.search(s) and 6 <= len(s) <= 200):
                out.append(s)
    return out


def qa_pairs(title: str, text: str, per_chunk: int = 3) -> Iterator[tuple[str, str]]:
    """Extractive (question, answer) pairs from one chunk."""
    title = (title or "").strip() or "the document"
    sents = sentences(text)
    if not sents:
        return
    zh = is_chinese(text)
    produced = 0
    for s in sents:
        if produced >= per_chunk:
            break
        m = (ZH_DEF if zh else EN_DEF).match(s)
        if m and zh:
            subject = m.group(1).strip("，, ")
            yield f"{subject}是什么？", s
        elif m:
            subject, verb = m.group(1).strip(), m.group(2)
            verb = "what does" if verb in {"means", "refers to"} else f"what {verb}"
            q = f"{verb.capitalize()} {subject} mean?" if verb == "what does" else f"{verb.capitalize()} {subject}?"
            yield q, s
        else:
            continue
        produced += 1
    if produced < per_chunk:
        summary = "".join(sents[:2]) if zh else " ".join(sents[:2])
        yield (f"《{title}》主要讲了什么？" if zh else f"What does \"{title}\" say?"), summary


def read_kb_chunks(kb: str, tenant: str | None = None) -> list[dict[str, Any]]:
    """Rows (doc_id, chunk_id, source, title, text) of KB ``kb`` (``NAME`` or ``NAME@VERSION``)."""
    from llmops_ray.kb.store import open_table, parse_kb_ref

    name, version = parse_kb_ref(kb)
    table = open_table(name, version)
    columns = ["doc_id", "chunk_id", "source", "title", "text", "tenant"]
    have = set(table.schema.names)
    rows = table.to_arrow().select([c for c in columns if c in have]).to_pylist()
    if tenant is not None:
        rows = [r for r in rows if r.get("tenant") == tenant]
    rows.sort(key=lambda r: (str(r.get("doc_id")), str(r.get("chunk_id"))))
    return rows


def build_sft_from_kb(
    kb: str, out: str, max_pairs: int = 400, per_chunk: int = 3, tenant: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """Write chat-form JSONL (``{"messages": [...], "source": ...}``) and return counts."""
    rows = read_kb_chunks(kb, tenant)
    if not rows:
        raise UserError(f"knowledge base {kb!r} has no chunks" + (f" for tenant {tenant!r}" if tenant else ""))
    records = []
    for row in rows:
        for question, answer in qa_pairs(row.get("title") or "", row.get("text") or "", per_chunk):
            records.append({
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                "source": row.get("source"),
                "doc_id": row.get("doc_id"),
            })
    if not records:
        raise UserError(f"knowledge base {kb!r} yielded no question/answer pairs")
    if len(records) > max_pairs:
        records = random.Random(seed).sample(records, max_pairs)
    out_path = Path(out).expanduser()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for rec in records:
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(out_path)
    zh = sum(1 for r in records if is_chinese(r["messages"][1]["content"]))
    return {"kb": kb, "out": str(out_path.resolve()), "chunks": len(rows), "pairs": len(records), "pairs_zh": zh}
