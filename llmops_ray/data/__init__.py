"""Knowledge-base ingest pipeline on Ray Data: read -> clean -> PII mask -> dedup -> chunk -> embed.

Modules: ``readers`` (md/txt/html/pdf/jsonl to documents), ``clean`` (normalisation and the
quality filter), ``dedup`` (exact and MinHash near-duplicates), ``chunk`` (token-sized
recursive splitting), ``embed`` (the Ray Data embedder actor), ``pipeline`` (``ingest``).
Heavy imports stay inside functions so the CLI starts fast.
"""

from __future__ import annotations

from typing import Any


def ingest(*args: Any, **kwargs: Any) -> dict:
    """Run an ingest; see :func:`llmops_ray.data.ingest.ingest`."""
    from llmops_ray.data.ingest import ingest as _ingest

    return _ingest(*args, **kwargs)
