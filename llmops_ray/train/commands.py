"""CLI: ``llmops finetune`` and ``llmops data sft-from-kb`` (heavy imports inside the commands)."""

from __future__ import annotations

from typing import List, Optional

import typer

from llmops_ray.common.cli_output import group, print_json


def finetune_command(
    overrides: List[str] = typer.Argument(None, help="key=value overrides, e.g. optim.lr=1e-4 lora.rank=16 run_name=x"),
    config: str = typer.Option(..., "--config", help="FinetuneConfig YAML path or shipped name (sft_lora_tiny_cpu, ...)."),
) -> None:
    """Supervised fine-tuning (LoRA or full) on Ray Train + DeepSpeed; rerun the same run_name to resume."""
    from llmops_ray.config import load_config
    from llmops_ray.train.config import FinetuneConfig
    from llmops_ray.train.sft import finetune

    cfg = load_config(FinetuneConfig, config, list(overrides or []))
    print_json(finetune(cfg), drop=("history",))


def sft_from_kb_command(
    kb: str = typer.Option(..., "--kb", help="Knowledge base NAME or NAME@VERSION."),
    out: str = typer.Option(..., "--out", help="Output JSONL (chat messages)."),
    max_pairs: int = typer.Option(400, "--max-pairs", help="At most this many question/answer pairs."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant's chunks."),
) -> None:
    """Build an extractive question/answer SFT set (chat form) from a knowledge base's chunks."""
    from llmops_ray.train.kb_sft import build_sft_from_kb

    print_json(build_sft_from_kb(kb, out, max_pairs=max_pairs, tenant=tenant), drop=("history",))


def bootstrap_command(
    args: List[str] = typer.Argument(None, help="key=value config overrides (e.g. optim.max_steps=50); other words are more corpus paths."),
    corpus: List[str] = typer.Option([], "--corpus", help="Corpus files/directories (repeatable); default: the packaged sample corpus."),
    out: Optional[str] = typer.Option(None, "--out", help="Output model directory (default <workspace>/models/tiny-base)."),
    config: Optional[str] = typer.Option(None, "--config", help="BootstrapConfig YAML file or shipped name (bootstrap_tiny_cpu)."),
) -> None:
    """Train a BPE tokenizer and pretrain a small Llama model from scratch on Ray Train + DeepSpeed."""
    from llmops_ray.config import load_config
    from llmops_ray.train.bootstrap import BootstrapConfig, bootstrap

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
    print_json(bootstrap(cfg), drop=("history",))


def tune_retriever_command(
    overrides: List[str] = typer.Argument(None, help="key=value overrides, e.g. epochs=3 lr=3e-5 max_pairs=1000"),
    kb: str = typer.Option(..., "--kb", help="Knowledge base NAME (NAME@VERSION without --apply)."),
    kind: Optional[str] = typer.Option(None, "--kind", help="bi-encoder (default) or cross-encoder."),
    apply: bool = typer.Option(False, "--apply", help="Put the tuned model to work on the KB (new version)."),
    heldout: Optional[str] = typer.Option(None, "--heldout",
                                          help="Evaluation-suite YAML whose retrieval items give recall@5/MRR before and after."),
    out: Optional[str] = typer.Option(None, "--out", help="Model directory (default <workspace>/models/retriever-...)."),
    config: Optional[str] = typer.Option(None, "--config", help="TuneRetrieverConfig YAML file."),
) -> None:
    """Fine-tune a retriever (embedder or reranker) on pairs built from the KB itself, on Ray Train."""
    from llmops_ray.common.cli_output import print_progress
    from llmops_ray.config import UserError, load_config
    from llmops_ray.train.retriever import KINDS, TuneRetrieverConfig, tune_retriever

    cfg = load_config(TuneRetrieverConfig, config, list(overrides or []))
    updates = {}
    if kind is not None:
        if kind not in KINDS:
            raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
        updates["kind"] = kind
    if out:
        updates["out"] = out
    if updates:
        cfg = cfg.model_copy(update=updates)
    print_json(tune_retriever(kb, cfg, apply=apply, heldout=heldout, progress=print_progress))


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_command)
    # Onto the `kb` group that llmops_ray.kb.commands registered first (the kb layer cannot
    # import training code, so the command is registered from here).
    kb = group(app, "kb", "Knowledge bases: list them and their versions.")
    kb.command("tune-retriever")(tune_retriever_command)
    data = group(app, "data", "Datasets built from the platform's own stores.")
    data.command("sft-from-kb")(sft_from_kb_command)
    model = group(app, "model", "Base models: bootstrap a tiny one, merge adapters.")
    model.command("bootstrap")(bootstrap_command)
