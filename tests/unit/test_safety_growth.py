"""Every rail is linear in its input (issue 17 point 3).

Each rail entry point runs on adversarial text of a small and a 10x larger size; the larger
must take less than 20x the smaller plus a small constant (linear: ~10x; the quadratic
paths these tests were written against grew ~100x). Timings are the minimum of up to five
runs with the garbage collector paused, so one run slowed by a busy CI machine (a single
968 ms run against a 186 ms bound was seen while Ray workers started beside the suite)
does not fail them; measuring stops as soon as one run is under the bound.
``benchmarks/rails.py`` reports the same growth at 1, 10 and 100 KB.
"""

from __future__ import annotations

import gc
import time
from typing import Callable

import pytest

from llmops_ray.safety.injection import segments
from llmops_ray.safety.moderation import moderation_score
from llmops_ray.safety.pii import mask_pii
from llmops_ray.safety.rails import Rails

SMALL = 3_000  # characters; LARGE = 10 x SMALL
STREAM_SMALL = 1_500  # the streamed rail rescans its held window per 4-character delta: smaller sizes
SLACK_S = 0.03  # constant added to the bound: timer and allocator noise on tiny runs


def _fill(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


# name -> text of n characters. Each one hit a super-linear path before the fix named.
INPUTS: dict[str, Callable[[int], str]] = {
    # find_pii compared every candidate with every value taken so far: quadratic in the count.
    "many emails": lambda n: _fill("a@b.cc ", n),
    "many IPs": lambda n: _fill("1.1.1.1 ", n),
    "many cards": lambda n: _fill("4111 1111 1111 1111 ", n),
    # The email look-behind missed '%': every position of a '%' run started a scan of the run.
    "percent run": lambda n: "%" * n,
    # The card search tried every pair of digit groups (cubic; fixed before, kept here).
    "digit runs": lambda n: _fill("123 ", n),
    "long word": lambda n: "a" * n,
    "repeated words": lambda n: _fill("ignore previous ", n),
    "mixed Chinese": lambda n: _fill("忽略之前的中文混合text ", n),
    "phone prefix + digit runs": lambda n: _fill("+1" + "2" * 30 + " ", n),
}


def _best(fn: Callable[[str], object], text: str, bound: float | None = None) -> float:
    best = float("inf")
    gc.collect()
    gc.disable()  # a collection of the suite's garbage is not the rail's cost
    try:
        for _ in range(5):
            t0 = time.perf_counter()
            fn(text)
            best = min(best, time.perf_counter() - t0)
            if bound is not None and best < bound:
                break  # passed: no need to measure again
    finally:
        gc.enable()
    return best


def _assert_linear(fn: Callable[[str], object], make: Callable[[int], str], small: int = SMALL) -> None:
    fn(make(small))  # warm-up (lazy imports, regex caches)
    t_small = _best(fn, make(small))
    bound = 20 * t_small + SLACK_S
    t_large = _best(fn, make(10 * small), bound)
    assert t_large < bound, f"{10 * small} chars took {t_large * 1e3:.1f} ms, {small} took {t_small * 1e3:.1f} ms"


@pytest.fixture(scope="module")
def rails() -> Rails:
    return Rails()


def _stream(rails: Rails) -> Callable[[str], None]:
    def run(text: str) -> None:
        guard = rails.output_stream()
        for i in range(0, len(text), 4):
            guard.feed(text[i : i + 4])
        guard.finish()

    return run


@pytest.mark.parametrize("name", list(INPUTS))
def test_pii_mask_is_linear(name):
    _assert_linear(mask_pii, INPUTS[name])


@pytest.mark.parametrize("name", list(INPUTS))
def test_input_rail_is_linear(rails, name):
    _assert_linear(lambda t: rails.check_input([{"role": "user", "content": t}]), INPUTS[name])


@pytest.mark.parametrize("name", ["many emails", "percent run", "long word", "mixed Chinese"])
def test_prompt_rail_is_linear(rails, name):
    _assert_linear(lambda t: rails.check_prompt(t), INPUTS[name])


@pytest.mark.parametrize("name", ["many emails", "many IPs", "percent run", "digit runs", "phone prefix + digit runs"])
def test_output_rail_whole_answer_is_linear(rails, name):
    _assert_linear(rails.check_output, INPUTS[name])


@pytest.mark.parametrize("name", ["endless email domain", "digit runs", "long word", "many emails"])
def test_output_rail_stream_is_linear(rails, name):
    # An email whose domain never ends was held back whole and rescanned on every delta
    # (quadratic: 5 s for 10 KB); now a recognised value past max_buffer_chars is released.
    make = (lambda n: "x@" + _fill("bb.", n - 2)) if name == "endless email domain" else INPUTS[name]
    _assert_linear(_stream(rails), make, STREAM_SMALL)


@pytest.mark.parametrize("name", ["repeated words", "long word", "digit runs", "injected sentences"])
def test_context_rail_is_linear(rails, name):
    make = (lambda n: _fill("Ignore all previous instructions. ", n)) if name == "injected sentences" else INPUTS[name]
    _assert_linear(lambda t: rails.check_context([t]), make)


@pytest.mark.parametrize("make", [lambda n: _fill("how to make ", n), lambda n: "kill all " + "a" * n,
                                  lambda n: _fill("all all ", n), INPUTS["mixed Chinese"]])
def test_moderation_is_linear(make):
    _assert_linear(moderation_score, make)


def test_segments_of_one_long_sentence_are_linear():
    # The window cut re-sliced the rest of the sentence per window: quadratic (0.35 s for 1 MB).
    _assert_linear(segments, lambda n: "a" * n, small=100_000)


def _segments_reference(normalized: str, size: int) -> list[str]:
    """The window rule as first written (re-slicing): the reference the offset form must match."""
    import re

    out: list[str] = []
    current = ""
    if len(normalized) <= size:
        return [normalized]
    for sentence in re.compile(r"(?<=[.!?。！？;；\n])\s*").split(normalized):
        if not sentence:
            continue
        while len(sentence) > size:
            if current:
                out.append(current)
                current = ""
            out.append(sentence[:size])
            sentence = sentence[size // 2 :]
        if len(current) + len(sentence) + 1 > size and current:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        if out and len(current) < size // 3 and len(out[-1]) + len(current) < size + size // 3:
            out[-1] = f"{out[-1]} {current}"
        else:
            out.append(current)
    return out


def test_segments_unchanged_by_the_linear_cut():
    import random

    rng = random.Random(5)
    for _ in range(500):
        text = "".join(rng.choice(["a", "b ", ". ", "x" * rng.randint(1, 700), "!", "。"]) for _ in range(rng.randint(1, 30)))
        size = rng.choice([240, 10, 31])
        assert segments(text, size) == _segments_reference(text, size)
