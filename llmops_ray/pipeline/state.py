"""What makes a rerun skip finished stages: fingerprints of a stage's inputs, the state file
``<workspace>/pipeline/<name>/state.json``, the :class:`Runner` that runs or skips each stage,
and the MLflow run of a pipeline execution."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable


from llmops_ray.common.cli_output import Progress, print_progress, say
from llmops_ray.config import workspace_path
from llmops_ray.pipeline.config import PipelineConfig


def digest(*parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts`` (16 hex characters)."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_hash(paths: list[str]) -> str:
    """sha256 over relative names and bytes of every file under ``paths`` (the corpus)."""
    h = hashlib.sha256()
    for root in paths:
        base = Path(root)
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            h.update(str(f.relative_to(base) if f != base else f.name).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def dir_fingerprint(path: str | Path) -> str:
    """Cheap identity of a model directory: names, sizes and mtimes of its files."""
    base = Path(path)
    items = [(str(p.relative_to(base)), p.stat().st_size, p.stat().st_mtime_ns)
             for p in sorted(base.rglob("*")) if p.is_file()]
    return digest(items)


class State:
    """``<workspace>/pipeline/<name>/state.json``: per stage, fingerprint and last result."""

    def __init__(self, name: str):
        self.dir = workspace_path("pipeline", name)
        self.path = self.dir / "state.json"
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                self.data = {}  # an unreadable state only costs a rerun
        self.data.setdefault("stages", {})

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.data["stages"].get(stage)

    def put(self, stage: str, fingerprint: str, result: dict[str, Any]) -> None:
        self.data["stages"][stage] = {"fingerprint": fingerprint, "result": result, "finished_at": time.time()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.path)


def start_tracking(name: str, fingerprint: str):
    """One MLflow run per pipeline execution (client API: no global active run, so the
    stages' own MLflow runs are unaffected); None when the store is unusable."""
    from llmops_ray.common.tracking import start_run

    return start_run(f"pipeline/{name}", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                     tags={"llmops.pipeline": name, "llmops.config_hash": fingerprint})


def track_stage(run, stage: str, status: str, seconds: float, result: dict[str, Any]) -> None:
    """A stage's status tag, duration, numeric results and the result itself."""
    if run is None:
        return
    run.set_tag(f"stage.{stage}", status)
    run.log_metrics({"seconds": seconds, **_numbers(result)}, prefix=f"{stage}.")
    run.log_dict(result, f"stages/{stage}.json")


def _numbers(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and value == value:
            out[name] = float(value)
        elif isinstance(value, dict) and key in ("metrics",):
            out.update(_numbers(value, f"{name}."))
    return {k.replace("@", "_"): v for k, v in out.items()}


def _summary(result: dict[str, Any]) -> str:
    """One line of a stage's scalar results, plus a flat mapping of numbers (the eval metrics)."""
    keep = {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None}
    line = " ".join(f"{k}={v}" for k, v in list(keep.items())[:10])
    for key, value in result.items():
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            line += f" {key}: " + " ".join(f"{k}={v:.4g}" for k, v in value.items())
    return line


class Runner:
    """Runs the stages in order with the skip rule; collects one record per stage."""

    def __init__(self, config: PipelineConfig, progress: Progress = None):
        self.config = config
        self.progress = progress or print_progress
        self.state = State(config.name)
        self.tracker = start_tracking(config.name, digest(config.model_dump(mode="json")))
        self.records: dict[str, dict[str, Any]] = {}

    def stage(self, name: str, fingerprint: str, run: Callable[[], dict[str, Any]],
              outputs_ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        previous = self.state.get(name)
        forced = name in self.config.force or "all" in self.config.force
        if previous and previous["fingerprint"] == fingerprint and not forced:
            try:
                ok = outputs_ok(previous["result"])
            except Exception:  # noqa: BLE001 - an output check that fails means "not there"
                ok = False
            if ok:
                result = previous["result"]
                self.records[name] = {"status": "skipped", "seconds": 0.0, "fingerprint": fingerprint, "result": result}
                say(self.progress, f"[pipeline] {name}: skipped (unchanged, fingerprint {fingerprint}) {_summary(result)}")
                track_stage(self.tracker, name, "skipped", 0.0, result)
                return result
        say(self.progress, f"[pipeline] {name}: running (fingerprint {fingerprint})")
        started = time.monotonic()
        result = run()
        seconds = round(time.monotonic() - started, 1)
        self.state.put(name, fingerprint, result)
        self.records[name] = {"status": "ran", "seconds": seconds, "fingerprint": fingerprint, "result": result}
        say(self.progress, f"[pipeline] {name}: ran in {seconds} s {_summary(result)}")
        track_stage(self.tracker, name, "ran", seconds, result)
        return result
