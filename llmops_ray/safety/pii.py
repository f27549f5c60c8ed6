"""PII detection and masking: emails, phones (mobile and landline), payment cards, Chinese
resident IDs, US social security numbers, passport numbers, IPs, IBANs.

Used by the ingest pipeline (the original value never reaches the knowledge base) and by
serving (prompts and answers). Pure Python, no heavy imports: safe to call anywhere.

Numbers are validated, not just pattern-matched, so that order numbers and invoice ids are
not masked by accident: card numbers must pass the Luhn check, Chinese resident ID numbers
the ISO 7064 MOD 11-2 checksum, IBANs the ISO 13616 mod-97 check, IPs ``ipaddress``, SSNs
the SSA's never-issued ranges, landlines a valid area-code shape. Formats with no checksum
(passport numbers, UnionPay cards that skip Luhn, unseparated SSNs) are only taken right
after a keyword naming them (``passport no.``, ``护照号码``, ``卡号``, ``SSN``), within a
bounded window, so every detector stays linear in the text.

Digit boundaries use explicit look-arounds instead of ``\\b``: Python treats CJK characters
as word characters, so ``\\b`` never fires in ``电话13812345678``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Placeholder for each type; the order is the priority when two matches overlap.
PII_TYPES = ("EMAIL", "IBAN", "CN_ID", "CARD", "SSN", "PASSPORT", "IP", "PHONE")


@dataclass(frozen=True)
class PiiMatch:
    """One PII span in a text: ``text[start:end] == value``."""

    type: str
    start: int
    end: int
    value: str


_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"

# The look-behind lists ASCII only: ``\w`` would also exclude CJK, missing ``邮箱a@b.com``.
# It excludes every character of the local part (``%`` included), so a match can only start
# where a run of local-part characters starts: otherwise each position of a long run
# (``"%" * 100_000``) was a start that scanned the rest of the run, quadratic (13 s).
_EMAIL = re.compile(r"(?<![A-Za-z0-9_.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])")
# Country code + check digits + 11..30 alphanumerics, optionally in groups of four.
_IBAN = re.compile(_NOT_ALNUM_BEFORE + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}" + _NOT_ALNUM_AFTER)
_CN_ID = re.compile(r"(?<![0-9])\d{17}[\dXx]" + _NOT_ALNUM_AFTER)
# A run of digit groups separated by single spaces or dashes; card candidates are the
# sub-runs of whole groups with 13-19 digits (see _card_candidates).
_DIGIT_RUN = re.compile(r"(?<![0-9+])\d+(?:[ -]\d+)*(?![0-9])")
_IPV4 = re.compile(r"(?<![0-9.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![0-9]|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_PHONES = [
    # Chinese mobile: 1[3-9]x xxxx xxxx, optional +86 / 86 prefix, optional spaces/dashes.
    re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?![0-9])"),
    # International: +CC then 6..14 more digits in groups separated by space, dash, dot or ().
    # It must not end inside a following dotted number (an IP): "+44 20 7946 0958 10.0.0.1".
    # Each group takes all the digits it can (up to 4) and never gives them back: the
    # look-ahead + back-reference is an atomic ``\d{1,4}`` (Python 3.10 has no ``\d{1,4}+``).
    # Splitting a long digit run every possible way made each "+" followed by too many
    # digits cost thousands of steps (0.7 s per 100 KB of "+1222..."); the values found are
    # the same (checked against the backtracking form on random phone-like text).
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?(?=(\d{1,4}))\1\)?){2,5}(?![0-9]|\.\d)"),
    # North American style: (555) 123-4567, 555-123-4567, 555.123.4567.
    re.compile(r"(?<![0-9])(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?![0-9])"),
]

# Landlines with an area code (issue 18). Chinese: 0 + area code (010, 02x, or 0 + three
# digits from 3-9), optional parentheses (ASCII or full-width), then a 7-8 digit subscriber
# number that never starts with 0 or 1, optionally split in two (4-4, 3-4, 4-3). UK/EU-style: 0 + 2-4 digit
# area code and a separated subscriber part ("020 7946 0958", "(0161) 496 0000"): 10-11 digits.
# North American: "415 555 0100" (spaces; the dash/dot/paren forms are in _PHONES).
_LANDLINES = [
    re.compile(r"(?<![0-9])(?:[(（]0(?:10|2\d|[3-9]\d\d)[)）] ?|0(?:10|2\d|[3-9]\d\d)[ -]?)[2-9]\d{2,3}[ -]?\d{3,4}"
               r"(?:[-转]\d{1,5})?(?![0-9])"),
    re.compile(r"(?<![0-9])(?:\(0\d{2,4}\) ?|0\d{2,4} )\d{3,4}[ -]?\d{3,4}(?![0-9]|[.-]\d)"),
    re.compile(r"(?<![0-9-])[2-9]\d{2} [2-9]\d{2} \d{4}(?![0-9]| \d)"),
]
# US social security number: 3-2-4 digits with dashes or spaces (never-issued ranges excluded
# by _ssn_ok), or nine digits right after the word SSN / social security number.
_SSN = re.compile(r"(?<![0-9-])\d{3}([- ])\d{2}\1\d{4}(?![0-9]|-\d)")
_SSN_KEYWORD = re.compile(r"(?i:\bssn|social security(?: number| no\.?| #)?|社会安全号码?)"
                          r"(?:[ \t:：#.]|(?i:is|was)\b|是|为){0,6}(\d{9})(?![0-9])")
# Passport numbers: 1-2 letters + 6-8 digits (China E12345678, EA1234567; UK/DE/FR styles) or
# 9 digits (US), after "passport" / "护照" and an optional "no." / "number" / "号码". Every
# repetition is bounded: linear.
_PASSPORT = re.compile(
    r"(?i:passport|护照)(?:[ \t:：#.,，]|(?i:no|number|num|nr|id)\b|号码|号|编号|是|为){0,6}"
    r"(?<![A-Za-z0-9])([A-Za-z]{1,2}\d{6,8}|\d{9})(?![0-9A-Za-z])")
# A card number named as such ("卡号", "银行卡", "card number"): 16-19 digits (UnionPay cards
# do not all pass Luhn), optionally in groups of 4 separated by spaces or dashes.
_CARD_KEYWORD = re.compile(
    r"(?i:卡号|银行卡|信用卡|借记卡|储蓄卡|card (?:number|no\.?|#))[^0-9\n]{0,8}?"
    r"(?<![0-9])((?:\d{4}[ -]?){3}\d{4}(?:[ -]?\d{1,3})?)(?![0-9])")

_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


# Luhn: a doubled digit d contributes 2d, minus 9 when that has two digits.
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(number: str) -> bool:
    """Luhn checksum of a digit string (separators already removed)."""
    if not number.isdigit():
        return False
    if not number.isascii():  # other scripts' digits (``\d`` matches them): their values
        number = "".join(str(int(ch)) for ch in number)
    # On bytes, from the right: the card search calls this for every candidate sub-run, and
    # this form is 2x faster than a per-character loop.
    rev = number[::-1].encode()
    plain = rev[0::2]
    return (sum(plain) - 48 * len(plain) + sum(_LUHN_DOUBLED[b - 48] for b in rev[1::2])) % 10 == 0


def cn_id_valid(number: str) -> bool:
    """Checksum (ISO 7064 MOD 11-2) and plausible birth date of an 18-character Chinese ID."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    month, day = int(number[10:12]), int(number[12:14])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == number[17].upper()


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces removed)."""
    iban = iban.replace(" ", "").upper()
    if not (15 <= len(iban) <= 34) or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def _phone_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 7 <= len(digits) <= 15


def _ssn_ok(value: str) -> bool:
    """Never-issued SSNs: area 000, 666 or 900-999, group 00, serial 0000."""
    digits = re.sub(r"\D", "", value)
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _landline_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 10 <= len(digits) <= 16


def _ipv6_ok(value: str) -> bool:
    if value.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", value):
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _card_candidates(text: str) -> list[PiiMatch]:
    """Luhn-valid card numbers inside runs of digit groups.

    Every start group is tried (longest valid sub-run first), so a card that follows
    another number ("192.168.1.20 4111 1111 1111 1111") is still found. In a grouped run
    each group must have at least 3 digits, as printed card numbers do (4-4-4-4, 4-6-5).
    """
    found: list[PiiMatch] = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [(g.start() + run.start(), g.end() + run.start()) for g in re.finditer(r"\d+", run.group(0))]
        # The run's digits without separators; group g's digits are all_digits[offset[g]:offset[g + 1]].
        all_digits = "".join(text[a:b] for a, b in groups)
        offset = [0]
        for a, b in groups:
            offset.append(offset[-1] + b - a)
        for i in range(len(groups)):
            # Ends k of the sub-runs groups[i..k] that may be a card, shortest first. Only sub-runs
            # of at most 19 digits qualify, so at most 19 groups are looked at from each start:
            # linear in the run's length (trying every end group was cubic: 1.4 s for
            # "123 " * 400). A group of fewer than 3 digits ends the search: every longer
            # sub-run would contain it.
            ends: list[int] = []
            digits_so_far = 0
            first_len = groups[i][1] - groups[i][0]
            for k in range(i, len(groups)):
                length = groups[k][1] - groups[k][0]
                if digits_so_far + length > 19 or (k > i and (length < 3 or first_len < 3)):
                    break
                digits_so_far += length
                if digits_so_far >= 13:
                    ends.append(k)
            for k in reversed(ends):  # the longest valid sub-run wins
                if luhn_valid(all_digits[offset[i] : offset[k + 1]]):
                    start, end = groups[i][0], groups[k][1]
                    found.append(PiiMatch("CARD", start, end, text[start:end]))
                    break
    return found


def _candidates(text: str) -> list[PiiMatch]:
    found: list[PiiMatch] = []

    def add(kind: str, pattern: re.Pattern[str], check=None) -> None:
        for m in pattern.finditer(text):
            value = m.group(0)
            if check is None or check(value):
                found.append(PiiMatch(kind, m.start(), m.end(), value))

    add("EMAIL", _EMAIL)
    add("IBAN", _IBAN, iban_valid)
    add("CN_ID", _CN_ID, cn_id_valid)
    found.extend(_card_candidates(text))
    add("IP", _IPV4)
    add("IP", _IPV6, _ipv6_ok)
    for pattern in _PHONES:
        add("PHONE", pattern, _phone_ok)
    for pattern in _LANDLINES:
        add("PHONE", pattern, _landline_ok)
    add("SSN", _SSN, _ssn_ok)

    def add_group(kind: str, pattern: re.Pattern[str], check=None) -> None:
        # Only the value (group 1) is the span: the keyword before it stays readable.
        for m in pattern.finditer(text):
            if check is None or check(m.group(1)):
                found.append(PiiMatch(kind, m.start(1), m.end(1), m.group(1)))

    add_group("SSN", _SSN_KEYWORD, _ssn_ok)
    add_group("PASSPORT", _PASSPORT)
    add_group("CARD", _CARD_KEYWORD)
    return found


def find_pii(text: str) -> list[PiiMatch]:
    """All PII spans in ``text``, sorted by position, without overlaps.

    When two candidates overlap, the higher-priority type (order of :data:`PII_TYPES`)
    wins, then the longer span: a valid card number is not also reported as a phone.
    """
    if not text:
        return []
    priority = {t: i for i, t in enumerate(PII_TYPES)}
    ranked = sorted(_candidates(text), key=lambda m: (priority[m.type], -(m.end - m.start), m.start))
    # One byte per character, set where a taken span lies: the overlap test of a candidate
    # costs its own length (a C-level scan), so the whole selection is linear in the text.
    # Comparing each candidate with every span taken so far was quadratic in the number of
    # values: 8.5 s for 100 KB of "a@b.cc ".
    occupied = bytearray(len(text))
    taken: list[PiiMatch] = []
    for match in ranked:
        if occupied.find(1, match.start, match.end) == -1:
            occupied[match.start : match.end] = b"\x01" * (match.end - match.start)
            taken.append(match)
    return sorted(taken, key=lambda m: m.start)


#: Characters before a value that a keyword-anchored detector (passport, SSN, card keyword)
#: looks at: a stream masks each released piece with this much already-released context.
KEYWORD_CONTEXT_CHARS = 48
#: Any keyword a keyword-anchored detector starts with: only context holding one needs more
#: than one character (a longer context re-scans it with every streamed piece).
KEYWORD_HINT = re.compile(r"(?i:passport|ssn|social security|card)|护照|卡|社会安全")


def mask_pii_after(text: str, start: int) -> tuple[str, dict[str, int]]:
    """``mask_pii(text)`` restricted to ``text[start:]``: ``text[:start]`` is context only.

    Values that begin before ``start`` are not touched (they belong to the context).
    """
    counts: dict[str, int] = {}
    parts: list[str] = []
    pos = start
    for m in find_pii(text):
        if m.start < start:
            continue
        parts.append(text[pos : m.start])
        parts.append(f"[{m.type}]")
        counts[m.type] = counts.get(m.type, 0) + 1
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts), counts


def mask_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace every PII span with a typed placeholder such as ``[EMAIL]``.

    Returns the masked text and the number of spans replaced per type (types with no
    match are absent from the dict).
    """
    return mask_pii_after(text, 0)
