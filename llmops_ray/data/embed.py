"""The embedding stage of the Ray Data pipeline: a callable class run by an actor pool.

``map_batches(ChunkEmbedder, compute=ActorPoolStrategy(size=N), num_cpus=c)``: each actor
loads the model once and embeds batches of chunks. Torch gets ``threads`` intra-op threads
(default: the actor's CPU share rounded up), so N actors do not oversubscribe the cores.
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
