"""Dedup (exact, near, deterministic order) and token-sized chunking (English and Chinese)."""

from __future__ import annotations

import random

import pytest

from llmops_ray.data.chunk import chunk_text, tokenizer_counter, whitespace_counter
from llmops_ray.data.dedup import DedupItem, content_hash, find_duplicates, minhash_signature, signature_jaccard

BASE = (
    "The Lumen T3 keeps following its schedule and the eco temperatures when the Wi-Fi network is down. "
    "You cannot control it from the app until the connection is back, but the ring on the thermostat "
    "always works, and the schedule it learned during the first week stays in its memory. When the "
    "network returns, the thermostat uploads the readings it stored while it was offline."
)


def _item(source: str, text: str) -> DedupItem:
    return DedupItem(source, source, content_hash(text), minhash_signature(text).tolist())


def test_exact_hash_ignores_case_punctuation_and_spaces():
    assert content_hash("Hello,  World!") == content_hash("hello world")
    assert content_hash("hello world") != content_hash("hello there world")


def test_near_duplicate_similarity():
    near = BASE.replace("first week", "first seven days")
    assert signature_jaccard(minhash_signature(BASE), minhash_signature(near)) >= 0.8
    other = "Installers recommend a room sensor in a living room, away from lamps, windows and the kitchen door."
    assert signature_jaccard(minhash_signature(BASE), minhash_signature(other)) < 0.2


def test_dedup_keeps_first_source_whatever_the_input_order():
    near = BASE.replace("first week", "first seven days")
    items = [_item("z/copy.md", BASE), _item("a/orig.md", BASE), _item("m/near.md", near),
             _item("b/other.md", "A completely different text about warranty claims and replacement units sent before returns.")]
    for seed in range(3):
        random.Random(seed).shuffle(items)
        dropped = find_duplicates(items, threshold=0.8)
        assert sorted(dropped) == ["m/near.md", "z/copy.md"]
        assert dropped["z/copy.md"].reason == "duplicate" and dropped["z/copy.md"].kept_source == "a/orig.md"
        assert dropped["m/near.md"].reason == "near_duplicate" and dropped["m/near.md"].kept_source == "a/orig.md"


def test_dedup_threshold_is_configurable():
    near = BASE.replace("first week", "first seven days").replace("ring", "dial")
    sim = signature_jaccard(minhash_signature(BASE), minhash_signature(near))
    items = [_item("a", BASE), _item("b", near)]
    assert "b" in find_duplicates(items, threshold=max(0.05, sim - 0.1))
    assert find_duplicates(items, threshold=min(1.0, sim + 0.1)) == {}


def test_chinese_near_duplicates():
    a = "流明 T3 温控器断网后会继续按照作息计划和节能温度运行，只是暂时无法通过手机应用控制，温控器上的旋钮始终可以使用。"
    b = a.replace("始终", "一直")
    assert "b" in find_duplicates([_item("a", a), _item("b", b)], threshold=0.7)


@pytest.fixture(scope="module")
def count():
    from llmops_ray.kb.embed import default_model_path

    return tokenizer_counter(default_model_path())


def test_short_text_is_one_chunk(count):
    assert chunk_text("A short FAQ answer.", 200, 30, count) == ["A short FAQ answer."]
    assert chunk_text("   ", 200, 30, count) == []


def test_english_chunks_respect_size_and_overlap(count):
    text = "# Guide\n\n" + "\n\n".join(
        " ".join(f"Sentence {p}-{s} explains one more detail of the thermostat installation." for s in range(6))
        for p in range(8)
    )
    chunks = chunk_text(text, 64, 16, count)
    assert len(chunks) > 4
    assert all(count([c])[0] <= 64 for c in chunks)
    # overlap: a chunk that starts mid-paragraph repeats the previous chunk's last sentence
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:]) if b.split(". ")[0].split()[-1] in a)
    assert overlapping >= 1
    assert chunks[0].startswith("# Guide")
    assert all(s in " ".join(chunks) for s in ("Sentence 0-0", "Sentence 7-5"))


def test_headings_start_new_chunks(count):
    section = " ".join(["The warranty covers defects in materials under normal use."] * 3)
    text = f"# Warranty\n\n{section}\n\n# Privacy\n\n{section.replace('warranty', 'policy')}"
    chunks = chunk_text(text, 120, 20, count)
    assert len(chunks) == 2 and chunks[1].startswith("# Privacy")


def test_chinese_splits_on_chinese_punctuation(count):
    sentence = "流明温控器会在第一周记录用户的每一次调节并自动生成作息计划。"
    text = sentence * 30  # no spaces, no newlines: one huge "paragraph"
    chunks = chunk_text(text, 50, 10, count)
    assert len(chunks) > 5
    assert all(count([c])[0] <= 50 for c in chunks)
    assert all(c.endswith("。") for c in chunks)


def test_no_oversized_chunk_even_without_boundaries(count):
    text = "x" * 3000 + " " + "word " * 500
    chunks = chunk_text(text, 40, 5, count)
    assert all(count([c])[0] <= 40 for c in chunks)


def test_whitespace_counter_fallback():
    chunks = chunk_text("one two three. four five six. seven eight nine.", 4, 1, whitespace_counter)
    assert all(whitespace_counter([c])[0] <= 4 for c in chunks) and len(chunks) >= 3


def test_chinese_after_nfkc_still_splits_on_sentences(count):
    from llmops_ray.data.clean import clean_text

    text = clean_text("温控器会记录每一次调节！它可以节省能源，而且运行非常安静；用户很满意吗？是的。" * 8)
    assert "！" not in text  # NFKC made it ASCII
    chunks = chunk_text(text, 30, 5, count)
    assert len(chunks) > 3 and all(c[-1] in "!?;。" for c in chunks)
