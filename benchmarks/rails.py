"""Guardrail cost and injection-detector quality.

Run: ``.venv/bin/python benchmarks/rails.py [--requests 300]``

1. Added latency per request (p50/p95): the input rails (injection detection + PII masking)
   on a realistic chat request and the output rails on its streamed answer (token-sized
   deltas), against a pass-through baseline doing the same copying without rails, in the
   same run. Target: <= 5 ms p50 added.
2. The injection detector on the held-out split of the labelled set (rows with
   ``split == "test"``; the classifier is fitted on ``train`` only): TPR/FPR of each layer
   and of the layered detector, overall and per language. Target: TPR >= 0.9 at FPR <= 0.1.
3. Classifier inference: our pure-Python scorer vs scikit-learn's pipeline on the same texts.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
