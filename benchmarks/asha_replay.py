"""Replay ASHA's stopping rule over recorded FIFO learning curves (a model, not a measurement).

The tiny fine-tuning trainable is deterministic (same config, same seed, same val_loss
sequence), so a FIFO search's curves say what every trial would report under any scheduler.
This script pools the FIFO curves written by ``benchmarks/tune_asha.py`` (``curves-seed*.json``),
draws random trial orders of ``--samples`` trials from the pool, and replays both FIFO and
Ray's ``AsyncHyperBandScheduler`` rule (a trial reaching a rung stops when its value is worse
than the rung's (1 - 1/reduction_factor) quantile of the values recorded there so far) on
``--slots`` concurrent trials, using the recorded seconds per iteration to order the results.
Reported: the benchmark's figure (ASHA / FIFO trial-iterations until the best val_loss is within
1% of FIFO's best), as a ratio of means over all orders and as the spread of 4-order means.

    .venv/bin/python benchmarks/asha_replay.py /tmp/llmops-bench-tune-*/curves-seed*.json \
        [--samples 24,32,48] [--grace 1] [--rf 3,4] [--orders 300] [--group 1,2] [--rung-metric last|best|both]

``--rung-metric best`` replays the shipped scheduler (``llmops_ray.tune.schedulers.BestSoFarASHA``:
a trial is judged at a rung by its best value so far). ``--group N`` replays curves recorded
at every optimizer step (a search with ``checkpoint.every_steps=1``) as a search reporting
every N steps: one recording answers several reporting intervals.

Replaying a run's own FIFO curves in its own trial order reproduces its real ASHA run exactly
(checked on seeds 7, 8 and 9 at 32 trials: 20 of 73 iterations; never, 99; never, 93), so the
spread it prints is the spread of the benchmark itself. Use it to choose a budget or ASHA's
settings before spending ~25 min per seed on the real run; the real benchmark remains the
figure that counts.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from pathlib import Path

# A stopped trial's slot goes to the next trial after this many seconds (actor teardown).
SLOT_HANDOVER_S = 3.0


class AshaRule:
    """Ray's ASHA bracket (one bracket): rungs at grace * rf^k below max_t."""

    def __init__(self, max_t: int, grace: int, rf: float):
        rungs = int(math.log(max_t / grace) / math.log(rf) + 1)
        self.rungs = [(grace * rf**k, {}) for k in reversed(range(rungs))]
        self.rf = rf

    def keep_going(self, trial: int, iteration: int, loss: float) -> bool:
        for milestone, recorded in self.rungs:
            if iteration >= milestone and trial in recorded:
                return True  # decided at this rung already
            if iteration < milestone or trial in recorded:
                continue
            stop = False
            if recorded:
                values = sorted(recorded.values())  # losses: lower is better
                stop = loss > quantile(values, 1 / self.rf)
            recorded[trial] = loss
            return not stop
        return True


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default) of an ascending list."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def coarsen(trial: dict, group: int) -> dict:
    """A curve recorded every step as the same run reporting every ``group`` steps: the value
    at each group's last step, the group's seconds summed (evaluation is deterministic and
    takes no random numbers, so reporting less often leaves the training run unchanged)."""
    if group == 1:
        return trial
    n = len(trial["val_loss"]) // group
    return {**trial, "val_loss": [trial["val_loss"][(k + 1) * group - 1] for k in range(n)],
            "iter_s": [sum(trial["iter_s"][k * group:(k + 1) * group]) for k in range(n)]}


def replay(trials: list[dict], max_t: int, rule: AshaRule | None, slots: int, rung_metric: str = "last") -> list[float]:
    """val_loss values in the order they would arrive. ``rung_metric`` is what ASHA compares
    at a rung: the value reported there ("last") or the trial's best so far ("best")."""
    arrivals, running, nxt = [], [], 0

    def start(i: int, at: float) -> None:
        heapq.heappush(running, (at + trials[i]["iter_s"][0], i, 0))

    while nxt < min(slots, len(trials)):
        start(nxt, 0.0)
        nxt += 1
    while running:
        now, i, it = heapq.heappop(running)
        loss = trials[i]["val_loss"][it]
        arrivals.append(loss)
        judged = min(trials[i]["val_loss"][:it + 1]) if rung_metric == "best" else loss
        go = rule.keep_going(i, it + 1, judged) if rule else True
        if go and it + 1 < max_t:
            heapq.heappush(running, (now + trials[i]["iter_s"][it + 1], i, it + 1))
        elif nxt < len(trials):
            start(nxt, now + SLOT_HANDOVER_S)
            nxt += 1
    return arrivals


