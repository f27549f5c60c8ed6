"""A 4-trial ASHA search on the tiny model (Ray Train inside Ray Tune), its MLflow runs, the best
trial registered as a stack version with the search as lineage, and an idempotent resume."""

from __future__ import annotations

import json

import pytest


def _sft_file(path, n: int = 40):
    facts = [("What does Ray Train do?", "Ray Train runs distributed training."),
             ("Where are vectors stored?", "Vectors are stored in LanceDB."),
             ("What serves models?", "Ray Serve serves the models."),
             ("What tracks experiments?", "MLflow tracks the experiments.")]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            q, a = facts[i % len(facts)]
            f.write(json.dumps({"messages": [{"role": "user", "content": q},
                                             {"role": "assistant", "content": a}]}) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_asha_search_registers_best_trial_and_resumes(ray_session, tiny_model_dir, tmp_path):
    import mlflow

    from llmops_ray.registry import resolve_stack
    from llmops_ray.common.tracking import mlflow_client
    from llmops_ray.tune.search import load_search_config, run_search

    data = _sft_file(tmp_path / "sft.jsonl")
    overrides = [
        f"data={data}", f"base_model={tiny_model_dir}", "name=it-asha", "num_samples=4", "max_t=2",
        "overrides=[optim.max_steps=4,optim.micro_batch_size=4,checkpoint.every_steps=2,log_every=2,"
        "data.max_seq_len=64]",
        "registration={stack: it-tuned, alias: staging}",
    ]
    config = load_search_config("tune_asha_tiny_cpu", overrides)
    out = run_search(config)

    # Trials ASHA stopped leave neither a placement group nor Train's detached cleaner behind.
    from llmops_ray.tune.cleanup import _live_cleaners, orphaned_placement_groups

    assert orphaned_placement_groups() == [] and _live_cleaners()[0] == []
    assert len(out["trials"]) == 4 and not out["resumed"]
    assert all(t["error"] is None for t in out["trials"])
    best = out["best"]
    assert best["completed"] and best["last"] is not None and best["iterations"] == 2
    # ASHA (grace 1) spends at most what 4 full trials would.
    assert 4 <= out["total_iterations"] <= 4 * 2
    assert min(t["last"] for t in out["trials"] if t["completed"]) == best["last"]

    stack = resolve_stack("it-tuned@staging")
    assert stack.adapter == best["output_dir"]
    search = stack.lineage["search"]
    assert search["best_trial_id"] == best["trial_id"] and search["trials"] == 4
    assert stack.lineage["training"]["run_name"].startswith("it-asha-")

    # The LoRA stack is what evaluation loads: merged once into a cached model directory.
    from llmops_ray.evaluate.generate import materialize_model
    from llmops_ray.models.base import load_causal_lm

    merged = materialize_model(stack.base_model, stack.adapter, "it-tuned")
    assert merged != stack.base_model and materialize_model(stack.base_model, stack.adapter, "it-tuned") == merged
    assert load_causal_lm(merged).config.model_type == "llama"

    # Every trial is an MLflow run of the search's experiment (plus the summary run).
    mlflow_client()
    experiment = mlflow.get_experiment_by_name("tune/it-asha")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert len(runs) >= 5
    assert any(r.data.tags.get("llmops.search") == "true" for r in runs)

    # Same name again: Tuner.restore finds a finished experiment and trains nothing new.
    again = run_search(load_search_config("tune_asha_tiny_cpu", overrides[:-1] + ["registration={}"]))
    assert again["resumed"] and again["best"]["trial_id"] == best["trial_id"]
    assert again["total_iterations"] == out["total_iterations"]
    assert again["stack"] is None  # registration={} cleared the config's registration


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_optuna_search_samples_the_space_and_reports_the_best_trial(ray_session, tiny_model_dir, tmp_path):
    """The optional Optuna (TPE) searcher: same trainable, ASHA on top, 2 trials."""
    import mlflow

    from llmops_ray.registry import resolve_stack
    from llmops_ray.common.tracking import mlflow_client
    from llmops_ray.tune.search import load_search_config, run_search

    data = _sft_file(tmp_path / "sft.jsonl")
    config = load_search_config("tune_optuna_tiny_cpu", [
        f"data={data}", f"base_model={tiny_model_dir}", "name=it-optuna", "num_samples=2", "max_t=2",
        "overrides=[optim.max_steps=4,optim.micro_batch_size=4,checkpoint.every_steps=2,log_every=2,"
        "data.max_seq_len=64]",
        "registration.stack=it-optuna-tuned",
    ])
    assert config.search == "optuna"
    out = run_search(config)

    assert len(out["trials"]) == 2 and all(t["error"] is None for t in out["trials"])
    configs = [t["config"] for t in out["trials"]]
    # Optuna drew every dimension from the space: floats for the uniform ones, within bounds.
    for c in configs:
        assert 1.0e-4 <= c["optim.lr"] <= 2.0e-2 and c["lora.rank"] in (4, 8, 16)
        assert isinstance(c["lora.alpha"], float) and 8 <= c["lora.alpha"] <= 32
        assert 0.0 <= c["optim.warmup_ratio"] <= 0.2
    assert len({round(c["optim.lr"], 12) for c in configs}) == 2  # distinct suggestions
    best = out["best"]
    assert best["completed"] and best["last"] == min(t["last"] for t in out["trials"] if t["completed"])
    # The best trial's adapter is registered with the Optuna search as its lineage.
    stack = resolve_stack(f"it-optuna-tuned@{out['stack']['version']}")
    assert stack.adapter == best["output_dir"]
    assert stack.lineage["search"]["search"] == "optuna" and stack.lineage["search"]["trials"] == 2

    mlflow_client()
    experiment = mlflow.get_experiment_by_name("tune/it-optuna")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    summary = [r for r in runs if r.data.tags.get("llmops.search") == "true"]
    assert len(summary) == 1 and summary[0].data.params["search"] == "optuna"
    assert len(runs) >= 3  # 2 trials + the summary run
