"""``llmops eval --stack NAME@ALIAS_OR_VERSION --suite FILE``: prints the metrics as one JSON line."""

from __future__ import annotations


import typer
from llmops_ray.common.cli_output import print_json


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        stack: str = typer.Option(..., "--stack", help="NAME@ALIAS_OR_VERSION"),
        suite: str = typer.Option(..., "--suite", help="Suite file (YAML/JSONL) or a shipped suite name"),
        engine_cpus: float = typer.Option(1.0, "--engine-cpus", help="CPUs reserved for the vLLM engine"),
        engine_gpus: float = typer.Option(0.0, "--engine-gpus", help="GPUs for the vLLM engine (GPU clusters)"),
        no_store: bool = typer.Option(False, "--no-store", help="Do not store results on the stack version"),
    ) -> None:
        """Evaluate a stack version on a suite; results are stored with the version."""
        from llmops_ray.evaluate.run import evaluate_stack
        from llmops_ray.evaluate.suite import load_suite
        from llmops_ray.registry import resolve_stack

        loaded = load_suite(suite)  # bad suites / refs fail before Ray starts
        resolve_stack(stack)
        result = evaluate_stack(stack, loaded, store=not no_store, engine_cpus=engine_cpus, engine_gpus=engine_gpus)
        print_json({k: result.get(k) for k in
                          ("stack", "version", "suite", "metrics", "counts", "results_path", "report")})
