"""ASHA judging a trial at each rung by its best value so far (imported only where Ray Tune is).

Ray's ``ASHAScheduler`` compares the value a trial reports when it reaches a rung with the
values other trials reported there. Fine-tuning losses are not monotone: a high learning
rate without warm-up spikes for an evaluation or two and then falls below everyone else's
(seen in the tiny LoRA search's recorded curves: the best config of a 40-trial search
spiked from 5.83 to 6.87 at step 6, then ended at 3.84, the lowest of all). Judged on that
one spike, ASHA stops the config the search is looking for. Judged on the trial's best value
so far it goes on. Only the scheduler sees the running best: the result Tune records, logs
and hands to the search algorithm is the one the trial sent.

A module of its own, at module level, so that Tune can pickle the scheduler into its
experiment state and ``Tuner.restore`` can load it.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler


class BestSoFarASHA(ASHAScheduler):
    """``ASHAScheduler`` whose rung decisions use the running best of the metric (by mode)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._best: dict[str, float] = {}

    def _with_running_best(self, trial, result: dict) -> dict:
        value = result.get(self._metric) if result else None
        if value is None:
            return result  # no metric in this result: ASHA ignores it anyway
        value = float(value)
        previous = self._best.get(trial.trial_id)
        if previous is not None:
            value = min(value, previous) if self._mode == "min" else max(value, previous)
        self._best[trial.trial_id] = value
        return {**result, self._metric: value}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return super().on_trial_result(tune_controller, trial, self._with_running_best(trial, result))

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, self._with_running_best(trial, result))
        self._best.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        super().on_trial_remove(tune_controller, trial)
        self._best.pop(trial.trial_id, None)
