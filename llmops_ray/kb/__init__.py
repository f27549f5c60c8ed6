"""Knowledge bases in LanceDB: versions and tags, vector / full-text / hybrid search.

Public API (plain calls, no Ray): :func:`search`, :func:`list_kbs`, :func:`kb_versions`;
embeddings in :mod:`llmops_ray.kb.embed`. Imports are lazy so the CLI starts fast.
"""

from __future__ import annotations

from typing import Any


def search(
    kb: str,
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    tenant: str | None = None,
    filters: dict | None = None,
    embedder: Any = None,
    rerank: bool | int | None = None,
    reranker: Any = None,
    include_flagged: bool = False,
) -> list[dict]:
    """Top-k chunks of ``kb`` (``NAME`` or ``NAME@VERSION``); see :func:`llmops_ray.kb.query.search`."""
    from llmops_ray.kb.query import search as _search

    return _search(kb, query, k=k, mode=mode, tenant=tenant, filters=filters, embedder=embedder, rerank=rerank,
                   reranker=reranker, include_flagged=include_flagged)


def list_kbs() -> list[dict]:
    """Every knowledge base with its latest version and sizes."""
    from llmops_ray.kb.store import list_kbs as _list

    return _list()


def kb_versions(name: str) -> list[dict]:
    """Versions (with their ``ingest-<n>`` tags) of knowledge base ``name``, oldest first."""
    from llmops_ray.kb.store import kb_versions as _versions

    return _versions(name)
