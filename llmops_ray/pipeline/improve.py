"""``llmops improve --stack NAME``: one round of the feedback loop.

feedback given since the last round -> preference pairs (``data.pairs.pairs_from_feedback``)
-> DPO from the current production version (``train``, Ray Train + DeepSpeed) -> register the
candidate with its lineage (pairs hash, parent version) -> evaluate it (the suite, with its
pairwise win rate against production) -> when the stack policy's gates pass, point the
``canary`` alias at it. The gateway then sends the canary its weight of the traffic (the
serve config's ``stacks.<name>.variants``) and rolls it back on an SLO breach, as for any canary.

Rounds are remembered in ``<workspace>/improve/<stack>/state.json``: the end of the feedback
window of the last round (the next round starts there) and the hash of its pairs. A rerun with
no new feedback (no pairs, or the same pairs as last time) does nothing and says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmops_ray.common.cli_output import Progress, say
from llmops_ray.config import UserError, workspace_path

CANARY = "canary"
PRODUCTION = "production"


@dataclass
class RoundSteps:
    """The heavy steps of a round, each a library call (replaceable where a caller, e.g. a
    test of the round logic, runs them elsewhere)."""

    finetune: Callable[[Any], dict[str, Any]]
    """``FinetuneConfig -> result`` (``output_dir``, ``metrics``)."""
    register: Callable[..., Any]
    """``register_stack(manifest, lineage=...) -> StackVersion``."""
    evaluate: Callable[..., dict[str, Any]]
    """``evaluate_stack(ref, suite, engine_cpus=...) -> result``."""

    @classmethod
    def default(cls) -> "RoundSteps":
        from llmops_ray.evaluate.run import evaluate_stack
        from llmops_ray.registry import register_stack
        from llmops_ray.train import finetune

        return cls(finetune=finetune, register=register_stack, evaluate=evaluate_stack)


def state_path(stack: str) -> Path:
    return workspace_path("improve", stack) / "state.json"


def read_state(stack: str) -> dict[str, Any]:
    path = state_path(stack)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"rounds": []}


def _write_state(stack: str, state: dict[str, Any]) -> None:
    path = state_path(stack)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def improve(
    stack: str,
    suites: list[str] | tuple[str, ...] = ("sample_kb",),
    finetune_config: str = "dpo_lora_tiny_cpu",
    overrides: list[str] | None = None,
    since: str | None = None,
    engine_cpus: float = 1.0,
    db_dir: str | None = None,
    steps: RoundSteps | None = None,
    progress: Progress = None,
) -> dict[str, Any]:
    """Run one improvement round for ``stack``; returns what happened (``status``:
    ``no-new-feedback``, ``gates-refused`` or ``canary``, with the pairs, the candidate, its
    metrics and the gate report).

    ``suites`` are evaluated in turn (their metrics together are what the gates read; a
    suite with ``pairwise`` items gives ``win_rate`` against production).
    ``since`` overrides where the feedback window starts (default: where the last round
    ended; the first round takes all feedback). ``overrides`` are ``key=value`` settings of
    the DPO config (``finetune_config``, a FinetuneConfig with ``objective: dpo``).
    """
    from llmops_ray.config import load_config
    from llmops_ray.data.pairs import pairs_from_feedback
    from llmops_ray.registry import evaluate_gates, resolve_stack, set_alias
    from llmops_ray.train.config import FinetuneConfig

    try:
        production = resolve_stack(f"{stack}@{PRODUCTION}")
    except UserError as exc:
        raise UserError(f"stack {stack!r} has no production version to improve ({exc})") from None
    cfg = load_config(FinetuneConfig, finetune_config, list(overrides or []))
    if cfg.objective != "dpo":
        raise UserError(f"{finetune_config}: objective must be dpo for `llmops improve`, got {cfg.objective!r}")
    state = read_state(stack)
    window_start = since if since is not None else state.get("feedback_until")
    window_end = time.time()
    round_no = len(state["rounds"]) + 1
    round_dir = workspace_path("improve", stack, f"round-{round_no}")

    say(progress, f"round {round_no}: pairs from feedback on {stack} since {window_start or 'the beginning'}")
    pairs = pairs_from_feedback(window_start, str(round_dir / "pairs.jsonl"), stack=stack, db_dir=db_dir)
    last_sha = state["rounds"][-1]["pairs_sha256"] if state["rounds"] else None
    if pairs["pairs"] == 0 or pairs["sha256"] == last_sha:
        return {"status": "no-new-feedback", "stack": stack, "round": None, "pairs": pairs["pairs"],
                "since": window_start, "production_version": production.version,
                "reason": "no feedback made a pair since the last round" if pairs["pairs"] == 0
                else "the pairs are the same as the last round's"}

    steps = steps or RoundSteps.default()
    start_model = production.adapter or production.base_model  # an SFT adapter is merged, then tuned
    cfg = load_config(FinetuneConfig, finetune_config, list(overrides or []) + [
        f"base_model={start_model}", f"data.path={pairs['out']}", f"run_name=improve-{stack}-r{round_no}",
        f"output_dir={round_dir / 'adapter'}"])
    say(progress, f"round {round_no}: DPO on {pairs['pairs']} pairs from {production.ref}")
    trained = steps.finetune(cfg)
    lineage_file = Path(trained["output_dir"]) / "lineage.json"
    trained_base = json.loads(lineage_file.read_text())["base_model"] if lineage_file.is_file() else production.base_model
    manifest = production.manifest.model_dump(mode="json")
    manifest.update(base_model=trained_base, adapter=trained["output_dir"],
                    description=f"improve round {round_no} of {production.ref}: DPO on {pairs['pairs']} feedback pairs")
    candidate = steps.register(manifest, lineage={"improve": {
        "round": round_no, "parent_version": production.version, "pairs_path": pairs["out"],
        "pairs_sha256": pairs["sha256"], "pairs": pairs["pairs"], "feedback_since": window_start,
        "feedback_until": window_end, "finetune_config": finetune_config}})
    say(progress, f"round {round_no}: registered {candidate.ref}; evaluating on {', '.join(suites)}")
    metrics: dict[str, Any] = {}
    for suite in suites:
        metrics.update(steps.evaluate(candidate.ref, suite, engine_cpus=engine_cpus).get("metrics") or {})
    candidate = resolve_stack(candidate.ref)  # with its stored results
    report = evaluate_gates(candidate.manifest.policy.gates, candidate.metrics(), production.metrics(),
                            production.version)
    status = "gates-refused"
    if report.passed:
        set_alias(stack, CANARY, candidate.version, reason=f"improve round {round_no}: gates passed")
        status = CANARY
    state.setdefault("rounds", []).append({
        "round": round_no, "status": status, "candidate_version": candidate.version,
        "parent_version": production.version, "pairs_sha256": pairs["sha256"], "pairs": pairs["pairs"],
        "since": window_start, "until": window_end, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    state["feedback_until"] = window_end
    _write_state(stack, state)
    return {"status": status, "stack": stack, "round": round_no, "candidate": candidate.ref,
            "parent_version": production.version, "pairs": pairs["pairs"], "pairs_sha256": pairs["sha256"],
            "pairs_file": pairs["out"], "adapter": trained["output_dir"],
            "train_metrics": trained.get("metrics"), "metrics": metrics,
            "gates": report.to_dict(), "canary": candidate.ref if status == CANARY else None}
