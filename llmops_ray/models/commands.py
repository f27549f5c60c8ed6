"""CLI: ``llmops model bootstrap`` and ``llmops model merge`` (heavy imports inside the commands)."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer


def group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """The sub-app ``name`` of ``app``, reusing one another area already registered."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


def print_result(result: dict) -> None:
    """Last stdout line: the result as one JSON object (history left out)."""
    sys.stdout.write(json.dumps({k: v for k, v in result.items() if k != "history"}, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def bootstrap_command(
    args: List[str] = typer.Argument(None, help="key=value config overrides (e.g. optim.max_steps=50); other words are more corpus paths."),
    corpus: List[str] = typer.Option([], "--corpus", help="Corpus files/directories (repeatable); default: the packaged sample corpus."),
    out: Optional[str] = typer.Option(None, "--out", help="Output model directory (default <workspace>/models/tiny-base)."),
    config: Optional[str] = typer.Option(None, "--config", help="BootstrapConfig YAML file or shipped name (bootstrap_tiny_cpu)."),
) -> None:
    """Train a BPE tokenizer and pretrain a small Llama model from scratch on Ray Train + DeepSpeed."""
    from llmops_ray.config import load_config
    from llmops_ray.models.bootstrap import BootstrapConfig, bootstrap

    args = list(args or [])
    overrides = [a for a in args if "=" in a]
    paths = list(corpus) + [a for a in args if "=" not in a]
    cfg = load_config(BootstrapConfig, config, overrides)
    updates = {}
    if paths:
        updates["corpus"] = paths
    if out:
        updates["out"] = out
    if updates:
        cfg = cfg.model_copy(update=updates)
    print_result(bootstrap(cfg))


def merge_command(
    adapter: str = typer.Option(..., "--adapter", help="LoRA adapter directory (peft format)."),
    out: str = typer.Option(..., "--out", help="Output directory of the merged model."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the adapter's recorded base)."),
) -> None:
    """Merge a LoRA adapter into its base model (a full HF model directory)."""
    from llmops_ray.models.merge import merge_adapter

    print_result(merge_adapter(adapter, out, base))


def register(app: typer.Typer) -> None:
    model = group(app, "model", "Base models: bootstrap a tiny one, merge adapters.")
    model.command("bootstrap")(bootstrap_command)
    model.command("merge")(merge_command)
