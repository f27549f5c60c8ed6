"""Text normalisation and the document quality filter.

``clean_text`` keeps structure (headings, lists, paragraphs) because the chunker splits on
it; it only repairs what extraction breaks: Unicode forms, control characters, runs of
spaces, and lines wrapped in the middle of a sentence (PDF and hard-wrapped text files).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Optional

from pydantic import Field

from llmops_ray.config import StrictModel

CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Tokens for shingling and quality: latin words/numbers, or single CJK characters.
TOKEN_RE = re.compile(r"[0-9A-Za-z\u00c0-\u024f]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u3000]+")
# A line that starts a block of its own and must not be joined to the previous line.
_BLOCK_START_RE = re.compile(r"^(#{1,6}\s|[-*+]\s|\d+[.)]\s|>|\||```|[A-Z][A-Za-z ]{0,40}:$)")
_NON_SPACE_RE = re.compile(r"\S")
_LETTER_RE = re.compile(r"[^\W\d_]")
_SENTENCE_END = tuple(".!?:;。！？；：…\"'”’)）]")


class QualityConfig(StrictModel):
    """Thresholds of the quality filter; a document failing one is dropped with that reason."""

    min_tokens: int = Field(12, ge=0)
    """Fewer words (a CJK character counts as one) than this: reason ``too_short``."""
    min_alpha_ratio: float = Field(0.5, ge=0.0, le=1.0)
    """Share of letters/CJK characters among non-space characters below this: ``low_alpha``."""
    max_repetition: float = Field(0.7, ge=0.0, le=1.0)
    """Share of repeated word 3-grams above this (texts of 20+ 3-grams): ``repetitive``."""


def is_cjk(ch: str) -> bool:
    return bool(CJK_RE.match(ch))


def tokens(text: str) -> list[str]:
    """Lower-cased words and single CJK characters (for shingles and quality measures)."""
    return [t.lower() for t in TOKEN_RE.findall(text)]


def _wrap_separator(prev: str, line: str) -> Optional[str]:
    """What joins ``line`` to ``prev`` when it continues a sentence wrapped across lines.

    ``""`` (Chinese halves), ``" "`` (words), ``"-"`` (a hyphenated word: drop the hyphen), or
    None when ``line`` starts a line of its own. Only the start of ``prev`` (block markers, at
    most 42 characters) and its last two characters matter, so a long line is passed as a
    short view of both ends.
    """
    if not prev or not line or _BLOCK_START_RE.match(line) or _BLOCK_START_RE.match(prev):
        return None
    if prev.endswith("-") and len(prev) > 1 and prev[-2].isalpha() and line[0].islower():
        return "-"  # "infor-" + "mation" -> "information"
    if prev.endswith(_SENTENCE_END):
        return None
    if is_cjk(prev[-1]) and is_cjk(line[0]):
        return ""  # Chinese has no spaces between wrapped halves
    if line[0].islower() or line[0].isdigit() or (prev[-1].isalnum() and line[0].isalpha()):
        return " "
    return None


class _MergedLine:
    """A line rebuilt from wrapped pieces and joined once at the end: linear in its length
    (joining as it goes copied the whole line per piece, quadratic for hard-wrapped files)."""

    _HEAD = 64  # longer than any block marker; a view this long never matches the ``:$`` rule

    def __init__(self, first: str):
        self.pieces = [first]
        self.head = first[: self._HEAD]
        self.tail = first[-3:]
        self.size = len(first)

    def view(self) -> str:
        """The line itself when short, else its first 64 and last 2 characters."""
        return self.head if self.size <= self._HEAD else self.head + self.tail[-2:]

    def append(self, sep: str, line: str) -> None:
        if sep == "-":
            self.pieces[-1] = self.pieces[-1][:-1]
            self.tail, self.size, sep = self.tail[:-1], self.size - 1, ""
        self.pieces += [sep, line]
        self.tail = (self.tail + sep + line)[-3:]
        self.size += len(sep) + len(line)
        if self.size <= self._HEAD or len(self.head) < self._HEAD:
            self.head = "".join(self.pieces)[: self._HEAD]

    def text(self) -> str:
        return "".join(self.pieces)


def _merge_wrapped(lines: list[str]) -> list[str]:
    """Consecutive non-empty lines with wrapped sentences joined back together."""
    merged: list[_MergedLine] = []
    for line in lines:
        sep = _wrap_separator(merged[-1].view(), line) if merged else None
        if sep is None:
            merged.append(_MergedLine(line))
        else:
            merged[-1].append(sep, line)
    return [m.text() for m in merged]


def clean_text(text: str) -> str:
    """NFKC, control characters removed, spaces collapsed, broken line wraps repaired.

    Paragraphs (blank-line separated) and block lines (headings, list items, tables) are
    kept; at most one blank line separates paragraphs.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_RE.sub("", text)
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [_SPACES_RE.sub(" ", ln).strip() for ln in block.split("\n")]
        lines = [ln for ln in lines if ln]
        merged = _merge_wrapped(lines)
        if merged:
            paragraphs.append("\n".join(merged))
    return "\n\n".join(paragraphs)


def quality_reason(text: str, config: QualityConfig | None = None) -> Optional[str]:
    """Why ``text`` fails the quality filter (``too_short``, ``low_alpha``, ``repetitive``), or None."""
    config = config or QualityConfig()
    toks = tokens(text)
    if len(toks) < config.min_tokens:
        return "too_short"
    visible = len(_NON_SPACE_RE.findall(text))
    alpha = len(_LETTER_RE.findall(text))  # letters of any script, CJK included
    if not visible or alpha / visible < config.min_alpha_ratio:
        return "low_alpha"
    grams = [tuple(toks[i : i + 3]) for i in range(len(toks) - 2)]
    if len(grams) >= 20:
        repeated = 1.0 - len(set(grams)) / len(grams)
        if repeated > config.max_repetition:
            return "repetitive"
    return None


def detect_lang(text: str) -> str:
    """``zh`` when CJK characters make up a third of the tokens, else ``en`` (enough for filters)."""
    toks = TOKEN_RE.findall(text[:5000])
    if not toks:
        return "unknown"
    cjk = sum(1 for t in toks if is_cjk(t[0]))
    return "zh" if cjk / len(toks) >= 0.33 else "en"
