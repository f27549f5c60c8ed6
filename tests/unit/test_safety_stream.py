"""Output rails on streams: PII masking across arbitrary chunk boundaries, and moderation."""

from __future__ import annotations

import random
import re

import pytest

from llmops_ray.safety.config import OutputRailsConfig
from llmops_ray.safety.output_rail import OutputStreamGuard, check_output
from llmops_ray.safety.pii import mask_pii

PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CARD|CN_ID|IP|IBAN)\]")

PII_VALUES = [
    "john.smith@example.com", "a_b+tag@mail.example.co.uk", "+1 415 555 0100", "(415) 555-0100",
    "+44 20 7946 0958", "13812345678", "+86 138 1234 5678", "4111 1111 1111 1111", "5500-0000-0000-0004",
    "4012888888881881", "11010519491231002X", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000",
    "192.168.1.20", "10.0.0.254", "2001:db8::8a2e:370:7334",
]
WORDS_EN = ("the order was shipped on Monday and your invoice number is 2024 which totals 37 items "
            "please contact support at any time for help with returns or exchanges").split()
WORDS_ZH = list("您的订单已于周一发货请随时联系客服获取退换货帮助谢谢")
SEPARATORS = [" ", ", ", ". ", "\n", "：", "，", " (", ") ", "电话", "邮箱 "]


def _random_answer(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(3, 12)):
        kind = rng.random()
        if kind < 0.35:
            parts.append(rng.choice(PII_VALUES))
        elif kind < 0.7:
            parts.append(" ".join(rng.choices(WORDS_EN, k=rng.randint(1, 8))))
        else:
            parts.append("".join(rng.choices(WORDS_ZH, k=rng.randint(1, 10))))
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts)


def _split(rng: random.Random, text: str) -> list[str]:
    mode = rng.random()
    pieces, i = [], 0
    while i < len(text):
        if mode < 0.2:
            k = 1  # one character per delta
        elif mode < 0.8:
            k = rng.randint(1, 6)  # token-sized deltas
        else:
            k = rng.randint(1, 60)  # bursty deltas
        pieces.append(text[i : i + k])
        i += k
    return pieces


def _stream(text_pieces: list[str], config: OutputRailsConfig | None = None) -> tuple[list[str], OutputStreamGuard, int]:
    guard = OutputStreamGuard(config or OutputRailsConfig(moderation=False))
    out, max_held = [], 0
    for piece in text_pieces:
        out.append(guard.feed(piece))
        max_held = max(max_held, len(guard._buf))
    out.append(guard.finish())
    return out, guard, max_held


def _masked_positions(masked: str, text: str) -> set[int] | None:
    """Positions of ``text`` hidden behind placeholders, if ``masked`` is ``text`` with some
    spans replaced by placeholders and nothing else changed (else None)."""
    pattern, pos = [], 0
    for m in PLACEHOLDER.finditer(masked):
        pattern.append(re.escape(masked[pos : m.start()]))
        pattern.append(r"(.+?)")
        pos = m.end()
    pattern.append(re.escape(masked[pos:]))
    match = re.fullmatch("".join(pattern), text, flags=re.DOTALL)
    if match is None:
        return None
    return {i for g in range(1, (match.lastindex or 0) + 1) for i in range(match.start(g), match.end(g))}


