"""PII formats added in issue 18: SSN, passport numbers, bank cards in Chinese text, landlines.

Recall on the labelled set (EN + ZH, ``resources/safety/pii_labelled.jsonl``) >= 0.98, and no
order number, date, version string or other look-alike of that set masked.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from llmops_ray.safety.output_rail import OutputStreamGuard, check_output
from llmops_ray.safety.pii import mask_pii
from llmops_ray.safety.quality import PII_LABELLED_PATH, load_jsonl, pii_recall

from tests.unit.test_safety_growth import _assert_linear

REPO = Path(__file__).resolve().parents[2]


def test_labelled_set_recall_and_no_lookalike_masked():
    rows = load_jsonl(PII_LABELLED_PATH)
    assert sum(len(r["spans"]) for r in rows) >= 300 and sum(len(r["negatives"]) for r in rows) >= 300
    assert {r["lang"] for r in rows} == {"en", "zh"}
    report = pii_recall(rows)
    assert report.recall >= 0.98, report.missed[:20]
    for kind in ("SSN", "PASSPORT", "CARD", "PHONE"):
        for lang in ("en", "zh"):
            key = f"{lang}/{kind}"
            assert report.found[key] / report.total[key] >= 0.95, (key, report.missed)
    assert report.negatives_masked == []


def test_generator_rebuilds_the_shipped_set(tmp_path):
    out = tmp_path / "pii.jsonl"
    subprocess.run([sys.executable, str(REPO / "tests" / "tools" / "make_pii_labelled.py"), str(out)],
                   check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == PII_LABELLED_PATH.read_bytes()


@pytest.mark.parametrize("text,expected", [
    ("SSN 123-45-6789 on file", "SSN [SSN] on file"),
    ("my ssn is 123456789.", "my ssn is [SSN]."),
    ("美国社会安全号码：078-05-1120", "美国社会安全号码：[SSN]"),
    ("Passport No. E12345678, valid", "Passport No. [PASSPORT], valid"),
    ("护照号码：EA1234567", "护照号码：[PASSPORT]"),
    ("passport # 512345678", "passport # [PASSPORT]"),
    ("我的银行卡号是6222 0212 3456 7890 128，请查收", "我的银行卡号是[CARD]，请查收"),
    ("卡号：6228-4800-1234-5678-910。", "卡号：[CARD]。"),  # UnionPay without a valid Luhn digit, after 卡号
    ("信用卡4111-1111-1111-1111已冻结", "信用卡[CARD]已冻结"),
    ("电话010-62345678", "电话[PHONE]"),
    ("（021）6123 4567转801", "[PHONE]"),
    ("0755-8888 6666", "[PHONE]"),
    ("Call (020) 7946 0958 today", "Call [PHONE] today"),
    ("office 415 555 0100.", "office [PHONE]."),
])
def test_formats(text, expected):
    assert mask_pii(text)[0] == expected


@pytest.mark.parametrize("text", [
    "订单号 2024-05-12-0031", "v1.2.3", "release 2.10.1 on 2024-01-02", "order #0123-4567-8901", "ISBN 978-3-161-48410-0",
    "passport photo taken 2024-05-12", "SSN field left blank", "卡号后四位 1234", "2024年5月12日 10:30", "¥12,999.00",
    "build 10.0.19045", "邮编100080", "SF123456789012", "Windows 10.0.22631.3447", "port 8080 and 8443",
    "the years 1999 2000 2001", "+-10 items",
])
def test_lookalikes_stay(text):
    assert mask_pii(text) == (text, {})


def test_keyword_anchored_values_are_masked_in_streams():
    text = "Thanks. Passport No. E12345678 and 卡号：6228-4800-1234-5678-910，SSN 123456789 ok"
    whole = check_output(text)[0]
    assert "E12345678" not in whole and "910" not in whole and "123456789" not in whole
    for seed in range(40):
        rng = random.Random(seed)
        guard = OutputStreamGuard()
        out, i = [], 0
        while i < len(text):
            k = rng.randint(1, 6)
            out.append(guard.feed(text[i : i + k]))
            i += k
        out.append(guard.finish())
        assert "".join(out) == whole


NEW_INPUTS = {
    "passport keyword runs": lambda n: ("passport no. " * (n // 13 + 1))[:n],
    "ssn-shaped runs": lambda n: ("123-45-6789-" * (n // 12 + 1))[:n],
    "card keyword + digits": lambda n: ("卡号6222 0212 3456 " * (n // 17 + 1))[:n],
    "landline-shaped runs": lambda n: ("(010)2345 " * (n // 10 + 1))[:n],
    "zero-led groups": lambda n: ("020 7946 " * (n // 9 + 1))[:n],
}


@pytest.mark.parametrize("name", list(NEW_INPUTS))
def test_new_detectors_are_linear(name):
    _assert_linear(mask_pii, NEW_INPUTS[name])
