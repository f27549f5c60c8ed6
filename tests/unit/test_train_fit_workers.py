"""Training asks for the CPUs the cluster has free: a rerun of `make demo` while its app holds
part of the 2-CPU head must shrink its workers, not wait for CPUs forever."""

from __future__ import annotations

import pytest

from llmops_ray.config import UserError
from llmops_ray.train.config import WorkerSettings
from llmops_ray.train.runner import MIN_CPUS_PER_WORKER, fit_cpus_per_worker, fit_workers


def test_asks_what_was_configured_when_it_fits():
    assert fit_cpus_per_worker(2, 0.9, 2.0) == 0.9
    assert fit_cpus_per_worker(2, 0.9, 1.8) == 0.9


def test_shrinks_to_the_free_cpus_rounded_down():
    # The demo app holds 0.6 of the 2-CPU head: 1.4 free.
    assert fit_cpus_per_worker(2, 0.9, 1.4) == 0.7
    fitted = fit_cpus_per_worker(3, 0.9, 1.0)
    assert fitted == 0.33 and 3 * fitted <= 1.0


def test_too_few_free_cpus_is_a_one_line_error():
    with pytest.raises(UserError, match="make down") as info:
        fit_cpus_per_worker(2, 0.9, 2 * MIN_CPUS_PER_WORKER - 0.01)
    assert "\n" not in str(info.value)


def test_fit_workers_reads_the_cluster_and_can_be_turned_off(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 1.4})
    assert fit_workers(WorkerSettings(num_workers=2, cpus_per_worker=0.9)).cpus_per_worker == 0.7
    fixed = WorkerSettings(num_workers=2, cpus_per_worker=0.9, fit_to_free_cpus=False)
    assert fit_workers(fixed).cpus_per_worker == 0.9
