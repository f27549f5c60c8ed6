"""The KB's vector index: built past ``min_rows``, extended by the next ingest, retrained
after growth, flat search with a warning when it cannot be trained, and searches that use
the recorded ``nprobes`` / ``refine_factor``. Synthetic vectors, no embedder: the index
step works on the table alone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from llmops_ray.kb.index import VectorIndexConfig, apply_search_settings, refresh_vector_index, search_settings
from llmops_ray.kb.store import connect, kb_info

DIM = 16


def _rows(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return pa.table({
        "chunk_id": [f"c{i}" for i in range(start, start + n)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
    })


def _table(name: str, n: int):
    return connect().create_table(name, _rows(n), mode="overwrite")


def test_too_few_rows_is_flat_with_a_warning_not_an_error():
    table = _table("idx_small", 100)
    config = VectorIndexConfig(min_rows=10, index_type="IVF_PQ", num_partitions=4, num_sub_vectors=4)
    report = refresh_vector_index(table, config)
    assert report["action"] == "flat" and "256" in report["warning"]
    assert table.list_indices() == [] or all(i.name != "vector_idx" for i in table.list_indices())
    # Partitions asked beyond the rows: same.
    table = _table("idx_parts", 300)
    for index_type in ("IVF_PQ", "IVF_HNSW_SQ"):
        config = VectorIndexConfig(min_rows=10, index_type=index_type, num_partitions=500, num_sub_vectors=4)
        report = refresh_vector_index(table, config)
        assert report["action"] == "flat" and "500 partitions" in report["warning"]
    # A training error inside LanceDB is caught the same way (sub-vectors must divide the dimension).
    config = VectorIndexConfig(min_rows=10, index_type="IVF_PQ", num_partitions=2, num_sub_vectors=5)
    report = refresh_vector_index(table, config)
    assert report["action"] == "flat" and "does not divide" in report["warning"]
    # Below min_rows: flat, no warning.
    report = refresh_vector_index(_table("idx_below", 300), VectorIndexConfig(min_rows=1000))
    assert report["action"] == "flat" and "warning" not in report


@pytest.mark.parametrize("index_type", ["IVF_PQ", "IVF_HNSW_SQ"])
def test_index_built_extended_and_retrained(index_type):
    config = VectorIndexConfig(min_rows=500, index_type=index_type, num_sub_vectors=4, nprobes=3, refine_factor=4,
                               ef=40, retrain_growth=2.0)
    name = f"idx_life_{index_type.lower()}"
    table = _table(name, 400)
    assert refresh_vector_index(table, config)["action"] == "flat"
    table.add(_rows(200, start=400, seed=1))
    report = refresh_vector_index(table, config)
    assert report["action"] == "built" and report["indexed_rows"] == 600 and report["unindexed_rows"] == 0
    table.add(_rows(300, start=600, seed=2))
    # Before the index step (an ingest killed right after its data commit): the new rows are
    # not in the index yet but are found, by LanceDB's flat scan of the unindexed rows.
    newest = _rows(300, start=600, seed=2).column("vector")[299].values.to_numpy()
    query = apply_search_settings(table.search(newest).distance_type("cosine"), search_settings(table))
    assert query.limit(1).to_list()[0]["chunk_id"] == "c899"
    report = refresh_vector_index(table, config)
    assert report["action"] == "updated" and report["indexed_rows"] == 900 and report["unindexed_rows"] == 0
    assert refresh_vector_index(table, config)["action"] == "current"
    table.add(_rows(400, start=900, seed=3))  # 1300 rows >= 2 x the 600 it was trained on
    report = refresh_vector_index(table, config)
    assert report["action"] == "retrained" and report["indexed_rows"] == 1300
    settings = search_settings(table)
    assert settings == {"index_type": index_type, "nprobes": 3, "refine_factor": 4, "ef": 40}
    info = kb_info(name)
    assert info["vector_index"]["index_type"] == index_type and info["index_params"]["num_partitions"] == 36
    # The recorded settings reach the query plan.
    query = apply_search_settings(table.search(_rows(1, seed=9).column("vector")[0].values.to_numpy()), settings)
    plan = query.limit(5).explain_plan(verbose=True)
    assert "minimum_nprobes=3" in plan.replace(" ", ""), plan
    if index_type == "IVF_PQ":
        # refine_factor 4: the index returns 4 x 5 candidates, re-ranked by exact distance.
        assert "k=20" in plan and "KNNVectorDistance" in plan, plan
    # An older version keeps searching while a newer one is indexed.
    assert len(query.limit(5).to_list()) == 5


@pytest.mark.parametrize("index_type", ["IVF_PQ", "IVF_HNSW_SQ"])
def test_ann_finds_the_exact_neighbours(index_type):
    table = _table(f"idx_recall_{index_type.lower()}", 2000)
    config = VectorIndexConfig(min_rows=1000, index_type=index_type, num_sub_vectors=8, nprobes=45)
    assert refresh_vector_index(table, config)["action"] == "built"
    queries = _rows(20, seed=5).column("vector").to_numpy(zero_copy_only=False)
    found = 0
    for q in queries:
        q = np.asarray(q, dtype=np.float32)
        exact = {r["chunk_id"] for r in table.search(q).distance_type("cosine").bypass_vector_index().limit(10).to_list()}
        ann = apply_search_settings(table.search(q).distance_type("cosine"), search_settings(table)).limit(10).to_list()
        found += len(exact & {r["chunk_id"] for r in ann})
    # All 45 partitions probed: the index may only lose what quantisation loses.
    assert found / 200 >= 0.9
