"""RAG on the serving path: a retriever Serve deployment, prompt building and citations.

The request path of a stack with a knowledge base (all inside one Serve app, handle calls,
no HTTP hops)::

    gateway replica (StackHook.before_request)
      -> Retriever deployment (this module; LanceDB hybrid search, tenant-filtered,
         its own small CPU share and its own embedder, so the gateway's event loop never
         runs an embedding)
      -> context rail (llmops_ray.safety: instructions in chunks neutralised)
      -> prompt builder (the stack's versioned template from the registry's prompt store,
         ``{{context}}`` = numbered chunks ``[1] ...``)
      -> LLM deployment (vLLM)
      -> answer + top-level ``citations`` (first SSE chunk when streaming)

A citation is ``{"marker": "[n]", "doc_id", "source", "chunk_id", "text", "score"}``;
``[n]`` is the marker the prompt gives the chunk and asks the model to cite with.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("llmops_ray.serve.rag")

RETRIEVER_DEPLOYMENT = "Retriever"
MODES = ("vector", "fts", "hybrid")
MAX_K = 50
# Characters of each chunk put into a citation (the prompt gets the whole chunk).
CITATION_TEXT_CHARS = 500


class Retriever:
    """Serve deployment body: ``search(kb, query, k, mode, tenant, filters) -> list[hit]``.

    The tenant filter is applied inside LanceDB (pre-filter on the ``tenant`` column), so a
    tenant never sees another tenant's rows, even for a same-named knowledge base.
    """

    def __init__(self, embedder: str | None = None):
        from llmops_ray.kb.embed import load_embedder

        # Loaded once per replica (a few seconds); queries then embed in ~5 ms.
        self._embedder = load_embedder(embedder)

    def _search(self, kb: str, query: str, k: int, mode: str, tenant: str, filters: dict | None) -> list[dict]:
        from llmops_ray.kb import search

        hits = search(kb, query, k=k, mode=mode, tenant=tenant, filters=filters, embedder=self._embedder)
        return [h for h in hits if h.get("tenant") in (None, tenant)]  # belt and braces

    async def search(self, kb: str, query: str, k: int = 4, mode: str = "hybrid", tenant: str = "default",
                     filters: dict | None = None) -> list[dict]:
        if not tenant:
            raise ValueError("retrieval needs a tenant")
        # LanceDB calls block: run them off the replica's event loop.
        return await asyncio.to_thread(self._search, kb, query, k, mode, tenant, filters)

    async def ping(self) -> bool:
        return True


def retriever_app(num_cpus: float = 0.1, embedder: str | None = None, replicas: int = 1,
                  name: str = RETRIEVER_DEPLOYMENT):
    """The bound Retriever deployment (a ``serve.Application``) with an explicit CPU share."""
    from ray import serve

    from llmops_ray.cluster import runtime_env

    return serve.deployment(
        Retriever,
        name=name,
        num_replicas=replicas,
        max_ongoing_requests=64,
        ray_actor_options={"num_cpus": num_cpus, "runtime_env": {"env_vars": runtime_env()["env_vars"]}},
    ).bind(embedder=embedder)


# --------------------------------------------------------------------------- request helpers


def retrieval_settings(body_value: Any, default_k: int, default_mode: str) -> dict[str, Any]:
    """Validate the ``retrieval: {k, mode, filters}`` extension field (ValueError on bad input)."""
    if body_value is None:
        body_value = {}
    if not isinstance(body_value, dict):
        raise ValueError("'retrieval' must be an object {k, mode, filters}")
    unknown = set(body_value) - {"k", "mode", "filters"}
    if unknown:
        raise ValueError(f"'retrieval' has unknown key {sorted(unknown)[0]!r} (allowed: k, mode, filters)")
    k = body_value.get("k", default_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"'retrieval.k' must be an integer from 1 to {MAX_K}")
    mode = body_value.get("mode", default_mode)
    if mode not in MODES:
        raise ValueError(f"'retrieval.mode' must be one of {', '.join(MODES)}")
    filters = body_value.get("filters") or {}
    if not isinstance(filters, dict):
        raise ValueError("'retrieval.filters' must be an object of column/metadata -> value(s)")
    for key, value in filters.items():
        if not isinstance(value, (str, int, float, bool, list)):
            raise ValueError(f"'retrieval.filters.{key}' must be a scalar or a list")
    # The tenant comes from the API key, never from the request.
    filters = {k_: v for k_, v in filters.items() if k_ != "tenant"}
    return {"k": k, "mode": mode, "filters": filters or None}


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_index(messages: list[dict[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def make_citations(hits: list[dict], texts: list[str], kept: list[int]) -> list[dict[str, Any]]:
    """Citations for the chunks that reach the prompt, numbered ``[1]..[n]`` in prompt order.

    ``texts``/``kept`` come from the context rail: ``texts[j]`` is the (neutralised) text
    of ``hits[kept[j]]``.
    """
    out = []
    for n, (text, index) in enumerate(zip(texts, kept), 1):
        hit = hits[index]
        out.append({
            "marker": f"[{n}]",
            "doc_id": hit.get("doc_id"),
            "source": hit.get("source"),
            "chunk_id": hit.get("chunk_id"),
            "text": text[:CITATION_TEXT_CHARS],
            "score": float(hit.get("score") or 0.0),
        })
    return out


def context_block(citations: list[dict[str, Any]], texts: list[str]) -> str:
    """``{{context}}`` of the prompt: one numbered chunk per paragraph."""
    if not texts:
        return "(no relevant documents found)"
    return "\n\n".join(f"{c['marker']} ({c['source']}) {t.strip()}" for c, t in zip(citations, texts))


CITE_INSTRUCTION = "Cite the context passages you use with their markers, e.g. [1]."


def build_messages(template, messages: list[dict[str, Any]], context: str) -> list[dict[str, Any]]:
    """Chat messages for the engine: the template's system message(s), the conversation so
    far, then the last user turn rendered through the template with the context."""
    index = last_user_index(messages)
    question = message_text(messages[index].get("content")) if index is not None else ""
    rendered = template.render(question=question, context=context)
    system = [m for m in rendered if m["role"] == "system"]
    if system:
        system[-1] = {"role": "system", "content": f"{system[-1]['content']} {CITE_INSTRUCTION}"}
    else:
        system = [{"role": "system", "content": CITE_INSTRUCTION}]
    turn = [m for m in rendered if m["role"] != "system"]
    history = [m for i, m in enumerate(messages) if i != index]
    return system + history + turn