def spent_to_target(arrivals: list[float], target: float) -> int:
    """Iterations until the running best reaches target (all of them if it never does)."""
    best = math.inf
    for n, loss in enumerate(arrivals, 1):
        best = min(best, loss)
        if best <= target:
            return n
    return len(arrivals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curves", nargs="+", type=Path, help="curves-seed*.json from benchmarks/tune_asha.py")
    parser.add_argument("--samples", default="24,32,48", help="trials per search (comma-separated)")
    parser.add_argument("--grace", default="1", help="ASHA grace periods (comma-separated)")
    parser.add_argument("--rf", default="3,4", help="ASHA reduction factors (comma-separated)")
    parser.add_argument("--orders", type=int, default=300, help="random trial orders per setting")
    parser.add_argument("--slots", type=int, default=2, help="concurrent trials")
    parser.add_argument("--group", default="1", help="recorded steps per replayed iteration (comma-separated): "
                        "curves recorded every step replay as searches reporting every N steps")
    parser.add_argument("--rung-metric", default="last", choices=["last", "best", "both"],
                        help="what ASHA compares at a rung: the value reported there, the best so far, or both")
    args = parser.parse_args()

    recorded = [t for path in args.curves for t in json.loads(path.read_text())["fifo"]]
    metrics = ["last", "best"] if args.rung_metric == "both" else [args.rung_metric]
    for group in (int(x) for x in args.group.split(",")):
        pool = [coarsen(t, group) for t in recorded]
        for rung_metric in metrics:
            code = report(pool, args, group, rung_metric)
            if code:
                return code
    return 0


def report(pool: list[dict], args, group: int, rung_metric: str) -> int:
    max_t = min(len(t["val_loss"]) for t in pool)
    if max_t < 2 or len(pool) < 2:
        print("need FIFO curves of at least 2 trials with 2+ iterations", file=sys.stderr)
        return 2
    print(f"\npool: {len(pool)} FIFO trials of {max_t} iterations ({group} recorded step(s) each) from "
          f"{len(args.curves)} file(s); {args.orders} random orders per setting, {args.slots} concurrent trials; "
          f"ASHA judges rungs by the {rung_metric} val_loss")
    print(f"{'trials':>7}{'grace':>7}{'rf':>5}{'ASHA/FIFO':>11}{'4-order means: median':>23}{'share <= 0.4':>14}")
    for samples in (int(x) for x in args.samples.split(",")):
        if samples > len(pool):
            print(f"{samples:>7}  more trials than the pool holds: skipped")
            continue
        rng = random.Random(0)
        orders = [rng.sample(range(len(pool)), samples) for _ in range(args.orders)]
        for grace in (int(x) for x in args.grace.split(",")):
            for rf in (float(x) for x in args.rf.split(",")):
                fifo, asha = [], []
                for order in orders:
                    trials = [pool[i] for i in order]
                    base = replay(trials, max_t, None, args.slots)
                    target = min(base) * 1.01
                    fifo.append(spent_to_target(base, target))
                    # max_t + 1: the search scheduler's own setting (a full trial is not stopped at max_t).
                    asha.append(spent_to_target(replay(trials, max_t, AshaRule(max_t + 1, grace, rf), args.slots,
                                                        rung_metric), target))
                groups = sorted(sum(asha[i:i + 4]) / sum(fifo[i:i + 4]) for i in range(0, len(orders) - 3, 4))
                share = sum(g <= 0.4 for g in groups) / len(groups)
                print(f"{samples:>7}{grace:>7}{rf:>5g}{sum(asha) / sum(fifo):>10.2f}x{groups[len(groups) // 2]:>22.2f}x"
                      f"{share:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
