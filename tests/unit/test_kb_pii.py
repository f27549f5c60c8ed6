"""PII detection and masking: true cases, and validated numbers that must NOT be masked."""

from __future__ import annotations

import pytest

from llmops_ray.safety.pii import cn_id_valid, find_pii, iban_valid, luhn_valid, mask_pii


@pytest.mark.parametrize(
    "text,kind,value",
    [
        ("write to jane.doe+news@example.co.uk today", "EMAIL", "jane.doe+news@example.co.uk"),
        ("call +1 415 555 0132 now", "PHONE", "+1 415 555 0132"),
        ("office (555) 123-4567", "PHONE", "(555) 123-4567"),
        ("London +44 20 7946 0958.", "PHONE", "+44 20 7946 0958"),
        ("手机13812345678联系", "PHONE", "13812345678"),
        ("手机 +86 138-1234-5678", "PHONE", "+86 138-1234-5678"),
        ("card 4111 1111 1111 1111 ok", "CARD", "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004", "CARD", "5500-0000-0000-0004"),
        ("身份证号11010519491231002X。", "CN_ID", "11010519491231002X"),
        ("server 203.0.113.42 down", "IP", "203.0.113.42"),
        ("v6 2001:db8::8a2e:370:7334 up", "IP", "2001:db8::8a2e:370:7334"),
        ("pay GB82 WEST 1234 5698 7654 32 now", "IBAN", "GB82 WEST 1234 5698 7654 32"),
        ("iban DE89370400440532013000", "IBAN", "DE89370400440532013000"),
    ],
)
def test_finds_each_type(text, kind, value):
    matches = find_pii(text)
    assert [(m.type, m.value) for m in matches] == [(kind, value)]
    m = matches[0]
    assert text[m.start : m.end] == value


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",  # one digit off: not a card
        "ID 110105194912310021 has a wrong check digit",  # checksum fails: not an ID
        "iban GB82 WEST 1234 5698 7654 33 bad checksum",
        "order 2024-05-01 at 12:30:45, version 1.2.3, pi 3.14159",
        "temperature 20.5 and 0.2 degrees; model T3; 264 x 264 pixels",
        "invoice 123456 and ticket 98765",
        "not an ip 999.1.1.1",
    ],
)
def test_no_false_positives(text):
    assert find_pii(text) == []
    assert mask_pii(text) == (text, {})


def test_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")
    assert not cn_id_valid("110105194913310028")  # month 13
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")


def test_mask_counts_and_placeholders():
    text = (
        "Maria (maria@example.com, +1 415 555 0132) paid with 4111 1111 1111 1111; "
        "王先生 13812345678 身份证 11010519491231002X 路由器 203.0.113.42。"
    )
    masked, counts = mask_pii(text)
    assert counts == {"EMAIL": 1, "PHONE": 2, "CARD": 1, "CN_ID": 1, "IP": 1}
    for raw in ("maria@example.com", "555 0132", "4111", "13812345678", "11010519491231002X", "203.0.113.42"):
        assert raw not in masked
    assert "[EMAIL]" in masked and "[CN_ID]" in masked and "王先生 [PHONE]" in masked
    assert find_pii(masked) == []


def test_overlap_prefers_higher_priority():
    # A card number is not also reported as a phone number.
    matches = find_pii("4111-1111-1111-1111")
    assert [m.type for m in matches] == ["CARD"]


# Regressions found by the streaming-rail tests: each of these leaked before.
def test_email_right_after_chinese_text_is_masked():
    assert mask_pii("邮箱john@example.com")[0] == "邮箱[EMAIL]"


def test_card_after_another_number_is_found():
    masked, counts = mask_pii("192.168.1.20 4111 1111 1111 1111")
    assert masked == "[IP] [CARD]" and counts == {"IP": 1, "CARD": 1}


def test_phone_followed_by_an_ip_keeps_both():
    masked, counts = mask_pii("+44 20 7946 0958 10.0.0.254")
    assert masked == "[PHONE] [IP]" and counts == {"PHONE": 1, "IP": 1}


def _cards_exhaustive(text):
    """The card rule tried over every (start, end) pair of digit groups: the reference the
    bounded search must agree with."""
    import re

    from llmops_ray.safety.pii import _DIGIT_RUN, luhn_valid

    out = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [(g.start() + run.start(), g.end() + run.start()) for g in re.finditer(r"\d+", run.group(0))]
        for i in range(len(groups)):
            for j in range(len(groups), i, -1):
                part = groups[i:j]
                if len(part) > 1 and any(end - start < 3 for start, end in part):
                    continue
                digits = "".join(text[a:b] for a, b in part)
                if 13 <= len(digits) <= 19 and luhn_valid(digits):
                    out.append((part[0][0], part[-1][1]))
                    break
    return out


def test_card_search_is_bounded_and_finds_what_the_exhaustive_rule_finds():
    import random

    from llmops_ray.safety.pii import _card_candidates

    rng = random.Random(7)
    cards = ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011 0009 9013 9424"]
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(cards) if rng.random() < 0.2 else
                         "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6))))
        text = rng.choice([" ", "-", "  "]).join(parts)
        assert [(m.start, m.end) for m in _card_candidates(text)] == _cards_exhaustive(text), text


def test_phone_pattern_finds_what_the_backtracking_form_finds():
    # The international pattern's digit groups are atomic (linear); on random phone-like text
    # it reports the same values as the original backtracking form.
    import random
    import re

    from llmops_ray.safety.pii import _PHONES, _phone_ok

    backtracking = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![0-9]|\.\d)")
    pieces = ["+", "1", "2", "3", "12", "345", "6789", " ", "-", ".", "(", ")", "a", "+4", "0", "44", "\n"]
    rng = random.Random(11)
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 22)))
        ours = [(m.span(), m.group(0)) for m in _PHONES[1].finditer(text) if _phone_ok(m.group(0))]
        reference = [(m.span(), m.group(0)) for m in backtracking.finditer(text) if _phone_ok(m.group(0))]
        assert ours == reference, text


def test_overlap_resolution_matches_the_pairwise_rule():
    # find_pii keeps, by priority then length, every candidate that overlaps no kept one; the
    # occupancy scan must keep exactly what comparing with every kept span keeps.
    import random

    from llmops_ray.safety.pii import PII_TYPES, _candidates

    values = ["a@b.cc", "4111 1111 1111 1111", "192.168.1.20", "+1 415 555 0100", "13812345678",
              "11010519491231002X", "DE89370400440532013000", "2001:db8::1", "12", "-", " ", "."]
    rng = random.Random(3)
    priority = {t: i for i, t in enumerate(PII_TYPES)}
    for _ in range(500):
        text = "".join(rng.choice(values) + rng.choice(["", " ", "-", "."]) for _ in range(rng.randint(1, 12)))
        ranked = sorted(_candidates(text), key=lambda m: (priority[m.type], -(m.end - m.start), m.start))
        taken = []
        for m in ranked:
            if all(m.end <= t.start or m.start >= t.end for t in taken):
                taken.append(m)
        assert find_pii(text) == sorted(taken, key=lambda m: m.start), text


def test_email_with_percent_in_the_local_part_is_still_found():
    assert mask_pii("to %%user%tag@example.com, ok")[0] == "to [EMAIL], ok"
    assert mask_pii("%" * 5000 + " b@example.org")[0] == "%" * 5000 + " [EMAIL]"