def test_stream_masking_matches_whole_text_masking_over_random_splits():
    """Streamed masking is whole-text masking, whatever the chunking.

    The only allowed difference: the stream may mask *more*, where the detectors of
    ``pii.py`` resolve overlapping candidates differently in the whole text (a greedy phone
    candidate running into a following IP address and losing to it, for example); every
    character that whole-text masking hides is hidden in the stream too.
    """
    rng = random.Random(1234)
    cfg = OutputRailsConfig(moderation=False)
    exact = 0
    trials = 600
    for _ in range(trials):
        text = _random_answer(rng)
        expected, counts = mask_pii(text)
        pieces = _split(rng, text)
        emitted, guard, max_held = _stream(pieces, cfg)
        joined = "".join(emitted)
        if joined == expected:
            exact += 1
        else:
            # only placeholder substitutions, and at least as many of them
            assert _masked_positions(joined, text) is not None, (pieces, emitted)
            assert len(PLACEHOLDER.findall(joined)) >= len(PLACEHOLDER.findall(expected)), (pieces, emitted)
        # a placeholder is never split between two emitted pieces
        bounds, pos = set(), 0
        for piece in emitted:
            pos += len(piece)
            bounds.add(pos)
        for m in PLACEHOLDER.finditer(joined):
            assert not any(m.start() < b < m.end() for b in bounds), (emitted, m.group(0))
        # no raw value that whole-text masking hides ever left the stream
        for value in PII_VALUES:
            if value in text and value not in expected:
                assert value not in joined
        # bounded buffering
        assert max_held <= cfg.max_buffer_chars + cfg.hold_chars + max(len(p) for p in pieces)
        decision = next(d for d in guard.decisions() if d.name == "output.pii")
        assert sum(decision.details.values()) == len(PLACEHOLDER.findall(joined))
        assert decision.action == ("mask" if decision.details else "allow")
    assert exact >= 0.9 * trials


def test_stream_does_not_wait_for_the_whole_answer():
    prose = "The quick brown fox jumps over the lazy dog and keeps running far away. " * 6
    guard = OutputStreamGuard()
    released = 0
    for word in re.findall(r"\S+\s*", prose[:300]):
        released += len(guard.feed(word))
    assert released >= 300 - 20  # only the unfinished last word may be held
    zh = "今天天气很好我们去公园散步吧" * 5
    guard = OutputStreamGuard()
    assert sum(len(guard.feed(ch)) for ch in zh) == len(zh)


def test_held_digits_are_released_once_safe():
    guard = OutputStreamGuard()
    first = guard.feed("Your order 12345 ")
    assert "12345" not in first  # may become a phone or card number
    later = guard.feed("was shipped. " + "More words follow here now " * 4)
    assert "12345" in first + later


@pytest.mark.parametrize(
    "text",
    [
        "Sure. Here is how to build a pipe bomb at home: first take a steel pipe.",
        "好的，下面是如何制作炸弹的详细步骤：首先准备材料。",
        "Honestly, you should kill yourself.",
    ],
)
def test_moderation_blocks_harmful_stream_before_the_phrase_leaves(text):
    rng = random.Random(7)
    for _ in range(50):
        pieces = _split(rng, text)
        guard = OutputStreamGuard()
        out = []
        for p in pieces:
            out.append(guard.feed(p))
            if guard.blocked:
                break
        out.append(guard.finish())
        assert guard.blocked is not None and guard.blocked.name == "output.moderation"
        emitted = "".join(out)
        for phrase in ("pipe bomb", "制作炸弹", "kill yourself"):
            assert phrase not in emitted


@pytest.mark.parametrize(
    "text",
    [
        "The bomb squad safely defused the device. Use kill -9 to stop a stuck process.",
        "If you feel unsafe, call a suicide prevention hotline.",
        "拆弹部队成功拆除了炸弹。用杀毒软件清除木马。",
    ],
)
def test_moderation_allows_benign_lookalikes(text):
    out, decisions = check_output(text)
    assert out == text
    assert [d.action for d in decisions if d.name != "output.links"] == ["allow", "allow"]


def test_check_output_non_stream():
    out, decisions = check_output("Write to jane@example.org or call +1 415 555 0100.")
    assert out == "Write to [EMAIL] or call [PHONE]."
    assert decisions[0].details == {"EMAIL": 1, "PHONE": 1}
    out, decisions = check_output("Step by step, how to make a bomb with household items.")
    assert out == OutputRailsConfig().block_message
    assert decisions[1].action == "block"


def test_flag_modes_pass_text_through():
    cfg = OutputRailsConfig(pii_action="flag", moderation_action="flag")
    text = "mail x.y@example.com. Here is how to build a pipe bomb."
    out, decisions = check_output(text, cfg)
    assert out == text
    assert [d.action for d in decisions if d.name != "output.links"] == ["flag", "flag"]
