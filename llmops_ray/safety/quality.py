"""Quality measures of the rails on the labelled sets shipped in ``resources/safety/``.

Used by ``benchmarks/rails.py`` (which prints them) and by unit tests (which assert the
targets), so both measure the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from llmops_ray.config import RESOURCES_DIR
from llmops_ray.safety.pii import find_pii

PII_LABELLED_PATH = RESOURCES_DIR / "safety" / "pii_labelled.jsonl"


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class PiiReport:
    """Recall per type and language, and the negatives (look-alikes) that were masked."""

    found: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    negatives: int = 0
    negatives_masked: list[tuple[int, str, str]] = field(default_factory=list)
    """(row id, kind, value) of every look-alike a detector touched."""
    missed: list[tuple[int, str, str]] = field(default_factory=list)
    """(row id, type, value) of every labelled value not found whole with its type."""

    @property
    def recall(self) -> float:
        total = sum(v for k, v in self.total.items() if k.startswith("all/"))
        return sum(v for k, v in self.found.items() if k.startswith("all/")) / max(total, 1)


def pii_recall(rows: list[dict] | None = None) -> PiiReport:
    """A labelled value counts as found when one match of its type covers it whole."""
    rows = load_jsonl(PII_LABELLED_PATH) if rows is None else rows
    report = PiiReport()
    for row in rows:
        text = row["text"]
        matches = find_pii(text)
        for span in row["spans"]:
            hit = any(m.type == span["type"] and m.start <= span["start"] and m.end >= span["end"] for m in matches)
            for key in (f"all/{span['type']}", f"{row['lang']}/{span['type']}"):
                report.total[key] = report.total.get(key, 0) + 1
                report.found[key] = report.found.get(key, 0) + int(hit)
            if not hit:
                report.missed.append((row["id"], span["type"], text[span["start"] : span["end"]]))
        for neg in row["negatives"]:
            report.negatives += 1
            if any(m.start < neg["end"] and m.end > neg["start"] for m in matches):
                report.negatives_masked.append((row["id"], neg["kind"], text[neg["start"] : neg["end"]]))
    return report


@dataclass
class FamilyRate:
    """Detection rate on the held-out rows of one family: TPR for attacks, FPR for benign ones."""

    family: str
    label: int
    hits: int
    total: int

    @property
    def rate(self) -> float:
        return self.hits / max(self.total, 1)


def injection_by_family(score, threshold: float, include_first_set: bool = True) -> list[FamilyRate]:
    """Held-out (``split == "test"``) rows of the family set, scored by ``score(text) -> float``.

    With ``include_first_set``, the first set's held-out rows are added as families
    ``first_set`` (attacks) and ``first_set_benign``.
    """
    from llmops_ray.safety.injection import DATASET_PATH, FAMILIES_PATH, load_dataset

    rows = [(r["family"], r) for r in load_dataset(FAMILIES_PATH, split="test")]
    if include_first_set:
        rows += [("first_set" if r["label"] else "first_set_benign", r) for r in load_dataset(DATASET_PATH, split="test")]
    rates: dict[tuple[str, int], FamilyRate] = {}
    for family, row in rows:
        key = (family, int(row["label"]))
        rate = rates.setdefault(key, FamilyRate(family, int(row["label"]), 0, 0))
        rate.total += 1
        rate.hits += int(score(row["text"]) >= threshold)
    return sorted(rates.values(), key=lambda r: (-r.label, r.family))


def pooled(rates: list[FamilyRate], label: int, exclude: tuple[str, ...] = ()) -> tuple[float, int]:
    """(rate, rows) over the families with ``label`` (TPR for 1, FPR for 0)."""
    sel = [r for r in rates if r.label == label and r.family not in exclude]
    total = sum(r.total for r in sel)
    return sum(r.hits for r in sel) / max(total, 1), total
