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

Rerank: the Retriever reranks with its own cross-encoder (``reranker``, loaded when the
replica starts: a model that cannot be loaded fails the deployment, never a query), else with
the KB's default reranker; ``retrieval.rerank`` (false / true / top-N) sets it per request.
Parent-child KBs: the prompt gets each hit's ``context`` (its enclosing section) while the
citation keeps the small chunk's id and text.
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

    def __init__(self, embedder: str | None = None, reranker: dict | None = None):
        from llmops_ray.kb.embed import cached_embedder
        from llmops_ray.kb.rerank import RerankConfig, load_reranker

        # The cross-encoder is loaded at start too: a model that cannot be loaded fails the
        # replica's start (the deploy) with the loader's one-line reason, never a query.
        self._reranker = load_reranker(RerankConfig.model_validate(reranker or {}))

        # Preloaded once per replica (a few seconds), so the first query does not pay for it.
        # Each query is embedded with the embedder its KB records (``kb.search`` loads and
        # caches it per process), so a KB built with another model is searched with that model.
        cached_embedder(embedder)

    def _search(self, kb: str, query: str, k: int, mode: str, tenant: str, filters: dict | None,
                rerank: bool | int | None = None, include_flagged: bool = False) -> list[dict]:
        from llmops_ray.kb import search

        hits = search(kb, query, k=k, mode=mode, tenant=tenant, filters=filters, rerank=rerank,
                      reranker=self._reranker, include_flagged=include_flagged)
        return [h for h in hits if h.get("tenant") in (None, tenant)]  # belt and braces

    async def search(self, kb: str, query: str, k: int = 4, mode: str = "hybrid", tenant: str = "default",
                     filters: dict | None = None, rerank: bool | int | None = None,
                     include_flagged: bool = False) -> list[dict]:
        if not tenant:
            raise ValueError("retrieval needs a tenant")
        # LanceDB calls block: run them off the replica's event loop.
        return await asyncio.to_thread(self._search, kb, query, k, mode, tenant, filters, rerank, include_flagged)

    async def ping(self) -> bool:
        return True


def retriever_app(num_cpus: float = 0.1, embedder: str | None = None, replicas: int = 1,
                  name: str = RETRIEVER_DEPLOYMENT, reranker: dict | None = None, num_gpus: float = 0.0):
    """The bound Retriever deployment (a ``serve.Application``) with an explicit CPU share.

    ``reranker``: a :class:`~llmops_ray.kb.rerank.RerankConfig` mapping; a CPU model is loaded
    here first, so a reranker that cannot be loaded stops the deploy with a one-line UserError
    instead of failing replicas (or queries) later. ``num_gpus``: the replica's GPU share (a
    reranker on ``cuda`` needs one; it is then checked when the replica starts).
    """
    from ray import serve

    from llmops_ray.cluster import runtime_env
    from llmops_ray.config import UserError
    from llmops_ray.kb.rerank import RerankConfig, load_cross_encoder, model_ref

    if reranker is not None:
        config = RerankConfig.model_validate(reranker)
        if config.model:
            if config.device != "cpu" and num_gpus <= 0:
                raise UserError(f"the retriever's reranker runs on {config.device!r} but the deployment has no GPU "
                                "share (set retriever.num_gpus)")
            if config.device == "cpu":
                load_cross_encoder(config.model, "cpu")
            config = config.model_copy(update={"model": model_ref(config.model)})
        reranker = config.model_dump()
    options: dict[str, Any] = {"num_cpus": num_cpus, "runtime_env": {"env_vars": runtime_env()["env_vars"]}}
    if num_gpus > 0:
        options["num_gpus"] = num_gpus
    return serve.deployment(
        Retriever,
        name=name,
        num_replicas=replicas,
        max_ongoing_requests=64,
        ray_actor_options=options,
    ).bind(embedder=embedder, reranker=reranker)


# --------------------------------------------------------------------------- request helpers


def retrieval_settings(body_value: Any, default_k: int, default_mode: str) -> dict[str, Any]:
    """Validate the ``retrieval: {k, mode, filters, rerank, include_flagged}`` extension field
    (ValueError on bad input). ``rerank``: false (no rerank stage), true (rerank; the KB or the
    retriever must have a reranker) or an integer top-N (fused candidates rescored); absent =
    rerank when a reranker is configured. ``include_flagged``: true to also retrieve chunks that
    ingest flagged as addressing the model (default false; the context rail still runs)."""
    from llmops_ray.kb.rerank import MAX_TOP_N

    if body_value is None:
        body_value = {}
    if not isinstance(body_value, dict):
        raise ValueError("'retrieval' must be an object {k, mode, filters, rerank, include_flagged}")
    unknown = set(body_value) - {"k", "mode", "filters", "rerank", "include_flagged"}
    if unknown:
        raise ValueError(f"'retrieval' has unknown key {sorted(unknown)[0]!r} "
                         "(allowed: k, mode, filters, rerank, include_flagged)")
    include_flagged = body_value.get("include_flagged", False)
    if not isinstance(include_flagged, bool):
        raise ValueError("'retrieval.include_flagged' must be true or false")
    rerank = body_value.get("rerank")
    if rerank is not None and not isinstance(rerank, bool) and (not isinstance(rerank, int) or not 1 <= rerank <= MAX_TOP_N):
        raise ValueError(f"'retrieval.rerank' must be true, false or an integer from 1 to {MAX_TOP_N}")
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
    return {"k": k, "mode": mode, "filters": filters or None, "rerank": rerank, "include_flagged": include_flagged}


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
    of ``hits[kept[j]]`` as the prompt gets it (:func:`prompt_texts`). A parent-child hit's
    prompt text is its enclosing section; its citation keeps the small chunk's own text.
    """
    out = []
    for n, (text, index) in enumerate(zip(texts, kept), 1):
        hit = hits[index]
        if hit.get("parent_id") and hit.get("text"):
            text = hit["text"]
        out.append({
            "marker": f"[{n}]",
            "doc_id": hit.get("doc_id"),
            "source": hit.get("source"),
            "chunk_id": hit.get("chunk_id"),
            "text": text[:CITATION_TEXT_CHARS],
            "score": float(hit.get("score") or 0.0),
        })
    return out


def prompt_texts(hits: list[dict]) -> list[str]:
    """What the prompt gets of each hit: its ``context`` (the enclosing section of a
    parent-child chunk) or, for hits without one, its text."""
    return [h.get("context") or h.get("text") or "" for h in hits]


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
