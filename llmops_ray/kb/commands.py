"""CLI commands of the knowledge base: ``llmops search``, ``llmops kb list|versions``.

Output contract (see ../shared/GUIDE.md): ``search`` prints one JSON line per query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmops_ray.common.cli_output import print_json
from llmops_ray.config import UserError


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
        print_json({"query": q, "hits": [{key: h[key] for key in keys} for h in hits]})


kb_app = typer.Typer(help="Knowledge bases: list them and their versions.", no_args_is_help=True)


@kb_app.command("list")
def kb_list_command() -> None:
    """One JSON line per knowledge base: name, version, chunks, documents, tenants."""
    from llmops_ray.kb.store import list_kbs

    for info in list_kbs():
        print_json(info)


@kb_app.command("versions")
def kb_versions_command(name: str = typer.Argument(..., help="Knowledge-base name.")) -> None:
    """One JSON line per version of NAME (oldest first) with its ingest tags."""
    from llmops_ray.kb.store import kb_versions

    for info in kb_versions(name):
        print_json(info)


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
    app.add_typer(kb_app, name="kb")
