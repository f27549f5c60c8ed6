"""BestSoFarASHA: Ray's ASHA judging each rung by a trial's running best, not by one report."""

from __future__ import annotations

import importlib.util
import pickle
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from llmops_ray.tune.schedulers import BestSoFarASHA

spec = importlib.util.spec_from_file_location("asha_replay", Path(__file__).parents[2] / "benchmarks" / "asha_replay.py")
replay_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(replay_mod)


def _scheduler(cls, mode="min", rf=4, grace=1, max_t=17):
    scheduler = cls(time_attr="training_iteration", max_t=max_t, grace_period=grace, reduction_factor=rf)
    assert scheduler.set_search_properties("val_loss", mode)
    return scheduler


def _feed(scheduler, trial, iteration, value):
    return scheduler.on_trial_result(None, trial, {"training_iteration": iteration, "val_loss": value})


def _spiking_search(cls):
    """Rungs at iterations 4 and 16. Three trials reach the first with 5.0, 5.1, 5.2 (their
    best so far, falling steadily); a fourth, best of all at 4.9, reports a spike (7.0) there."""
    scheduler = _scheduler(cls, grace=4)
    others = [SimpleNamespace(trial_id=f"t{i}") for i in range(3)]
    for trial, value in zip(others, (5.0, 5.1, 5.2)):
        scheduler.on_trial_add(None, trial)
        for it in range(1, 5):
            _feed(scheduler, trial, it, value + (4 - it) * 0.1)
    spiky = SimpleNamespace(trial_id="spiky")
    scheduler.on_trial_add(None, spiky)
    decisions = [_feed(scheduler, spiky, it, v) for it, v in zip(range(1, 5), (5.1, 5.0, 4.9, 7.0))]
    return decisions


def test_a_spike_at_the_rung_stops_a_trial_under_rays_rule_but_not_under_best_so_far():
    assert _spiking_search(ASHAScheduler)[-1] == TrialScheduler.STOP
    assert _spiking_search(BestSoFarASHA)[-1] == TrialScheduler.CONTINUE


def test_best_so_far_is_taken_by_mode_and_the_result_is_left_as_sent():
    scheduler = _scheduler(BestSoFarASHA, mode="max")
    trial = SimpleNamespace(trial_id="a")
    scheduler.on_trial_add(None, trial)
    result = {"training_iteration": 1, "val_loss": 0.8}
    _feed(scheduler, trial, 1, 0.8)
    seen = scheduler._with_running_best(trial, {"training_iteration": 2, "val_loss": 0.5})
    assert seen["val_loss"] == 0.8 and result["val_loss"] == 0.8  # max mode keeps the higher value
    sent = {"training_iteration": 3, "val_loss": 0.6}
    scheduler.on_trial_result(None, trial, sent)
    assert sent == {"training_iteration": 3, "val_loss": 0.6}
    assert scheduler._with_running_best(trial, {"training_iteration": 4}) == {"training_iteration": 4}
    scheduler.on_trial_complete(None, trial, {"training_iteration": 4, "val_loss": 0.7})
    assert "a" not in scheduler._best


def test_the_scheduler_pickles_for_tuner_restore():
    scheduler = _scheduler(BestSoFarASHA)
    trial = SimpleNamespace(trial_id="a")
    scheduler.on_trial_add(None, trial)
    _feed(scheduler, trial, 1, 3.0)
    restored = pickle.loads(pickle.dumps(scheduler))
    assert isinstance(restored, BestSoFarASHA) and restored._best == {"a": 3.0}


@pytest.mark.parametrize("rf, grace", [(4, 1), (3, 1), (3, 2)])
def test_replay_best_rule_matches_the_scheduler(rf, grace):
    """benchmarks/asha_replay.py's rung_metric="best" must make the scheduler's decisions."""
    rng = random.Random(rf * 7 + grace)
    scheduler = _scheduler(BestSoFarASHA, rf=rf, grace=grace)
    rule = replay_mod.AshaRule(17, grace, rf)
    curves = {i: [rng.uniform(1, 5) for _ in range(16)] for i in range(12)}
    alive = {i: 0 for i in curves}
    for i in curves:
        scheduler.on_trial_add(None, SimpleNamespace(trial_id=i))
    stops = 0
    while alive:
        i = rng.choice(sorted(alive))
        it = alive[i] = alive[i] + 1
        ours = rule.keep_going(i, it, min(curves[i][:it]))  # what replay() hands the rule for "best"
        theirs = _feed(scheduler, SimpleNamespace(trial_id=i), it, curves[i][it - 1]) == TrialScheduler.CONTINUE
        assert ours == theirs
        stops += not ours
        if not ours or it == 16:
            del alive[i]
    assert stops > 0
