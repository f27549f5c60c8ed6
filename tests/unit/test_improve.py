"""``llmops improve`` round logic on a real request log (LanceDB), real pairs building and a
real MLflow registry: round 1 trains, registers with lineage and puts a canary up when the
gates pass; a rerun with no new feedback does nothing; new feedback makes round 2, whose
refused gates leave the canary where it was.

The DPO run and the vLLM evaluation are replaced by small stand-ins here (they have their
own tests: tests/integration/test_dpo_train.py, test_evaluate_stack.py): the stand-in trainer
writes a real peft adapter for the tiny model, the stand-in evaluation stores the metrics a
test chooses through the registry's own ``record_eval``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmops_ray.config import UserError

STACK = "improve-test"


def _log_and_rate(db: Path, start: int, question: str, good: str, bad: str) -> None:
    from llmops_ray.observe.request_log import RequestLogger, submit_feedback

    logger = RequestLogger(db_dir=db)
    for i, answer in ((start, good), (start + 1, bad)):
        logger.log({"request_id": f"req-{i}", "response_id": f"chatcmpl-{i}", "ts": time.time(), "tenant": "acme",
                    "stack": STACK, "model": STACK, "variant": "production", "status": 200,
                    "request": {"messages": [{"role": "user", "content": question}]}, "response": answer})
    assert logger.flush(30)
    logger.close()
    submit_feedback({"response_id": f"chatcmpl-{start}", "rating": "up"}, db_dir=db)
    submit_feedback({"response_id": f"chatcmpl-{start + 1}", "rating": "down"}, db_dir=db)


class _Steps:
    """Stand-ins for the heavy steps; they record what they were given."""

    def __init__(self, model_dir: Path, win_rates: list[float]):
        from llmops_ray.registry import register_stack

        self.model_dir, self.win_rates = model_dir, list(win_rates)
        self.trained: list = []
        self.evaluated: list[str] = []
        self.register = register_stack

    def finetune(self, cfg):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        self.trained.append(cfg)
        out = Path(cfg.output_dir)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(self.model_dir),
                               LoraConfig(r=2, target_modules=["q_proj"]))
        model.save_pretrained(out)
        (out / "lineage.json").write_text(json.dumps({"kind": "lora-adapter", "objective": cfg.objective,
                                                      "base_model": str(self.model_dir)}))
        return {"output_dir": str(out), "metrics": {"val_reward_accuracy": 1.0}}

    def evaluate(self, ref: str, suite: str, engine_cpus: float = 1.0):
        from llmops_ray.registry import record_eval, resolve_stack

        self.evaluated.append(ref)
        stack = resolve_stack(ref)
        metrics = {"win_rate": self.win_rates.pop(0), "token_f1": 0.5}
        record_eval(stack.name, stack.version, "pw", {"metrics": metrics, "evaluated_at": "2026-12-05T00:00:00Z"})
        return {"metrics": metrics}

    def as_round_steps(self):
        from llmops_ray.pipeline.improve import RoundSteps

        return RoundSteps(finetune=self.finetune, register=self.register, evaluate=self.evaluate)


@pytest.fixture()
def production(tiny_model_dir):
    from llmops_ray.registry import ensure_default_prompt, register_stack, set_alias

    manifest = {"name": STACK, "base_model": str(tiny_model_dir), "prompt": ensure_default_prompt("qa-improve").ref,
                "policy": {"gates": [{"metric": "win_rate", "threshold": 0.5},
                                     {"metric": "token_f1", "tolerance": 0.05}]}}
    version = register_stack(manifest, eval_results={"pw": {"metrics": {"token_f1": 0.5},
                                                           "evaluated_at": "2026-12-01T00:00:00Z"}})
    set_alias(STACK, "production", version.version)
    return version


def test_round_then_noop_rerun_then_refused_round(tiny_model_dir, production, tmp_path):
    from llmops_ray.pipeline.improve import improve, read_state
    from llmops_ray.registry import resolve_stack

    db = tmp_path / "logs"
    _log_and_rate(db, 1, "What does E12 mean?", "E12 is a pump fault [1].", "Bananas are yellow.")
    steps = _Steps(tiny_model_dir, win_rates=[0.75, 0.25])

    first = improve(STACK, suites=["pw"], db_dir=str(db), steps=steps.as_round_steps())
    assert first["status"] == "canary" and first["round"] == 1 and first["pairs"] == 1
    assert steps.trained[0].objective == "dpo" and steps.trained[0].base_model == str(tiny_model_dir.resolve()) \
        or steps.trained[0].base_model == str(tiny_model_dir)
    assert steps.trained[0].data.path == first["pairs_file"]
    canary = resolve_stack(f"{STACK}@canary")
    assert canary.ref == first["candidate"] and canary.version != production.version
    improve_lineage = canary.lineage["improve"]
    assert improve_lineage["parent_version"] == production.version
    assert improve_lineage["pairs_sha256"] == first["pairs_sha256"] and len(first["pairs_sha256"]) == 64
    assert resolve_stack(f"{STACK}@production").version == production.version  # production is untouched

    # Nothing new: no training, no registration, no evaluation.
    again = improve(STACK, suites=["pw"], db_dir=str(db), steps=steps.as_round_steps())
    assert again["status"] == "no-new-feedback" and again["pairs"] == 0
    assert len(steps.trained) == 1 and len(steps.evaluated) == 1
    assert len(read_state(STACK)["rounds"]) == 1

    # New feedback -> round 2; it loses to production, so the canary stays on round 1's version.
    _log_and_rate(db, 10, "Warranty length?", "Two years [2].", "Forever.")
    second = improve(STACK, suites=["pw"], db_dir=str(db), steps=steps.as_round_steps())
    assert second["status"] == "gates-refused" and second["round"] == 2 and second["pairs"] == 1
    assert any("win_rate" in f["metric"] and not f["passed"] for f in second["gates"]["checks"])
    assert resolve_stack(f"{STACK}@canary").version == canary.version
    assert [r["status"] for r in read_state(STACK)["rounds"]] == ["canary", "gates-refused"]


def test_improve_needs_a_production_version_and_a_dpo_config(tiny_model_dir, tmp_path):
    from llmops_ray.pipeline.improve import improve

    with pytest.raises(UserError, match="no production version"):
        improve("no-such-stack", db_dir=str(tmp_path))
