"""CLI commands of the knowledge base: ``llmops ingest``, ``llmops search``, ``llmops kb list|versions``.

Output contracts (see ../shared/GUIDE.md): ``ingest`` prints progress lines and, as its
last stdout line, the JSON summary; ``search`` prints one JSON line per query.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from llmops_ray.config import UserError


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


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
    from llmops_ray.data.pipeline import ingest, load_ingest_config

    cfg = load_ingest_config(config, overrides)

    def progress(message: str) -> None:
        print(message, flush=True)

    summary = ingest(paths, kb, tenant=tenant, mode=mode, sync=sync, config=cfg, progress=progress)
    _print_json(summary)
    ingested = summary["documents_written"] + summary["documents_unchanged"]
    raise typer.Exit(0 if ingested > 0 else 1)


def search_command(
    kb: str = typer.Option(..., "--kb", help="NAME or NAME@VERSION (a version number or an ingest-<n> tag)."),
    query: Optional[str] = typer.Option(None, "--query", help="One query."),
    queries_file: Optional[Path] = typer.Option(None, "--queries-file", help="One query per line."),
    k: int = typer.Option(5, "--k", help="Hits per query."),
    mode: str = typer.Option("hybrid", "--mode", help="vector, fts or hybrid (RRF)."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant's documents."),
) -> None:
    """Search a knowledge base: one JSON line per query with its hits, best first."""
    from llmops_ray.kb.query import search

    if (query is None) == (queries_file is None):
        raise UserError("give exactly one of --query or --queries-file")
    if queries_file is not None:
        try:
            lines = queries_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserError(f"{queries_file}: {exc.strerror}") from exc
        queries = [q.strip() for q in lines if q.strip()]
    else:
        queries = [query]
    keys = ("doc_id", "source", "chunk_id", "text", "score", "title", "tenant")
    for q in queries:
        hits = search(kb, q, k=k, mode=mode, tenant=tenant)
        _print_json({"query": q, "hits": [{key: h[key] for key in keys} for h in hits]})


kb_app = typer.Typer(help="Knowledge bases: list them and their versions.", no_args_is_help=True)


@kb_app.command("list")
def kb_list_command() -> None:
    """One JSON line per knowledge base: name, version, chunks, documents, tenants."""
    from llmops_ray.kb.store import list_kbs

    for info in list_kbs():
        _print_json(info)


@kb_app.command("versions")
def kb_versions_command(name: str = typer.Argument(..., help="Knowledge-base name.")) -> None:
    """One JSON line per version of NAME (oldest first) with its ingest tags."""
    from llmops_ray.kb.store import kb_versions

    for info in kb_versions(name):
        _print_json(info)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
    app.command("search")(search_command)
    app.add_typer(kb_app, name="kb")
