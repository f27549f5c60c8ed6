"""Undo the obfuscations attackers use to slip instructions past pattern matching.

``normalize(text)`` returns one canonical form used by the injection patterns and the
classifier alike (the classifier is trained on normalised text, so both see the same
thing):

- Unicode NFKC (full-width ``ｉｇｎｏｒｅ`` -> ``ignore``, ligatures, compatibility forms);
- invisible characters removed: zero-width space/joiners, BOM, soft hyphen, bidi
  controls, variation selectors (every character of Unicode category ``Cf``);
- common Cyrillic/Greek homoglyphs mapped to their Latin look-alikes;
- lower case, whitespace runs collapsed to one space.

``deobfuscate(text)`` goes further, for pattern matching only: leetspeak digits and
symbols to letters (``1gn0r3`` -> ``ignore``) and letter-spaced words joined again
(``i g n o r e`` / ``i.g.n.o.r.e`` -> ``ignore``). Those two steps would damage benign
text (numbers, acronyms), so the classifier never sees them.

Pure Python, no heavy imports: about 10-30 us for a typical prompt.
"""

from __future__ import annotations

import re
import unicodedata

# Cyrillic / Greek letters that render like Latin ones (lower case; NFKC keeps them apart).
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a", "в": "b", "с": "c", "е": "e", "ё": "e", "һ": "h", "і": "i", "ј": "j",
        "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "ѕ": "s", "т": "t", "у": "y",
        "х": "x", "ԁ": "d", "ɡ": "g", "ӏ": "l",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    }
)

# Leetspeak: only applied by ``deobfuscate`` (digits matter in benign text).
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e"}
)

_WS = re.compile(r"\s+")
# Three or more single letters separated by one space or one punctuation mark:
# "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e", "i_g_n_o_r_e".
_SPACED = re.compile(r"(?<![^\W_])(?:[^\W_][ .\-_*]){2,}[^\W_](?![^\W_])")
_SEP = re.compile(r"[ .\-_*]")


def _drop_invisible(text: str) -> str:
    # Cf = format characters: ZWSP U+200B, ZWNJ, ZWJ, U+2060 word joiner, BOM, soft hyphen,
    # bidi overrides. Variation selectors are Mn but carry no text either.
    return "".join(
        ch
        for ch in text
        if unicodedata.category(ch) != "Cf" and not ("\ufe00" <= ch <= "\ufe0f")
    )


def normalize(text: str) -> str:
    """Canonical form for matching and classification (see the module docstring)."""
    if not text:
        return ""
    out = unicodedata.normalize("NFKC", text)
    if not out.isascii():
        out = _drop_invisible(out)
    out = out.lower()
    if not out.isascii():
        out = out.translate(_HOMOGLYPHS)
    return _WS.sub(" ", out).strip()


def _join_spaced(match: re.Match[str]) -> str:
    return _SEP.sub("", match.group(0))


def deobfuscate(normalized: str) -> str:
    """Leetspeak undone and letter-spaced words joined, on already-normalised text."""
    out = normalized.translate(_LEET)
    # Only ASCII letters are re-joined: CJK text has no spaces to remove.
    return _SPACED.sub(_join_spaced, out)
