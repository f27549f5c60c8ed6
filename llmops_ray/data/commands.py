"""CLI commands of the data area: ``llmops ingest``, ``llmops data pairs-from-feedback``,
``llmops data pairs-from-judge`` and ``llmops annotate``.

Output contract (see ../shared/GUIDE.md): progress lines, then the JSON summary as the last
stdout line; exit 0 when at least one document was ingested.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from llmops_ray.common.cli_output import print_json


def ingest_command(
    paths: List[str] = typer.Argument(..., help="Files or directories (md, txt, html, pdf, docx, jsonl)."),
    kb: str = typer.Option(..., "--kb", help="Knowledge-base name (one LanceDB table)."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the documents belong to."),
    mode: str = typer.Option("incremental", "--mode", help="incremental (default) or rebuild."),
    sync: bool = typer.Option(False, "--sync", help="Also delete documents whose source under PATHS is gone."),
    config: Optional[str] = typer.Option(None, "--config", help="IngestConfig YAML file."),
    overrides: List[str] = typer.Option([], "--set", help="IngestConfig override key=value (repeatable)."),
) -> None:
    """Ingest documents into a knowledge base; the last stdout line is the JSON summary."""
    from llmops_ray.data.ingest import ingest, load_ingest_config

    cfg = load_ingest_config(config, overrides)

    def progress(message: str) -> None:
        print(message, flush=True)

    summary = ingest(paths, kb, tenant=tenant, mode=mode, sync=sync, config=cfg, progress=progress)
    print_json(summary)
    ingested = summary["documents_written"] + summary["documents_unchanged"]
    raise typer.Exit(0 if ingested > 0 else 1)


def pairs_from_feedback_command(
    out: str = typer.Option(..., "--out", help="Output pairs JSONL (its lineage goes to OUT.lineage.json)."),
    since: Optional[str] = typer.Option(None, "--since", help="Feedback given since: 24h, 7d, or an ISO date (default: all)."),
    stack: Optional[str] = typer.Option(None, "--stack", help="Only feedback on this stack (default: every stack)."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant's feedback."),
) -> None:
    """Preference pairs from /v1/feedback and the request log: up vs down answers to one prompt, corrections vs answers."""
    from llmops_ray.common.cli_output import print_progress
    from llmops_ray.data.pairs import pairs_from_feedback

    print_json(pairs_from_feedback(since, out, stack=stack, tenant=tenant, progress=print_progress))


def pairs_from_judge_command(
    stack: str = typer.Option(..., "--stack", help="Served stack (the model name sent to the endpoint)."),
    prompts: str = typer.Option(..., "--prompts", help="Prompts: JSONL rows with prompt (text or chat messages), or one prompt per line."),
    out: str = typer.Option(..., "--out", help="Output pairs JSONL (its lineage goes to OUT.lineage.json)."),
    judge_model: str = typer.Option(..., "--judge-model", help="Model name of the judge on the judge endpoint."),
    base_url: str = typer.Option("http://127.0.0.1:8000/v1", "--base-url", help="OpenAI-compatible endpoint serving the stack."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding its API key."),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="Judge endpoint (default: --base-url)."),
    judge_api_key_env: Optional[str] = typer.Option(None, "--judge-api-key-env", help="Environment variable of the judge's key (default: --api-key-env)."),
    temperature: float = typer.Option(0.9, "--temperature", help="Sampling temperature of the two answers (> 0)."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Longest sampled answer, tokens."),
    concurrency: int = typer.Option(4, "--concurrency", help="Prompts in flight at once."),
    timeout_s: float = typer.Option(120.0, "--timeout", help="Per-request timeout, seconds."),
) -> None:
    """Preference pairs from a judge: two sampled answers per prompt, judged in both orders; ties and flips dropped."""
    import os

    from llmops_ray.common.cli_output import print_progress
    from llmops_ray.data.pairs import pairs_from_judge

    judge_key = os.environ.get(judge_api_key_env) if judge_api_key_env else None
    print_json(pairs_from_judge(
        stack, prompts, out, base_url=base_url, api_key=os.environ.get(api_key_env), judge_model=judge_model,
        judge_base_url=judge_base_url, judge_api_key=judge_key, temperature=temperature, max_tokens=max_tokens,
        concurrency=concurrency, timeout_s=timeout_s, progress=print_progress,
    ))


def annotate_command(
    in_path: str = typer.Option(..., "--in", help="JSONL rows: a prompt with two answers (prompt, answers), or pairs (prompt, chosen, rejected) to review."),
    out: str = typer.Option(..., "--out", help="Output pairs JSONL; progress is kept in OUT.progress.json (rerun to resume)."),
) -> None:
    """Terminal annotation queue: pick the better of two answers (a/b), s to skip, q to quit and resume later."""
    import sys

    from llmops_ray.data.annotate import annotate

    print_json(annotate(in_path, out, stdin=sys.stdin, stdout=sys.stdout))


def register(app: typer.Typer) -> None:
    from llmops_ray.common.cli_output import group

    app.command("ingest")(ingest_command)
    app.command("annotate")(annotate_command)
    data = group(app, "data", "Datasets built from the platform's own stores.")
    data.command("pairs-from-feedback")(pairs_from_feedback_command)
    data.command("pairs-from-judge")(pairs_from_judge_command)
