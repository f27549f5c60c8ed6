"""CLI commands of the knowledge base: ``llmops search``, ``llmops kb list|versions|show``.

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
    rerank: Optional[bool] = typer.Option(None, "--rerank/--no-rerank",
                                          help="Force / skip the rerank stage (default: rerank when the KB has a reranker)."),
    rerank_top_n: Optional[int] = typer.Option(None, "--rerank-top-n", help="Fused candidates the reranker rescores."),
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
    if rerank_top_n is not None:
        if rerank is False:
            raise UserError("--rerank-top-n and --no-rerank contradict each other")
        rerank = rerank_top_n
    keys = ("doc_id", "source", "chunk_id", "text", "score", "title", "tenant")
    for q in queries:
        hits = search(kb, q, k=k, mode=mode, tenant=tenant, rerank=rerank)
        # fusion_score / reranked_by / parent_id only where the rerank or parent-child stage set them.
        print_json({"query": q, "hits": [{key: h[key] for key in keys}
                                         | {key: h[key] for key in ("fusion_score", "reranked_by", "parent_id")
                                            if h.get(key) is not None} for h in hits]})


kb_app = typer.Typer(help="Knowledge bases: list them, their versions, their embedder and index.", no_args_is_help=True)


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


@kb_app.command("show")
def kb_show_command(name: str = typer.Argument(..., help="NAME or NAME@VERSION.")) -> None:
    """One JSON object: the KB's version, chunks, embedder (model, dim, fingerprint), vector index and search settings."""
    from llmops_ray.kb.store import kb_info

    print_json(kb_info(name))


@kb_app.command("set-reranker")
def kb_set_reranker_command(
    name: str = typer.Argument(..., help="Knowledge-base name."),
    model: Optional[str] = typer.Option(None, "--model", help="CrossEncoder directory or hub id (offline cache)."),
    top_n: int = typer.Option(20, "--top-n", help="Fused candidates it rescores per query."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    off: bool = typer.Option(False, "--off", help="Remove the KB's default reranker."),
) -> None:
    """Set (or with --off remove) the KB's default reranker; the model is loaded first. Prints {kb, version, reranker}."""
    from llmops_ray.kb.rerank import RerankConfig, kb_reranker_config, set_kb_reranker
    from llmops_ray.kb.store import open_table

    if off == (model is not None):
        raise UserError("give exactly one of --model or --off")
    try:
        config = None if off else RerankConfig(model=model, top_n=top_n, device=device)
    except ValueError as exc:
        raise UserError(f"bad reranker setting: {str(exc).splitlines()[-1].strip()}") from exc
    table = open_table(name)
    version = set_kb_reranker(table, config)
    recorded = kb_reranker_config(table)
    print_json({"kb": name, "version": version, "reranker": recorded.model_dump() if recorded else None})


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
    app.add_typer(kb_app, name="kb")
