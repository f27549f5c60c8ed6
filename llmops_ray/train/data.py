"""SFT and pretraining data: record validation, chat formatting, assistant-only loss mask,
packing, and the Ray Data pipeline that feeds ``ray.train.get_dataset_shard``.

Every tokenized row is ``{"input_ids": list[int], "labels": list[int]}`` with
``labels[i] == -100`` where no loss is taken (prompt, system and user tokens). Rows have
variable length; :func:`collate` pads a micro-batch to its longest row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from llmops_ray.config import UserError

IGNORE_INDEX = -100
ROLES = {"system", "user", "assistant", "tool"}


# --------------------------------------------------------------------------- records


def data_files(path: str | os.PathLike[str]) -> list[Path]:
    """The JSONL files of a dataset path (a file, or the ``*.jsonl`` of a directory)."""
    root = Path(path).expanduser()
    if not str(path):
        raise UserError("data.path is empty: give a JSONL file of chat or Alpaca records")
    if not root.exists():
        raise UserError(f"dataset {str(path)!r} does not exist")
    files = [root] if root.is_file() else sorted(root.rglob("*.jsonl"))
    if not files:
        raise UserError(f"dataset directory {str(path)!r} has no .jsonl files")
    return files


def record_to_messages(record: Any, fmt: str, where: str, system_prompt: str = "") -> list[dict[str, str]]:
    """Normalise one record to chat messages, or raise a UserError naming ``where``.

    ``fmt``: ``chat`` (``{"messages": [{"role", "content"}, ...]}``), ``alpaca``
    (``{"instruction", "input"?, "output"}``) or ``auto`` (decided from the keys).
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if fmt == "auto":
        fmt = "chat" if "messages" in record else "alpaca" if "instruction" in record else ""
        if not fmt:
            raise UserError(f"{where}: record has neither 'messages' (chat) nor 'instruction' (Alpaca)")
    if fmt == "chat":
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UserError(f"{where}: missing or empty 'messages' list")
        out = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
                raise UserError(f"{where}: messages[{i}] needs string 'role' and 'content'")
            if msg["role"] not in ROLES:
                raise UserError(f"{where}: messages[{i}] has unknown role {msg['role']!r}")
            out.append({"role": msg["role"], "content": msg["content"]})
        if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
            raise UserError(f"{where}: no non-empty assistant message to learn from")
    elif fmt == "alpaca":
        instruction, output = record.get("instruction"), record.get("output")
        extra = record.get("input", "")
        if not isinstance(instruction, str) or not instruction.strip():
            raise UserError(f"{where}: missing 'instruction'")
        if not isinstance(output, str) or not output.strip():
            raise UserError(f"{where}: missing 'output'")
        if extra is not None and not isinstance(extra, str):
            raise UserError(f"{where}: 'input' must be a string")
        prompt = instruction if not extra else f"{instruction}\n\n{extra}"
        out = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    else:
        raise UserError(f"unknown data format {fmt!r}")
    if system_prompt and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system_prompt})
    return out


def validate_dataset(path: str, fmt: str = "auto") -> dict[str, Any]:
    """Check every line of a dataset on the driver, before any worker starts.

    Returns ``{"files": [...], "records": n}``; raises one UserError naming file and line.
    """
    files = data_files(path)
    count = 0
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{file}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{where}: invalid JSON ({exc.msg})") from exc
                record_to_messages(record, fmt, where)
                count += 1
    if count == 0:
        raise UserError(f"dataset {path!r} is empty")
    return {"files": [str(f) for f in files], "records": count}


# --------------------------------------------------------------------------- tokenization


def assistant_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages`` with the tokenizer's chat template; return the text and the
    character spans of each assistant turn (content + end-of-turn marker).

    Works for any template whose rendering of a prefix of the conversation is a prefix of
    the full rendering (ChatML, Qwen, Llama 3): the assistant span is what message ``i``
    adds after the generation prompt of messages ``[:i]``.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template")
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not text.startswith(upto) or not upto.startswith(prompt):
            raise UserError("the chat template does not render conversations prefix-consistently")
        start, end = len(prompt), len(upto.rstrip())  # drop the newline after the end-of-turn token
        if end > start:
            spans.append((start, end))
    return text, spans


