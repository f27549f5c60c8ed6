"""PII detection and masking: emails, phones, payment cards, Chinese resident IDs, IPs, IBANs.

Used by the ingest pipeline (the original value never reaches the knowledge base) and by
serving (prompts and answers). Pure Python, no heavy imports: safe to call anywhere.

Numbers are validated, not just pattern-matched, so that order numbers and invoice ids are
not masked by accident: card numbers must pass the Luhn check, Chinese resident ID numbers
the ISO 7064 MOD 11-2 checksum, IBANs the ISO 13616 mod-97 check, IPs ``ipaddress``.

Digit boundaries use explicit look-arounds instead of ``\\b``: Python treats CJK characters
as word characters, so ``\\b`` never fires in ``电话13812345678``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Placeholder for each type; the order is the priority when two matches overlap.
PII_TYPES = ("EMAIL", "IBAN", "CN_ID", "CARD", "IP", "PHONE")


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
_EMAIL = re.compile(r"(?<![A-Za-z0-9_.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])")
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
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![0-9]|\.\d)"),
    # North American style: (555) 123-4567, 555-123-4567, 555.123.4567.
    re.compile(r"(?<![0-9])(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?![0-9])"),
]

_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def luhn_valid(number: str) -> bool:
    """Luhn checksum of a digit string (separators already removed)."""
    if not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


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
        for i in range(len(groups)):
            # Only sub-runs of at most 19 digits can be a card: at most 19 groups from i, so the
            # work is linear in the run's length (trying every end group was cubic: 1.4 s for
            # "123 " * 400).
            last, digits_so_far = i, 0
            while last < len(groups) and digits_so_far + groups[last][1] - groups[last][0] <= 19:
                digits_so_far += groups[last][1] - groups[last][0]
                last += 1
            for j in range(last, i, -1):
                part = groups[i:j]
                if len(part) > 1 and any(end - start < 3 for start, end in part):
                    continue
                digits = "".join(text[a:b] for a, b in part)
                if 13 <= len(digits) <= 19 and luhn_valid(digits):
                    start, end = part[0][0], part[-1][1]
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
    taken: list[PiiMatch] = []
    for match in ranked:
        if all(match.end <= t.start or match.start >= t.end for t in taken):
            taken.append(match)
    return sorted(taken, key=lambda m: m.start)


def mask_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace every PII span with a typed placeholder such as ``[EMAIL]``.

    Returns the masked text and the number of spans replaced per type (types with no
    match are absent from the dict).
    """
    matches = find_pii(text)
    if not matches:
        return text, {}
    counts: dict[str, int] = {}
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(f"[{m.type}]")
        counts[m.type] = counts.get(m.type, 0) + 1
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts), counts
