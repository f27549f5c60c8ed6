"""The preference-pairs JSONL format shared by the pair builders (``data/``), DPO training
(``train/``) and pairwise evaluation (``evaluate/``).

One row per line::

    {"prompt": "..." | [{"role": "user", "content": "..."}, ...],
     "chosen": "...", "rejected": "...", "id": "...", "metadata": {...}}

``id`` and ``metadata`` are optional; any other top-level key is an error that names the line.
Every pairs file is written next to ``<file>.lineage.json``: where the rows came from
(sources), how many rows each step kept or dropped (counts), the time range of the source
data, and the SHA-256 of the JSONL bytes, so a trained model can name the exact data it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from pydantic import ConfigDict, ValidationError, field_validator

from llmops_ray.config import StrictModel, UserError

#: Roles a chat-message prompt may use (the chat template of every model here knows these).
CHAT_ROLES = ("system", "user", "assistant")


class PreferencePair(StrictModel):
    """One preference: for ``prompt``, the answer ``chosen`` is better than ``rejected``."""

    # Pairs are data, not configs: no assignment re-validation needed, but unknown keys still fail.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    prompt: str | list[dict[str, Any]]
    """The prompt: plain text, or chat messages (``role`` + ``content``) ending before the answer."""
    chosen: str
    """The preferred answer (assistant text only, no template)."""
    rejected: str
    """The dispreferred answer to the same prompt."""
    id: str | None = None
    """Stable id of the pair (e.g. the request id it came from), for dedup and resume."""
    metadata: dict[str, Any] = {}
    """Free-form provenance (source, request ids, judge verdicts, timestamps)."""

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("prompt is empty")
            return value
        if not value:
            raise ValueError("prompt has no messages")
        for i, message in enumerate(value):
            if set(message) != {"role", "content"}:
                raise ValueError(f"prompt message {i} must have exactly the keys role and content, got {sorted(message)}")
            if message["role"] not in CHAT_ROLES:
                raise ValueError(f"prompt message {i} has role {message['role']!r}; expected one of {', '.join(CHAT_ROLES)}")
            if not isinstance(message["content"], str):
                raise ValueError(f"prompt message {i} content must be a string")
        if value[-1]["role"] == "assistant":
            raise ValueError("prompt ends with an assistant message (the answers are chosen/rejected)")
        return value

    @field_validator("chosen", "rejected")
    @classmethod
    def _check_answer(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("answer is empty")
        return value


def prompt_text(prompt: str | list[dict[str, Any]]) -> str:
    """A prompt as one string (chat messages joined as ``role: content`` lines), for display and keys."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def _check_distinct(pair: PreferencePair) -> None:
    # Identical answers carry no preference (the DPO gradient of such a row is zero).
    if pair.chosen == pair.rejected:
        raise ValueError("chosen and rejected are identical")


def parse_pair(record: Any, where: str) -> PreferencePair:
    """One decoded JSON row as a :class:`PreferencePair`; a bad row raises :class:`UserError`
    starting with ``where`` (e.g. ``file.jsonl:12``) and naming the offending field."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: a pair must be a JSON object")
    try:
        pair = PreferencePair.model_validate(record)
        _check_distinct(pair)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "row"
        raise UserError(f"{where}: {field}: {first['msg']}") from None
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None
    return pair


def read_pairs(path: str | os.PathLike[str]) -> list[PreferencePair]:
    """Every row of a pairs JSONL file; a bad row raises :class:`UserError` naming its line."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"pairs file not found: {file}")
    pairs: list[PreferencePair] = []
    with file.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{file}:{line_no}: not valid JSON ({exc.msg})") from None
            pairs.append(parse_pair(row, f"{file}:{line_no}"))
    return pairs


def pairs_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a pairs file's bytes: the hash lineage records and models cite."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lineage_path(path: str | os.PathLike[str]) -> Path:
    """Where the lineage record of a pairs file lives: ``<path>.lineage.json``."""
    file = Path(path)
    return file.with_name(file.name + ".lineage.json")


def read_lineage(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The lineage record of a pairs file (None when it has none)."""
    record = lineage_path(path)
    if not record.is_file():
        return None
    return json.loads(record.read_text(encoding="utf-8"))


def _atomic_write_text(path: Path, text: str) -> None:
    # Temporary sibling + rename: a reader never sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_pairs(path: str | os.PathLike[str], pairs: Iterable[PreferencePair], lineage: dict[str, Any]) -> dict[str, Any]:
    """Write ``pairs`` as JSONL (atomically) and ``<path>.lineage.json`` beside it.

    ``lineage`` is the caller's part of the record: ``sources`` (list of what the rows came
    from), ``counts`` (kept/dropped per reason) and ``time_range`` (``{"start", "end"}`` ISO
    times of the source data, or None) and anything else worth keeping. This function adds
    ``path``, ``pairs`` (rows written), ``sha256`` and ``created_at``, and returns the record.
    """
    file = Path(path)
    rows = list(pairs)
    for pair in rows:
        _check_distinct(pair)
    text = "".join(json.dumps(pair.model_dump(exclude_none=True), ensure_ascii=False) + "\n" for pair in rows)
    _atomic_write_text(file, text)
    record: dict[str, Any] = {
        "sources": [],
        "counts": {},
        "time_range": None,
        **lineage,
        "path": str(file.resolve()),
        "pairs": len(rows),
        "sha256": pairs_sha256(file),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic_write_text(lineage_path(file), json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
    return record
