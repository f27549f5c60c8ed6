"""CLI: ``llmops finetune`` and ``llmops data sft-from-kb`` (heavy imports inside the commands)."""

from __future__ import annotations

from typing import List, Optional

import typer

from llmops_ray.models.commands import group, print_result


def finetune_command(
    overrides: List[str] = typer.Argument(None, help="key=value overrides, e.g. optim.lr=1e-4 lora.rank=16 run_name=x"),
    config: str = typer.Option(..., "--config", help="FinetuneConfig YAML path or shipped name (sft_lora_tiny_cpu, ...)."),
) -> None:
    """Supervised fine-tuning (LoRA or full) on Ray Train + DeepSpeed; rerun the same run_name to resume."""
    from llmops_ray.config import load_config
    from llmops_ray.train.config import FinetuneConfig
    from llmops_ray.train.sft import finetune

    cfg = load_config(FinetuneConfig, config, list(overrides or []))
    print_result(finetune(cfg))


def sft_from_kb_command(
    kb: str = typer.Option(..., "--kb", help="Knowledge base NAME or NAME@VERSION."),
    out: str = typer.Option(..., "--out", help="Output JSONL (chat messages)."),
    max_pairs: int = typer.Option(400, "--max-pairs", help="At most this many question/answer pairs."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant's chunks."),
) -> None:
    """Build an extractive question/answer SFT set (chat form) from a knowledge base's chunks."""
    from llmops_ray.train.kb_sft import build_sft_from_kb

    print_result(build_sft_from_kb(kb, out, max_pairs=max_pairs, tenant=tenant))


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_command)
    data = group(app, "data", "Datasets built from the platform's own stores.")
    data.command("sft-from-kb")(sft_from_kb_command)
