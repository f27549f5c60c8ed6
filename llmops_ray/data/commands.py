"""CLI command of the ingest pipeline: ``llmops ingest``.

Output contract (see ../shared/GUIDE.md): progress lines, then the JSON summary as the last
stdout line; exit 0 when at least one document was ingested.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from llmops_ray.common.cli_output import print_json


def ingest_command(
    paths: List[str] = typer.Argument(..., help="Files or directories (md, txt, html, pdf, jsonl)."),
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


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