def tokenize_chat(tokenizer, messages: list[dict[str, str]], max_len: int) -> dict[str, list[int]]:
    """Token ids and labels with loss on assistant tokens only (truncated to ``max_len``)."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"][:max_len]
    labels = []
    for tok, (start, _end) in zip(ids, enc["offset_mapping"][:max_len]):
        inside = any(s <= start < e for s, e in spans)
        labels.append(tok if inside else IGNORE_INDEX)
    return {"input_ids": ids, "labels": labels}


def pack_rows(rows: Iterable[dict[str, list[int]]], block: int) -> list[dict[str, list[int]]]:
    """Concatenate rows into blocks of exactly ``block`` tokens (the tail shorter than a block is dropped)."""
    out, ids, labels = [], [], []
    for row in rows:
        ids.extend(row["input_ids"])
        labels.extend(row["labels"])
        while len(ids) >= block:
            out.append({"input_ids": ids[:block], "labels": labels[:block]})
            ids, labels = ids[block:], labels[block:]
    return out


def collate(batch: dict[str, Any], pad_id: int):
    """Pad a micro-batch (numpy batch of variable-length rows) to its longest row.

    Returns torch tensors ``input_ids``/``labels``/``attention_mask`` of shape (B, T).
    """
    import torch

    seqs = [list(map(int, x)) for x in batch["input_ids"]]
    labs = [list(map(int, x)) for x in batch["labels"]]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, lab) in enumerate(zip(seqs, labs)):
        input_ids[i, : len(s)] = torch.tensor(s)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(s)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


# --------------------------------------------------------------------------- Ray Data pipelines


class JsonlTokenize:
    """Ray Data batch function over JSONL lines: the tokenizer is loaded once per worker, blank
    lines are skipped; :meth:`row` turns one record into a tokenized row (None = drop it) and
    :meth:`columns` the kept rows into the output batch."""

    def __init__(self, tokenizer_dir: str) -> None:
        self.tokenizer_dir = tokenizer_dir
        self.tokenizer = None

    def row(self, record: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    def columns(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        rows = []
        for line in batch["text"]:
            if str(line).strip():
                row = self.row(json.loads(line))
                if row is not None:
                    rows.append(row)
        return self.columns(rows)


class _SftTokenize(JsonlTokenize):
    """JSONL lines -> tokenized SFT rows (packed when ``packing``)."""

    def __init__(self, tokenizer_dir: str, fmt: str, max_len: int, packing: bool, system_prompt: str):
        super().__init__(tokenizer_dir)
        self.fmt, self.max_len, self.packing, self.system_prompt = fmt, max_len, packing, system_prompt

    def row(self, record: dict[str, Any]) -> dict[str, Any] | None:
        messages = record_to_messages(record, self.fmt, "record", self.system_prompt)
        row = tokenize_chat(self.tokenizer, messages, self.max_len)
        # All prompt after truncation: nothing to learn.
        return row if any(lab != IGNORE_INDEX for lab in row["labels"]) else None

    def columns(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if self.packing:
            rows = pack_rows(rows, self.max_len)
        return {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]}


def split_counts(n: int, val_fraction: float, num_workers: int) -> tuple[int, int]:
    """(train, val) row counts: val is at least one row per worker when val_fraction > 0,
    because Ray Train splits each dataset equally across workers."""
    if n < num_workers:
        raise UserError(f"dataset has {n} usable examples, fewer than the {num_workers} workers")
    if val_fraction <= 0:
        return n, 0
    n_val = max(num_workers, round(n * val_fraction))
    if n - n_val < num_workers:
        raise UserError(
            f"dataset has {n} usable examples: too few for a validation split of {n_val} "
            f"and {num_workers} workers (lower data.val_fraction or add data)"
        )
    return n - n_val, n_val


def sft_dataset_key(files_sha256: str, tokenizer_dir: str, settings, num_workers: int, seed: int) -> str:
    """Everything the tokenized SFT datasets depend on, as one string: datasets built for one
    fine-tuning config may be reused by another (the trials of a search) only when it is equal."""
    return json.dumps({"sha256": files_sha256, "tokenizer": str(tokenizer_dir), "data": settings.model_dump(mode="json"),
                       "num_workers": num_workers, "seed": seed}, sort_keys=True)


def build_sft_datasets(files: list[str], tokenizer_dir: str, settings, num_workers: int, seed: int):
    """Read JSONL with Ray Data, tokenize with the chat template, split train/validation.

    Returns ``(train_ds, val_ds_or_None, stats)``; both datasets are materialized so that the
    training workers only read blocks (no Ray Data tasks competing for their CPUs).
    """
    import ray

    ds = ray.data.read_text(files, num_cpus=0.25)
    ds = ds.map_batches(
        _SftTokenize,
        fn_constructor_args=(tokenizer_dir, settings.format, settings.max_seq_len, settings.packing, settings.system_prompt),
        batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=0.5,
    )
    return _split(ds, settings.val_fraction, num_workers, seed)


def _split(ds, val_fraction: float, num_workers: int, seed: int):
    ds = ds.random_shuffle(seed=seed).materialize()
    n = ds.count()
    if n == 0:
        raise UserError("no usable training examples after tokenization (all truncated away?)")
    n_train, n_val = split_counts(n, val_fraction, num_workers)
    if n_val:
        train, val = ds.split_at_indices([n_train])
        train, val = train.materialize(), val.materialize()
    else:
        train, val = ds, None
    tokens = sum(len(x) for x in train.to_pandas()["input_ids"])
    return train, val, {"train_rows": n_train, "val_rows": n_val, "train_tokens": int(tokens)}


def build_pretrain_datasets(token_ids: list[int], block: int, val_fraction: float, num_workers: int, seed: int):
    """Fixed-length causal-LM blocks from one long token stream (labels = inputs)."""
    import ray

    blocks = [token_ids[i : i + block] for i in range(0, len(token_ids) - block + 1, block)]
    if not blocks:
        raise UserError(f"corpus has {len(token_ids)} tokens: fewer than one block of {block}")
    ds = ray.data.from_items([{"input_ids": b, "labels": b} for b in blocks])
    return _split(ds, val_fraction, num_workers, seed)
