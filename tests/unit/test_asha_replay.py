"""benchmarks/asha_replay.py must apply Ray's own ASHA rule, or its estimates mean nothing."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

spec = importlib.util.spec_from_file_location("asha_replay", Path(__file__).parents[2] / "benchmarks" / "asha_replay.py")
replay_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(replay_mod)


@pytest.mark.parametrize("rf, grace", [(3, 1), (4, 1), (3, 2), (2, 1)])
def test_stop_decisions_match_rays_bracket(rf, grace):
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = random.Random(rf * 10 + grace)
    ours, rays = replay_mod.AshaRule(17, grace, rf), _Bracket(grace, 17, rf, 0)
    alive = {i: 0 for i in range(12)}
    stops = 0
    while alive:  # trials report in a random interleaving, like concurrent trials
        trial = rng.choice(sorted(alive))
        alive[trial] += 1
        loss = rng.uniform(1, 5)
        keep = ours.keep_going(trial, alive[trial], loss)
        # Ray's bracket maximises a reward: ASHA in "min" mode hands it -val_loss.
        assert keep == (rays.on_result(SimpleNamespace(trial_id=trial), alive[trial], -loss) == TrialScheduler.CONTINUE)
        stops += not keep
        if not keep or alive[trial] == 16:
            del alive[trial]
    assert stops > 0  # the comparison covered stop decisions too


def test_replay_and_target_count():
    trials = [{"val_loss": [5, 4, 3, 2], "iter_s": [10, 1, 1, 1]}, {"val_loss": [6, 6, 6, 6], "iter_s": [10, 1, 1, 1]}]
    fifo = replay_mod.replay(trials, 4, None, slots=2)
    assert sorted(fifo) == sorted(trials[0]["val_loss"] + trials[1]["val_loss"]) and len(fifo) == 8
    assert replay_mod.spent_to_target(fifo, 2.0) == 7  # trial 0's last report comes 7th (ties go to the lower trial)
    # ASHA stops the worse trial at its first rung: 4 + 1 reports.
    assert len(replay_mod.replay(trials, 4, replay_mod.AshaRule(5, 1, 3), slots=2)) == 5
    assert replay_mod.spent_to_target([3.0, 2.5], 1.0) == 2  # never reached: everything spent
    assert replay_mod.quantile([1.0, 2.0, 3.0, 4.0], 1 / 3) == pytest.approx(2.0)
