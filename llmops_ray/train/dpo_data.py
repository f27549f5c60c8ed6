"""Preference-pair data for ``objective: dpo``: chat formatting of the prompt, response-only
labels, prompt-first truncation, the pair collator, and the Ray Data pipeline that feeds
``ray.train.get_dataset_shard`` (the same path as the SFT sets in :mod:`llmops_ray.train.data`).

Pairs files are the platform's pairs JSONL (:mod:`llmops_ray.common.pairs`): rows
``{"prompt": str | [chat messages], "chosen": str, "rejected": str, "id"?, ...}``.

A tokenized row holds both sequences of a pair: ``chosen_input_ids``/``chosen_labels`` and
``rejected_input_ids``/``rejected_labels`` (labels -100 on prompt tokens), plus
``truncated`` (the row was cut to fit ``max_seq_len``).
"""

from __future__ import annotations

from typing import Any

from llmops_ray.config import UserError
from llmops_ray.models.preference import IGNORE_INDEX, prompt_messages, record_to_pair, tokenize_pair, truncate_pair, usable  # noqa: F401
from llmops_ray.train.data import JsonlTokenize, collate, data_files, split_counts


def collate_pairs(batch: dict[str, Any], pad_id: int):
    """A micro-batch of B pairs as 2B padded rows, chosen rows first: tensors
    ``input_ids``/``labels``/``attention_mask`` of shape (2B, T)."""
    return collate({"input_ids": list(batch["chosen_input_ids"]) + list(batch["rejected_input_ids"]),
                    "labels": list(batch["chosen_labels"]) + list(batch["rejected_labels"])}, pad_id)


def validate_pairs(path: str) -> dict[str, Any]:
    """Check every row of a pairs dataset on the driver, before any worker starts
    (:func:`~llmops_ray.common.pairs.read_pairs`: one UserError naming file, line and field).

    Returns ``{"files": [...], "records": n, "pairs_sha256": {file: hash}, "pairs_lineage":
    {file: the file's lineage record or None}}``.
    """
    from llmops_ray.common.pairs import pairs_sha256, read_lineage, read_pairs

    files = data_files(path)
    count = sum(len(read_pairs(file)) for file in files)
    if count == 0:
        raise UserError(f"pairs dataset {path!r} is empty")
    return {"files": [str(f) for f in files], "records": count,
            "pairs_sha256": {str(f): pairs_sha256(f) for f in files},
            "pairs_lineage": {str(f): read_lineage(f) for f in files}}


class _PairTokenize(JsonlTokenize):
    """Pairs JSONL lines -> tokenized pair rows (both sides share the prompt)."""

    KEYS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels", "truncated")

    def __init__(self, tokenizer_dir: str, max_len: int, max_prompt_len: int, system_prompt: str):
        super().__init__(tokenizer_dir)
        self.max_len, self.max_prompt_len, self.system_prompt = max_len, max_prompt_len, system_prompt

    def row(self, record: dict[str, Any]) -> dict[str, Any] | None:
        messages, chosen, rejected = record_to_pair(record, "pair", self.system_prompt)
        row = tokenize_pair(self.tokenizer, messages, chosen, rejected, self.max_len, self.max_prompt_len)
        return row if usable(row) else None

    def columns(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {k: [r[k] for r in rows] for k in self.KEYS}


def build_pair_datasets(files: list[str], tokenizer_dir: str, settings, max_prompt_len: int, num_workers: int,
                        seed: int, records: int):
    """Read pairs JSONL with Ray Data, tokenize with the chat template, split train/validation.

    Returns ``(train_ds, val_ds_or_None, stats)``; ``stats`` counts the rows (``train_rows``,
    ``val_rows``), the pairs truncated to fit (``truncated``) and the pairs dropped because
    nothing of a response was left or both sides were equal (``dropped``).
    """
    import ray

    ds = ray.data.read_text(files, num_cpus=0.25)
    ds = ds.map_batches(
        _PairTokenize,
        fn_constructor_args=(tokenizer_dir, settings.max_seq_len, max_prompt_len, settings.system_prompt),
        batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=0.5,
    )
    ds = ds.random_shuffle(seed=seed).materialize()
    n = ds.count()
    if n == 0:
        raise UserError("no usable preference pairs after tokenization (responses truncated away or equal?)")
    table = ds.to_pandas()
    truncated = int(table["truncated"].sum())
    tokens = int(sum(len(x) for x in table["chosen_input_ids"]) + sum(len(x) for x in table["rejected_input_ids"]))
    n_train, n_val = split_counts(n, settings.val_fraction, num_workers)
    if n_val:
        train, val = ds.split_at_indices([n_train])
        train, val = train.materialize(), val.materialize()
    else:
        train, val = ds, None
    return train, val, {"train_rows": n_train, "val_rows": n_val, "pair_tokens": tokens,
                        "truncated": truncated, "dropped": records - n}
