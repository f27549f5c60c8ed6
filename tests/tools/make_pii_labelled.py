"""Builds ``llmops_ray/resources/safety/pii_labelled.jsonl``: the labelled PII set (EN + ZH).

Run: ``.venv/bin/python tests/tools/make_pii_labelled.py [OUT.jsonl]`` (a tool, not package data).

Each row: ``{"id", "lang", "text", "spans": [{"type", "start", "end"}], "negatives": [{"kind",
"start", "end"}]}``. ``spans`` are PII values a detector must mask (type as in
``llmops_ray.safety.pii.PII_TYPES``); ``negatives`` are look-alikes it must leave alone (order
numbers, dates, version strings, amounts, postcodes, ISBNs, tracking and invoice numbers).
Values are synthetic: card numbers are generated with a valid (or, for UnionPay after a card
keyword, an arbitrary) check digit, Chinese IDs with a valid checksum, SSNs outside the
never-issued ranges. Sentence templates are hand-written for this set, not taken from any
benchmark. Deterministic (seeded). ``benchmarks/rails.py`` reports recall on it and
``tests/unit/test_safety_pii_formats.py`` asserts recall >= 0.98 with no negative masked.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "llmops_ray" / "resources" / "safety" / "pii_labelled.jsonl"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED
rng = random.Random(18)


def digits(n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + digits(length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def group(number: str, sizes: list[int], sep: str) -> str:
    out, pos = [], 0
    for s in sizes:
        out.append(number[pos : pos + s])
        pos += s
    if pos < len(number):
        out.append(number[pos:])
    return sep.join(out)


def card() -> str:
    kind = rng.choice(["visa", "mc", "unionpay16", "unionpay19", "amex"])
    if kind == "visa":
        n = luhn_complete("4", 16)
    elif kind == "mc":
        n = luhn_complete(rng.choice(["51", "52", "53", "54", "55"]), 16)
    elif kind == "unionpay16":
        n = luhn_complete("62" + rng.choice(["22", "28", "17", "14", "25"]), 16)
    elif kind == "unionpay19":
        n = luhn_complete("62" + rng.choice(["22", "28", "17"]), 19)
    else:
        n = luhn_complete(rng.choice(["34", "37"]), 15)
        return rng.choice([n, group(n, [4, 6, 5], " "), group(n, [4, 6, 5], "-")])
    return rng.choice([n, group(n, [4, 4, 4, 4], " "), group(n, [4, 4, 4, 4], "-")])


def cn_id() -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    body = rng.choice(["110105", "310104", "440305", "510107", "330106"]) + str(rng.randint(1950, 2005)) + \
        f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" + digits(3)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]


def ssn() -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def passport() -> str:
    return rng.choice([
        "E" + digits(8), "G" + digits(8), "EA" + digits(7), "EB" + digits(7),  # China (e-passport / older)
        str(rng.randint(1, 9)) + digits(8),  # US: 9 digits
        "C" + digits(7), "P" + digits(7), "K" + digits(8),
    ])


def cn_landline() -> str:
    area = rng.choice(["010", "021", "020", "022", "023", "024", "025", "027", "028", "029",
                       "0755", "0571", "0512", "0532", "0731", "0871", "0592"])
    sub = str(rng.randint(2, 8)) + digits(7 if len(area) == 3 else rng.choice([6, 7]))
    return rng.choice([
        f"{area}-{sub}", f"({area}){sub}", f"（{area}）{sub}", f"{area} {sub[:4]} {sub[4:]}",
        f"{area}-{sub[:4]}-{sub[4:]}", f"{area}-{sub}转{rng.randint(100, 9999)}",
    ])


def uk_landline() -> str:
    return rng.choice([
        f"020 {rng.randint(3, 8)}{digits(3)} {digits(4)}", f"(020) 7{digits(3)} {digits(4)}",
        f"0161 {rng.randint(2, 9)}{digits(2)} {digits(4)}", f"0131 {rng.randint(2, 9)}{digits(2)} {digits(4)}",
        f"(0117) {rng.randint(2, 9)}{digits(2)} {digits(4)}",
    ])


def us_landline() -> str:
    a, e = rng.randint(201, 989), rng.randint(200, 999)
    return rng.choice([f"({a}) {e}-{digits(4)}", f"{a}-{e}-{digits(4)}", f"{a} {e} {digits(4)}", f"{a}.{e}.{digits(4)}"])


def cn_mobile() -> str:
    n = "1" + rng.choice("3456789") + digits(9)
    return rng.choice([n, f"{n[:3]} {n[3:7]} {n[7:]}", f"{n[:3]}-{n[3:7]}-{n[7:]}", f"+86 {n}"])


def email() -> str:
    user = rng.choice(["li.wei", "zhang_san", "maria.garcia", "j.smith", "wang88", "ops-team", "chen.jing+shop"])
    return f"{user}@{rng.choice(['example.com', 'mail.example.cn', 'corp.example.org', 'qq.example.com'])}"


# ---------------------------------------------------------------------- negatives (must stay)


def order_no() -> str:
    return rng.choice([
        f"{rng.randint(2019, 2026)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-{digits(4)}",
        f"SO-{rng.randint(2019, 2026)}-{digits(5)}", f"#{digits(6)}", f"A{digits(7)}", f"PO{digits(8)}",
        f"{digits(2)}-{digits(4)}", f"ORD-{digits(4)}-{digits(4)}", f"{rng.randint(2019, 2026)}-{digits(6)}",
    ])


def date() -> str:
    y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{y}/{m:02d}/{d:02d}", f"{d:02d}.{m:02d}.{y}", f"{m:02d}/{d:02d}/{y}",
                       f"{y}年{m}月{d}日", f"{y}-{m:02d}-{d:02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"])


def version() -> str:
    return rng.choice([f"v{rng.randint(0, 12)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
                       f"{rng.randint(0, 12)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
                       f"{rng.randint(1, 5)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}-rc{rng.randint(1, 4)}",
                       f"10.0.{rng.randint(10000, 22631)}", f"{rng.randint(1, 3)}.{rng.randint(0, 13)}.{rng.randint(0, 9)}.post1"])


def amount() -> str:
    return rng.choice([f"¥{rng.randint(1, 99)},{digits(3)}.00", f"${rng.randint(1, 999)},{digits(3)}.{digits(2)}",
                       f"{rng.randint(1, 9)},{digits(3)},{digits(3)}", f"{rng.randint(100, 99999)}元"])


def misc_negative() -> tuple[str, str]:
    kind = rng.choice(["postcode", "isbn", "tracking", "invoice", "ip_port_like", "build"])
    value = {
        "postcode": rng.choice([digits(6), f"{rng.randint(10000, 99999)}", f"{rng.randint(10000, 99999)}-{digits(4)}"]),
        "isbn": f"978-{rng.randint(0, 9)}-{digits(3)}-{digits(5)}-{rng.randint(0, 9)}",
        "tracking": rng.choice([f"SF{digits(12)}", f"YT{digits(13)}", f"1Z{digits(4)}{digits(4)}"]),
        "invoice": f"INV-{rng.randint(2019, 2026)}-{digits(4)}",
        "ip_port_like": f"port {rng.randint(1024, 65535)}",
        "build": f"build {digits(5)}",
    }[kind]
    return kind, value


POSITIVES = {
    "en": [
        ("SSN", ssn, ["My SSN is {v}, please update the tax form.", "Social security number: {v}", "SSN {v} was entered twice.",
                      "The applicant ({v}) signed on page 2."]),
        ("PASSPORT", passport, ["Passport No. {v}, expires next year.", "passport number: {v}", "Her passport {v} was scanned.",
                                "Please re-enter the passport # {v} exactly."]),
        ("CARD", card, ["Charge card {v} for the renewal.", "Card number {v}, exp 09/27.", "I paid with {v} yesterday.",
                        "Refund to the card ending… full number {v}."]),
        ("PHONE", uk_landline, ["Call the London office on {v}.", "Landline: {v} (weekdays).", "Reception {v}, ask for Sam."]),
        ("PHONE", us_landline, ["Our office line is {v}.", "Fax or call {v} before 5pm.", "Reach me at {v}, ext. 12."]),
        ("EMAIL", email, ["Write to {v} for the invoice.", "Contact: {v}"]),
        ("CN_ID", cn_id, ["ID number {v} is on file."]),
    ],
    "zh": [
        ("CARD", card, ["我的银行卡号是{v}，请查收。", "卡号：{v}，户名张三。", "请把退款打到{v}这张卡上。", "信用卡{v}已冻结。",
                        "用户提供的借记卡 {v} 无法验证"]),
        ("PHONE", cn_landline, ["公司电话{v}，工作日9点到18点。", "请拨打座机{v}联系前台。", "联系电话：{v}", "传真号码 {v}。",
                                "客服热线{v}转人工"]),
        ("PHONE", cn_mobile, ["手机{v}，随时联系。", "我的电话是{v}。"]),
        ("PASSPORT", passport, ["护照号码：{v}，有效期至2030年。", "他的护照号是{v}。", "护照{v}已过期，请更新。", "请核对护照编号{v}"]),
        ("SSN", ssn, ["美国社会安全号码：{v}", "SSN：{v}，请勿外传。"]),
        ("CN_ID", cn_id, ["身份证号{v}已登记。", "证件号码：{v}"]),
        ("EMAIL", email, ["邮箱{v}，请尽快回复。"]),
    ],
}

NEG_TEMPLATES = {
    "en": ["Order {order} shipped on {date}; running version {version}.", "Invoice total {amount}, order {order}, due {date}.",
           "Upgrade from {version} to the next release before {date}.", "Ticket {order} was closed on {date} (build {version}).",
           "Ref {misc} for order {order}.", "Released {date}: {version} fixes the login bug."],
    "zh": ["订单号{order}已于{date}发货，系统版本{version}。", "发票金额{amount}，订单{order}，到期日{date}。",
           "请在{date}前把客户端升级到{version}。", "工单{order}在{date}关闭，版本号{version}。",
           "单号{misc}，订单号 {order}。", "{date}发布的{version}修复了登录问题。"],
}


def build() -> list[dict]:
    rows: list[dict] = []
    for lang, families in POSITIVES.items():
        for kind, make, templates in families:
            per_template = 14 if kind in ("SSN", "PASSPORT", "CARD", "PHONE") else 8
            for template in templates:
                for _ in range(per_template):
                    value = make()
                    text = template.replace("{v}", value, 1)
                    start = text.index(value)
                    spans = [{"type": kind, "start": start, "end": start + len(value)}]
                    negatives = []
                    if rng.random() < 0.5:  # a look-alike next to the value
                        neg_kind, neg = rng.choice([("order", order_no()), ("date", date()), ("version", version())])
                        joiner = " / " if lang == "en" else "；"
                        label = {"order": ("order ", "订单号"), "date": ("on ", "日期"), "version": ("version ", "版本")}[neg_kind]
                        prefix = label[0] if lang == "en" else label[1]
                        text = f"{text}{joiner}{prefix}{neg}"
                        nstart = len(text) - len(neg)
                        negatives.append({"kind": neg_kind, "start": nstart, "end": nstart + len(neg)})
                    rows.append({"lang": lang, "text": text, "spans": spans, "negatives": negatives})
    for lang, templates in NEG_TEMPLATES.items():
        for template in templates:
            for _ in range(25):
                fields = {"order": order_no(), "date": date(), "version": version(), "amount": amount()}
                misc_kind, misc = misc_negative()
                fields["misc"] = misc
                negatives = []
                out = []
                i = 0
                while i < len(template):
                    if template[i] == "{":
                        j = template.index("}", i)
                        name = template[i + 1 : j]
                        value = fields[name]
                        start = sum(len(x) for x in out)
                        negatives.append({"kind": misc_kind if name == "misc" else name, "start": start, "end": start + len(value)})
                        out.append(value)
                        i = j + 1
                    else:
                        out.append(template[i])
                        i += 1
                text = "".join(out)
                rows.append({"lang": lang, "text": text, "spans": [], "negatives": negatives})
    for i, row in enumerate(rows):
        row["id"] = i
        for span in row["spans"] + row["negatives"]:
            assert 0 <= span["start"] < span["end"] <= len(row["text"])
    return [{"id": r["id"], "lang": r["lang"], "text": r["text"], "spans": r["spans"], "negatives": r["negatives"]} for r in rows]


if __name__ == "__main__":
    rows = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    n_pos = sum(len(r["spans"]) for r in rows)
    n_neg = sum(len(r["negatives"]) for r in rows)
    print(json.dumps({"rows": len(rows), "spans": n_pos, "negatives": n_neg, "out": str(OUT)}))
