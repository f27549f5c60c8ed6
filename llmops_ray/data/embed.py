"""The embedding stage of the Ray Data pipeline: callable classes run by an actor pool.

``map_batches(ChunkAndEmbed, compute=ActorPoolStrategy(size=N), num_cpus=c)``: each actor
loads the model once, then per call chunks a batch of documents and embeds all their
chunks in one ``encode`` (which sorts them by length: less padding than fixed batches).
Chunking runs in the actor rather than in separate tasks because it costs ~0.2 ms per
document against ~25 ms per chunk of embedding: separate chunk tasks only added worker
processes that start up and preempt the actor's torch threads on a small machine. Torch
gets ``threads`` intra-op threads (default: the actor's CPU share rounded up), so N actors
do not oversubscribe the cores.
"""

from __future__ import annotations

from typing import Any


class ChunkEmbedder:
    """Appends a ``vector`` column (fixed-size list of float32, L2-normalised) to a pyarrow batch."""

    def __init__(self, model: str | None, batch_size: int = 64, threads: int = 1):
        import torch

        from llmops_ray.kb.embed import load_embedder

        torch.set_num_threads(max(1, int(threads)))
        self.model = load_embedder(model)
        self.batch_size = batch_size

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from llmops_ray.kb.embed import embed_texts

        vectors = embed_texts(self.model, batch.column("text").to_pylist(), batch_size=self.batch_size)
        dim = vectors.shape[1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
        return batch.append_column("vector", column)


class ChunkAndEmbed(ChunkEmbedder):
    """Document rows in, chunk rows with a ``vector`` column out (see ``pipeline.chunk_batch``)."""

    def __init__(self, model: str | None, keep: frozenset, tenant: str, size: int, overlap: int,
                 batch_size: int = 64, threads: int = 1, parent_size: int = 0):
        from llmops_ray.kb.embed import resolve_model

        super().__init__(model, batch_size=batch_size, threads=threads)
        # Chunk sizes are counted in the same model's tokens.
        self.chunk_kwargs = {"keep": keep, "tenant": tenant, "size": size, "overlap": overlap,
                             "model_path": resolve_model(model), "parent_size": parent_size}

    def __call__(self, batch: Any) -> Any:
        from llmops_ray.data.stages import chunk_batch

        return super().__call__(chunk_batch(batch, **self.chunk_kwargs))
