"""CLI: ``llmops improve`` (one round of the feedback -> DPO -> gated canary loop)."""

from __future__ import annotations

from typing import List, Optional

import typer

from llmops_ray.common.cli_output import print_json, print_progress


def improve_command(
    overrides: List[str] = typer.Argument(None, help="key=value overrides of the DPO config, e.g. optim.max_steps=20"),
    stack: str = typer.Option(..., "--stack", help="Stack NAME whose production version is improved."),
    suite: List[str] = typer.Option(["sample_kb"], "--suite", help="Evaluation suite(s) (repeatable; file or shipped name); pairwise items give win_rate."),
    config: str = typer.Option("dpo_lora_tiny_cpu", "--config", help="FinetuneConfig with objective: dpo (YAML or shipped name)."),
    since: Optional[str] = typer.Option(None, "--since", help="Feedback window start (24h, ISO date, epoch); default: end of the last round."),
    engine_cpus: float = typer.Option(1.0, "--engine-cpus", help="CPU share of the evaluation's vLLM engine."),
) -> None:
    """Feedback since the last round -> pairs -> DPO from production -> register -> evaluate -> canary when gates pass."""
    from llmops_ray.pipeline.improve import improve

    print_json(improve(stack, suites=list(suite), finetune_config=config, overrides=list(overrides or []), since=since,
                       engine_cpus=engine_cpus, progress=print_progress))


def register(app: typer.Typer) -> None:
    app.command("improve")(improve_command)
