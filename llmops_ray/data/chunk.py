"""Recursive, structure-aware chunking measured in the embedding model's tokens.

A text longer than ``size`` tokens is split on the strongest boundary it contains:
headings, then paragraphs, then lines, then sentences (``. ! ?`` and Chinese ``。！？；``),
then clauses, then words (a CJK character is a word). Pieces are then packed greedily back
into chunks of at most ``size`` tokens; a new chunk starts with the last ``overlap`` tokens
worth of pieces of the previous one (never across a heading). No chunk exceeds ``size``
tokens, so no document becomes one oversized chunk that the embedder would truncate.

Token counts come from a ``count`` function (a batch of texts -> token counts), normally
:func:`tokenizer_counter` over the embedding model's own tokenizer.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Sequence

Counter = Callable[[Sequence[str]], list[int]]

_HEADING_SPLIT = re.compile(r"(?m)(?=^#{1,6}\s)")
_HEADING_START = re.compile(r"^#{1,6}\s")
# Each pattern captures its separator so that pieces + separators rebuild the text exactly.
_SPLITTERS = [
    re.compile(r"(\n\s*\n)"),
    re.compile(r"(\n)"),
    # NFKC turns Chinese ！？；，： into ASCII, so also split after ASCII marks that follow a
    # CJK character without a space.
    re.compile(r"((?<=[.!?])\s+|(?<=[。！？；])|(?<=[\u3400-\u9fff][!?;])(?!\s))"),
    re.compile(r"((?<=[,;:])\s+|(?<=[，、：])|(?<=[\u3400-\u9fff][,:])(?!\s))"),
]
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]\s*|[^\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+\s*|\s+")


def whitespace_counter(texts: Sequence[str]) -> list[int]:
    """Rough counter (words and CJK characters); for callers without a tokenizer."""
    from llmops_ray.data.clean import tokens

    return [max(len(tokens(t)), 1 if t.strip() else 0) for t in texts]


@functools.lru_cache(maxsize=4)
def tokenizer_counter(model_path: str) -> Counter:
    """Token counter of a sentence-transformers / Hugging Face model's tokenizer (cached per process).

    Uses the Rust ``tokenizers`` library directly when the model ships ``tokenizer.json``:
    it loads in milliseconds and keeps the chunking tasks small (no ``transformers`` import).
    """
    from pathlib import Path

    tokenizer_file = Path(model_path) / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(tokenizer_file))
        fast.no_truncation()
        fast.no_padding()

        def count_fast(texts: Sequence[str]) -> list[int]:
            if not texts:
                return []
            return [len(e.ids) for e in fast.encode_batch(list(texts), add_special_tokens=False)]

        return count_fast

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.model_max_length = 1 << 30  # we count long texts on purpose; silence the length warning

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in enc["input_ids"]]

    return count


def _split_with(pattern: re.Pattern[str], text: str) -> list[str]:
    parts = pattern.split(text)
    # parts = [piece, sep, piece, sep, ..., piece]; attach each separator to its piece.
    pieces = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [p for p in pieces if p]


def _hard_split(text: str, size: int, count: Counter) -> list[str]:
    words = _WORD.findall(text)
    counts = count(words)
    out: list[str] = []
    current: list[str] = []
    total = 0
    for word, n in zip(words, counts):
        if current and total + n > size:
            out.append("".join(current))
            current, total = [], 0
        if n > size:  # one "word" longer than a chunk (a URL, a base64 blob): cut by characters
            step = max(1, len(word) * size // n)
            out.extend(word[i : i + step] for i in range(0, len(word), step))
            continue
        current.append(word)
        total += n
    if current:
        out.append("".join(current))
    return out


def _split_recursive(text: str, size: int, count: Counter, level: int) -> list[tuple[str, int]]:
    """Pieces of ``text`` with their token counts, each at most ``size`` tokens."""
    n = count([text])[0]
    if n <= size:
        return [(text, n)]
    if level >= len(_SPLITTERS):
        pieces = _hard_split(text, size, count)
        return list(zip(pieces, count(pieces)))
    pieces = _split_with(_SPLITTERS[level], text)
    if len(pieces) <= 1:
        return _split_recursive(text, size, count, level + 1)
    out: list[tuple[str, int]] = []
    for piece in pieces:
        out.extend(_split_recursive(piece, size, count, level + 1))
    return out


def chunk_text(text: str, size: int = 200, overlap: int = 30, count: Counter | None = None) -> list[str]:
    """Split ``text`` into chunks of at most ``size`` tokens with about ``overlap`` tokens of overlap."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    if not 0 <= overlap < size:
        raise ValueError("overlap must be >= 0 and smaller than the chunk size")
    count = count or whitespace_counter
    text = text.strip()
    if not text:
        return []
    # (piece, tokens, starts_section): sections first so that headings are hard boundaries.
    pieces: list[tuple[str, int, bool]] = []
    for section in [s for s in _HEADING_SPLIT.split(text) if s.strip()]:
        for i, (piece, n) in enumerate(_split_recursive(section, size, count, 0)):
            pieces.append((piece, n, i == 0 and bool(_HEADING_START.match(section))))

    chunks: list[str] = []
    current: list[tuple[str, int]] = []
    total = 0
    min_section_chunk = size // 4

    def flush() -> None:
        body = "".join(p for p, _ in current).strip()
        if body:
            chunks.append(body)

    for piece, n, new_section in pieces:
        if current and new_section and total >= min_section_chunk:
            flush()
            current, total = [], 0
        elif current and total + n > size:
            flush()
            # Carry trailing pieces (sentences) of the previous chunk as overlap.
            carried: list[tuple[str, int]] = []
            carried_total = 0
            for prev, pn in reversed(current):
                if carried_total + pn > overlap or carried_total + pn + n > size:
                    break
                carried.insert(0, (prev, pn))
                carried_total += pn
            current, total = carried, carried_total
        current.append((piece, n))
        total += n
    if current:
        flush()
    return chunks


def chunk_parent_child(text: str, parent_size: int, size: int = 200, overlap: int = 30,
                       count: Counter | None = None) -> list[tuple[int, str, str]]:
    """Parent-child chunks: ``(parent index, parent text, child text)`` in document order.

    Parents are the text's sections (headings are hard boundaries, as in :func:`chunk_text`),
    a section longer than ``parent_size`` tokens split into pieces of at most that, without
    overlap; children are each parent chunked at ``size`` / ``overlap``, so a child never
    straddles two parents. Search ranks the small children (precise); the generator reads
    their parent (enough context around the match).
    """
    if parent_size < size:
        raise ValueError("parent_size must be at least the (child) chunk size")
    out: list[tuple[int, str, str]] = []
    for p, parent in enumerate(chunk_text(text, parent_size, 0, count)):
        for child in chunk_text(parent, size, overlap, count):
            out.append((p, parent, child))
    return out
