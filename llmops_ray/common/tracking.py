"""Experiment tracking on MLflow, one implementation for every stage.

* :func:`mlflow_client` -- the project's store (``MLFLOW_TRACKING_URI`` or the workspace's
  SQLite file), for the registry (model versions, aliases) and readers of runs.
* :func:`start_run` -- a run of an experiment (fine-tuning, bootstrap, a pipeline execution),
  returned as a :class:`TrackedRun`.
* :class:`TrackedRun` -- a run addressed by ``(tracking_uri, run_id)``: plain data, so it
  travels to Ray Train workers inside a plan (``to_plan`` / ``from_plan``).

Recording is best effort: a tracking store that fails never stops the work it records (the
failure is printed once per call and the work goes on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from llmops_ray.config import mlflow_tracking_uri


def mlflow_client():
    """An ``MlflowClient`` on the project's store (``MLFLOW_TRACKING_URI`` or the workspace);
    also points the ``mlflow`` module's fluent API at it."""
    import mlflow
    from mlflow import MlflowClient

    uri = mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b": "value"}`` (values as text, 500 characters at most: MLflow params)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:500]
    return out


@dataclass
class TrackedRun:
    """An MLflow run; every method is best effort (see the module docstring)."""

    tracking_uri: str
    run_id: str

    def to_plan(self) -> dict[str, str]:
        return {"tracking_uri": self.tracking_uri, "run_id": self.run_id}

    @classmethod
    def from_plan(cls, plan: dict[str, str] | None) -> "TrackedRun | None":
        return cls(plan["tracking_uri"], plan["run_id"]) if plan else None

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def _try(self, what: str, fn) -> None:
        try:
            fn(self._client())
        except Exception as exc:  # noqa: BLE001 - tracking never stops the work
            print(f"[mlflow] {what} failed: {exc}", flush=True)

    def log_metrics(self, metrics: dict[str, Any], step: int = 0, prefix: str = "") -> None:
        """Numeric values of ``metrics`` (others and None are skipped) at ``step``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(prefix + k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
        if batch:
            self._try("log_metrics", lambda c: c.log_batch(self.run_id, metrics=batch))

    def log_params(self, params: dict[str, Any]) -> None:
        """The flattened ``params`` (MLflow takes at most 100 in one batch)."""
        from mlflow.entities import Param

        batch = [Param(k, v) for k, v in flatten(params).items()][:100]
        self._try("log_params", lambda c: c.log_batch(self.run_id, params=batch))

    def set_tag(self, key: str, value: str) -> None:
        self._try("set_tag", lambda c: c.set_tag(self.run_id, key, value))

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        self._try("log_dict", lambda c: c.log_dict(self.run_id, data, name))

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Each existing file of ``paths``."""
        for path in paths:
            if Path(path).exists():
                self._try(f"log_artifact {path}", lambda c, p=path: c.log_artifact(self.run_id, str(p)))

    def finish(self, failed: bool = False, metrics: dict[str, Any] | None = None, artifacts: Iterable[Path] = ()) -> None:
        """Log the final ``metrics`` and ``artifacts``, then end the run (FINISHED or FAILED)."""
        if metrics:
            self.log_metrics(metrics)
        self.log_artifacts(artifacts)
        self._try("finish", lambda c: c.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED"))


def start_run(experiment: str, run_name: str, tags: dict[str, str] | None = None,
              params: dict[str, Any] | None = None, reopen_unfinished: bool = False) -> TrackedRun | None:
    """A new run of ``experiment`` (created when missing), or with ``reopen_unfinished`` the
    unfinished run of the same ``run_name`` (a resumed training run keeps one MLflow run).
    None when the store is unusable."""
    try:
        from mlflow.tracking import MlflowClient

        uri = mlflow_tracking_uri()
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        if reopen_unfinished:
            runs = client.search_runs([exp_id], max_results=1, filter_string=(
                f"tags.`llmops.run_name` = '{run_name}' and attributes.status != 'FINISHED'"))
            if runs:
                client.update_run(runs[0].info.run_id, status="RUNNING")
                return TrackedRun(uri, runs[0].info.run_id)
        run = TrackedRun(uri, client.create_run(exp_id, run_name=run_name,
                                                tags={"llmops.run_name": run_name, **(tags or {})}).info.run_id)
    except Exception as exc:  # noqa: BLE001 - the tracking store is optional
        print(f"[mlflow] tracking disabled: {exc}", flush=True)
        return None
    if params:
        run.log_params(params)
    return run
