"""The rerank stage of a search: a cross-encoder rescoring the best fused candidates.

After vector / full-text / hybrid search (``kb/query.py``), the ``top_n`` best candidates are
scored again by a sentence-transformers ``CrossEncoder`` (query and passage read together, so
it sees word interactions a bi-encoder cannot) and re-sorted by that score; ``k`` of them are
returned. ``top_n`` is how many fused candidates are rescored (the cost: one cross-encoder pass
per candidate, batched), not how many hits come back (that is ``k``).

Where the model comes from, first match wins:

1. the caller's loaded :class:`Reranker` (the retriever deployment's ``reranker`` setting, a
   library caller's own);
2. the KB's default reranker, recorded in the Lance dataset config under :data:`CONFIG_KEY`
   (versioned with the table; ``llmops kb tune-retriever --kind cross-encoder --apply`` or
   :func:`set_kb_reranker` write it).

A request turns the stage off (``rerank=False``), asks for it (``True``: an error when no model
is available) or sets ``top_n`` (an integer). Without a request setting, a search reranks
whenever a model is available.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import Field

from llmops_ray.config import StrictModel, UserError

CONFIG_KEY = "llmops.reranker"
DEFAULT_TOP_N = 20
MAX_TOP_N = 200


class RerankConfig(StrictModel):
    """A reranker: which cross-encoder, how many candidates, where it runs."""

    model: Optional[str] = None
    """sentence-transformers ``CrossEncoder``: a local directory or a hub id (offline: it must
    be in the local cache). None = no reranker of its own."""
    top_n: int = Field(DEFAULT_TOP_N, ge=1, le=MAX_TOP_N)
    """Fused candidates rescored per query (hits returned stay ``k``)."""
    batch_size: int = Field(32, ge=1)
    """(query, passage) pairs per cross-encoder forward pass."""
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when torch sees a GPU, else CPU)."""


@dataclass
class Reranker:
    """A loaded cross-encoder with its settings (what a search reranks with)."""

    model: Any
    """The ``sentence_transformers.CrossEncoder``."""
    name: str
    """Path or id it was loaded from (reported with the hits)."""
    top_n: int = DEFAULT_TOP_N
    """Default number of fused candidates rescored."""
    batch_size: int = 32
    """Pairs per forward pass."""


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"rerank device {device!r}: use cpu, cuda, cuda:N or auto")
    return device


def model_ref(model: str) -> str:
    """A local directory as an absolute path (loadable from anywhere), else the id as given."""
    path = os.path.expanduser(model)
    return os.path.abspath(path) if os.path.isdir(path) else model


def load_cross_encoder(model: str, device: str = "cpu") -> Any:
    """Load a ``CrossEncoder`` (offline); a model that cannot be loaded is a one-line UserError."""
    if not model:
        raise UserError("no rerank model given")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import CrossEncoder

    device = resolve_device(device)
    try:
        encoder = CrossEncoder(model_ref(model), device=device)
    except Exception as exc:  # OSError, ValueError, hub errors offline, a CUDA error on a CPU box
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"cannot load rerank model {model!r} on {device}: {first}") from exc
    if getattr(encoder, "num_labels", 1) != 1:
        raise UserError(f"rerank model {model!r} has {encoder.num_labels} labels; a reranker gives one score per pair")
    return encoder


@functools.lru_cache(maxsize=4)
def cached_cross_encoder(model: str, device: str = "cpu") -> Any:
    """One loaded cross-encoder per (model, device) per process."""
    return load_cross_encoder(model, device)


def load_reranker(config: RerankConfig) -> Reranker | None:
    """The :class:`Reranker` a config names (None when it names no model)."""
    if not config.model:
        return None
    return Reranker(cached_cross_encoder(model_ref(config.model), resolve_device(config.device)),
                    model_ref(config.model), config.top_n, config.batch_size)


def passage_text(hit: dict) -> str:
    """What the cross-encoder reads of a chunk: its document title, then its text (training
    pairs of ``llmops kb tune-retriever`` are built the same way)."""
    title = (hit.get("title") or "").strip()
    text = (hit.get("text") or "").strip()
    return f"{title}\n{text}" if title and not text.startswith(title) else text


def rerank_hits(reranker: Reranker, query: str, hits: list[dict], k: int, top_n: int | None = None) -> list[dict]:
    """The best ``k`` of ``hits`` (fused order) after rescoring the first ``top_n`` with the
    cross-encoder. A rescored hit's ``score`` becomes the cross-encoder's, its fused score
    moves to ``fusion_score``; candidates past ``top_n`` keep their order after them."""
    top_n = top_n or reranker.top_n
    head, tail = hits[:top_n], hits[top_n:]
    if not head:
        return hits[:k]
    scores = reranker.model.predict([(query, passage_text(h)) for h in head], batch_size=reranker.batch_size,
                                    show_progress_bar=False, convert_to_numpy=True)
    rescored = []
    for hit, score in zip(head, scores):
        hit = dict(hit)
        hit["fusion_score"] = hit.get("score")
        hit["score"] = float(score)
        hit["reranked_by"] = reranker.name
        rescored.append(hit)
    rescored.sort(key=lambda h: (-h["score"], h.get("chunk_id") or ""))
    return (rescored + tail)[:k]


def check_rerank_request(rerank: Any) -> None:
    """``rerank`` of a search call: None, a bool, or an integer top-N from 1 to MAX_TOP_N."""
    if rerank is None or isinstance(rerank, bool):
        return
    if not isinstance(rerank, int) or not 1 <= rerank <= MAX_TOP_N:
        raise UserError(f"rerank must be true, false or a number of candidates from 1 to {MAX_TOP_N}")


# --------------------------------------------------------------------------- the KB's default reranker


def kb_reranker_config(table) -> RerankConfig | None:
    """The default reranker recorded in a table's current version (None: none recorded)."""
    raw = (table.to_lance().config() or {}).get(CONFIG_KEY)
    if not raw:
        return None
    return RerankConfig.model_validate(json.loads(raw))


def kb_reranker(table) -> Reranker | None:
    """The KB's default reranker, loaded once per process (None when it has none)."""
    config = kb_reranker_config(table)
    return load_reranker(config) if config is not None else None


def set_kb_reranker(table, config: RerankConfig | None) -> int:
    """Record (or, with None / no model, clear) a table's default reranker; the model is loaded
    first so that a broken one is refused here, never at query time. Returns the new version."""
    lance = table.to_lance()
    if config is None or not config.model:
        if CONFIG_KEY in (lance.config() or {}):
            lance.delete_config_keys([CONFIG_KEY])
    else:
        config = config.model_copy(update={"model": model_ref(config.model)})
        load_cross_encoder(config.model, resolve_device(config.device))
        lance.update_config({CONFIG_KEY: json.dumps(config.model_dump(), sort_keys=True)})
    table.checkout_latest()
    return int(table.version)


def plan_rerank(table, rerank: Any, reranker: Reranker | None) -> tuple[Reranker, int] | None:
    """(reranker, top_n) a search applies, or None for no rerank stage."""
    check_rerank_request(rerank)
    if rerank is False:
        return None
    chosen = reranker if reranker is not None else kb_reranker(table)
    if chosen is None:
        if rerank is None:
            return None
        raise UserError("this knowledge base has no reranker: set one (llmops kb set-reranker, or tune-retriever "
                        "--kind cross-encoder --apply) or configure the retriever's reranker")
    top_n = rerank if isinstance(rerank, int) and not isinstance(rerank, bool) else chosen.top_n
    return chosen, top_n
