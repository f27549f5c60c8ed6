"""Cleaning, quality filter and readers (HTML boilerplate, PDF, JSONL, bad files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_ray.data.clean import QualityConfig, clean_text, detect_lang, quality_reason
from llmops_ray.common.readers import ReadError, html_to_text, list_files, read_file

CORPUS = Path(__file__).resolve().parents[2] / "llmops_ray" / "resources" / "sample_corpus"


def test_nfkc_controls_and_spaces():
    raw = "Ｆｕｌｌｗｉｄｔｈ\u00a0text\x07 with   spaces\u200b and\ttabs\r\nnext"
    assert clean_text(raw) == "Fullwidth text with spaces and tabs next"


def test_broken_line_wraps_are_joined_but_structure_kept():
    raw = "The thermostat reads the\ntemperature at the wall. Infor-\nmation follows.\n\n# Heading\n- item one\n- item two\n\n中文句子被错误地\n折行了。"
    out = clean_text(raw)
    assert "reads the temperature at the wall. Information follows." in out
    assert "# Heading\n- item one\n- item two" in out
    assert "中文句子被错误地折行了。" in out
    assert "\n\n\n" not in out


def test_quality_filter_reasons():
    q = QualityConfig()
    assert quality_reason("TODO", q) == "too_short"
    assert quality_reason(" ".join(f"{i:03d}.{i % 7}" for i in range(80)), q) == "low_alpha"
    assert quality_reason("buy now cheap " * 40, q) == "repetitive"
    faq = (
        "How do I reset the thermostat to factory settings? Press the ring to open the menu, go to "
        "Settings, then Reset, and choose Factory reset. The thermostat forgets its Wi-Fi network, its "
        "schedule and the link to your account, but your history stays in your account until you delete "
        "the home in the app. After the reset, follow the setup steps on the screen again, join your "
        "2.4 GHz network, and enter the six-digit code in the app to link it. If the ring does not respond, "
        "hold it down for ten seconds to restart the thermostat first. Schedules you wrote by hand are not "
        "restored automatically, so take a screenshot of them before you reset."
    )
    assert 100 <= len(faq.split()) <= 140
    assert quality_reason(clean_text(faq), q) is None
    assert quality_reason("流明 T3 温控器断网后会继续按照作息计划运行，只是暂时无法通过手机应用控制。", q) is None


def test_detect_lang():
    assert detect_lang("这是一个中文句子，介绍温控器。") == "zh"
    assert detect_lang("This is English text about thermostats.") == "en"


def test_html_boilerplate_removed():
    html = (CORPUS / "web" / "blog_winter_heating.html").read_text(encoding="utf-8")
    title, text = html_to_text(html)
    text = clean_text(text)
    assert title.startswith("Getting your heating ready")
    assert "# Getting your heating ready for winter" in text and "## Replace the filter" in text
    assert "clogged furnace filter" in text
    for junk in ("cookies", "Accept all", "Products", "newsletter", "All rights reserved", "dataLayer", "Related posts", "font-family"):
        assert junk not in text


def test_html_chinese_page():
    html = (CORPUS / "web" / "blog_launch_zh.html").read_text(encoding="utf-8")
    _, text = html_to_text(html)
    text = clean_text(text)
    assert "流明云开放接口正式发布" in text and "OAuth 2.0" in text
    assert "Cookie" not in text and "版权所有" not in text and "首页" not in text


def test_pdf_and_bad_files():
    docs = read_file(str(CORPUS / "pdf" / "quick_start_card.pdf"))
    assert "six-digit code" in docs[0]["text"] and docs[0]["title"] == "Lumen T3 quick start card"
    for name, reason in [("empty.txt", "empty"), ("broken.pdf", "corrupt PDF"), ("legacy_notes.txt", "UTF-8")]:
        with pytest.raises(ReadError, match=reason):
            read_file(str(CORPUS / "junk" / name))


def test_jsonl_records(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(
        json.dumps({"id": "a", "text": "first", "title": "T", "tag": "x"}) + "\n\n"
        + json.dumps({"text": "no id"}) + "\n" + "{broken\n",
        encoding="utf-8",
    )
    docs = read_file(str(path))
    assert docs[0] == {"source": f"{path}#a", "title": "T", "text": "first", "metadata": {"tag": "x"}}
    assert docs[1]["source"] == f"{path}#line3" and "needs 'id'" in docs[1]["error"]
    assert docs[2]["source"] == f"{path}#line4" and "invalid JSON" in docs[2]["error"]


def test_list_files(tmp_path):
    (tmp_path / "d" / ".hidden").mkdir(parents=True)
    for name in ("d/a.md", "d/b.bin", "d/.hidden/c.md", "d/e.HTML", "f.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    files = list_files([str(tmp_path / "d"), str(tmp_path / "f.txt")])
    assert files == sorted([str(tmp_path / "d" / "a.md"), str(tmp_path / "d" / "e.HTML"), str(tmp_path / "f.txt")])


def test_clean_text_hard_wrapped_is_linear():
    # Joining wrapped lines one at a time copied the whole line per piece: quadratic (8.6 s for
    # 1 MB of "word\n"). Same growth check as tests/unit/test_safety_growth.py.
    from test_safety_growth import _assert_linear

    _assert_linear(clean_text, lambda n: ("word\n" * (n // 5 + 1))[:n], small=20_000)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("a long sen-\ntence that wraps", "a long sentence that wraps"),
        ("x" * 80 + "\ncontinued", "x" * 80 + " continued"),
        ("y" * 70 + " infor-\nmation", "y" * 70 + " information"),
        ("第一行中文\n第二行", "第一行中文第二行"),
        ("Heading:\nNext line", "Heading:\nNext line"),
        ("#\nx\nmore", "# x\nmore"),  # the joined "# x" reads as a heading
        ("- item one\n- item two", "- item one\n- item two"),
    ],
)
def test_clean_text_wrap_rules_hold_on_long_lines(raw, want):
    assert clean_text(raw) == want
