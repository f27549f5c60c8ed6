"""Exact and near-duplicate detection (MinHash LSH over word 3-gram shingles, datasketch).

Per-document work (hash, MinHash signature) runs inside the Ray Data read stage; the
decision runs once on the driver over every document of the run plus the documents the
knowledge base already holds, so that it is global, not per block, and deterministic:
documents are visited in source order and a duplicate of an earlier (kept) one is dropped,
so the document whose source sorts first is always the one kept.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from llmops_ray.data.clean import tokens

NUM_PERM = 128
SHINGLE = 3
_SEED = 1
# Fixed explicitly: signatures are stored in the KB and compared by later ingests.
SCHEME = "affine32"


def normalised_for_hash(text: str) -> str:
    """Case, punctuation and whitespace folded away: what 'the same text' means for exact dedup."""
    return " ".join(tokens(text))


def content_hash(text: str) -> str:
    """sha256 (hex) of the normalised text."""
    return hashlib.sha256(normalised_for_hash(text).encode("utf-8")).hexdigest()


def shingles(text: str, n: int = SHINGLE) -> set[str]:
    """Word n-grams (a CJK character is a word); short texts give one shingle of all tokens."""
    toks = tokens(text)
    if len(toks) <= n:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)}


@functools.lru_cache(maxsize=4)
def _minhash_template(num_perm: int):
    """An empty MinHash; copies share its permutations (generating them costs ~1 ms each time)."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=_SEED, scheme=SCHEME)


def minhash_signature(text: str, num_perm: int = NUM_PERM) -> np.ndarray:
    """MinHash signature (uint32 values, shape (num_perm,)) of the text's shingles."""
    mh = _minhash_template(num_perm).copy()
    mh.update_batch([s.encode("utf-8") for s in sorted(shingles(text))])
    # datasketch keeps 32-bit hash values in a uint64 array.
    return mh.hashvalues.astype(np.uint32)


def signature_jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """Jaccard similarity estimated from two signatures of the same length."""
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    return float(np.mean(a_arr == b_arr))


@dataclass
class DedupItem:
    """One document as seen by the dedup decision."""

    key: str
    """Any unique id the caller uses to map decisions back (e.g. doc_id)."""
    source: str
    """Sort key: among duplicates the smallest source is kept."""
    hash: str
    """:func:`content_hash` of the document."""
    signature: Optional[Sequence[int]]
    """:func:`minhash_signature`, or None to skip near-duplicate detection for it."""


@dataclass
class DedupDecision:
    key: str
    reason: str
    """``duplicate`` (same normalised text) or ``near_duplicate`` (MinHash Jaccard >= threshold)."""
    kept_source: str
    similarity: float


def find_duplicates(items: Iterable[DedupItem], threshold: float = 0.8, num_perm: int = NUM_PERM) -> dict[str, DedupDecision]:
    """Decide which items are duplicates; returns ``key -> decision`` for the dropped ones only."""
    from datasketch import MinHash, MinHashLSH

    ordered = sorted(items, key=lambda it: (it.source, it.key))
    # Candidate generation uses a lower LSH threshold than the decision (fewer LSH false
    # negatives near the threshold); every candidate is then checked against ``threshold``.
    lsh = MinHashLSH(threshold=max(0.05, threshold * 0.8), num_perm=num_perm)
    # LSH reads only the hash values; sharing the template's permutations skips generating
    # them per document (half of this function's time on 10,000 documents).
    permutations = _minhash_template(num_perm).permutations
    by_hash: dict[str, DedupItem] = {}
    kept: dict[str, DedupItem] = {}
    dropped: dict[str, DedupDecision] = {}
    for item in ordered:
        first = by_hash.get(item.hash)
        if first is not None:
            dropped[item.key] = DedupDecision(item.key, "duplicate", first.source, 1.0)
            continue
        by_hash[item.hash] = item
        if item.signature is None or len(item.signature) != num_perm:
            kept[item.key] = item
            continue
        mh = MinHash(num_perm=num_perm, seed=_SEED, hashvalues=np.asarray(item.signature, dtype=np.uint64),
                     permutations=permutations, scheme=SCHEME)
        # LSH gives candidates; the estimated Jaccard decides (LSH alone has false positives).
        best: Optional[tuple[float, str]] = None
        for cand_key in lsh.query(mh):
            cand = kept[cand_key]
            sim = signature_jaccard(item.signature, cand.signature)
            if sim < threshold:
                continue
            if best is None or sim > best[0] or (sim == best[0] and cand.source < best[1]):
                best = (sim, cand.source)
        if best is not None:
            dropped[item.key] = DedupDecision(item.key, "near_duplicate", best[1], best[0])
            continue
        lsh.insert(item.key, mh)
        kept[item.key] = item
    return dropped
