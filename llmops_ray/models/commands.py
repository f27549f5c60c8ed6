"""CLI: ``llmops model merge`` (heavy imports inside the command; ``model bootstrap`` is training: train/commands.py)."""

from __future__ import annotations

from typing import Optional

import typer

from llmops_ray.common.cli_output import group, print_json


def merge_command(
    adapter: str = typer.Option(..., "--adapter", help="LoRA adapter directory (peft format)."),
    out: str = typer.Option(..., "--out", help="Output directory of the merged model."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the adapter's recorded base)."),
) -> None:
    """Merge a LoRA adapter into its base model (a full HF model directory)."""
    from llmops_ray.models.merge import merge_adapter

    print_json(merge_adapter(adapter, out, base), drop=("history",))


def register(app: typer.Typer) -> None:
    model = group(app, "model", "Base models: bootstrap a tiny one, merge adapters.")
    model.command("merge")(merge_command)
