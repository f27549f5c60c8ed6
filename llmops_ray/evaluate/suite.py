"""Evaluation suites: YAML (``name``, ``items``, optional ``judge``) or JSONL (one item per line).

Item types (``type`` field; JSONL lines without one are ``qa``):

* ``qa``: ``question`` + ``answer`` (or ``answers``), optional ``context`` (else the
  stack's KB is searched) and ``gold_doc_ids`` / ``gold_sources`` (adds recall@k / MRR);
* ``retrieval``: ``query`` + ``gold_doc_ids`` and/or ``gold_sources`` (needs a stack with a KB);
* ``perplexity``: ``text`` (held-out text scored by the stack's model);
* ``safety``: ``kind`` = ``harmful`` (``prompt`` must be refused), ``injection``
  (``prompt`` carries an instruction to output ``marker``; it must not appear) or
  ``leak`` (``system`` prompt with an optional ``secret``; ``prompt`` tries to extract it);
* ``pairwise``: ``prompt`` (+ optional ``context``) answered by the candidate and by the
  suite's ``baseline`` stack (default: the candidate stack's ``production``), judged by the
  suite's ``judge`` in both orders; gives ``win_rate`` (ties count half).

A suite may also name ``heldout_pairs``, a pairs JSONL file: the candidate's implicit DPO
reward accuracy on it (``reward_accuracy``) is then a metric too.

A missing or unknown field is one clear error naming the file and item.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from llmops_ray.config import RESOURCES_DIR, StrictModel, UserError, format_validation_error, read_yaml

SUITES_DIR = RESOURCES_DIR / "eval_suites"


class QAItem(StrictModel):
    """A question with reference answer(s)."""

    type: Literal["qa"] = "qa"
    """Item type."""
    id: str | None = None
    """Optional id, echoed in per-item results."""
    question: str
    """The question put to the stack (through its prompt template)."""
    answer: str | None = None
    """The reference answer (or use ``answers``)."""
    answers: list[str] | None = None
    """Several acceptable reference answers (best match counts)."""
    context: str | None = None
    """Context given to the prompt; none = retrieved from the stack's KB when it has one."""
    gold_doc_ids: list[str] | None = None
    """Documents that answer the question (scores retrieval when the stack has a KB)."""
    gold_sources: list[str] | None = None
    """The same by source: a path suffix such as ``en/warranty.md`` or ``faq.jsonl#faq-002``."""

    @model_validator(mode="after")
    def _has_answer(self):
        if not self.answer and not self.answers:
            raise ValueError("missing key 'answer' (or 'answers')")
        return self

    def references(self) -> list[str]:
        return list(self.answers or []) + ([self.answer] if self.answer else [])

    def gold(self) -> list[str]:
        return list(self.gold_doc_ids or []) + list(self.gold_sources or [])


class RetrievalItem(StrictModel):
    """A query with the documents that should be retrieved."""

    type: Literal["retrieval"]
    """Item type."""
    id: str | None = None
    """Optional id."""
    query: str
    """Search query."""
    gold_doc_ids: list[str] | None = None
    """Relevant document ids (the KB's ``doc_id``)."""
    gold_sources: list[str] | None = None
    """Relevant documents by source: a path suffix at a ``/`` boundary (``en/warranty.md``,
    ``faq.jsonl#faq-002``), so a suite does not depend on where the corpus was ingested from."""

    @model_validator(mode="after")
    def _has_gold(self):
        if not self.gold():
            raise ValueError("missing key 'gold_doc_ids' (or 'gold_sources'): a non-empty list")
        return self

    def gold(self) -> list[str]:
        return list(self.gold_doc_ids or []) + list(self.gold_sources or [])


class PerplexityItem(StrictModel):
    """Held-out text for perplexity."""

    type: Literal["perplexity"]
    """Item type."""
    id: str | None = None
    """Optional id."""
    text: str = Field(min_length=1)
    """The text."""


class SafetyItem(StrictModel):
    """A red-team probe."""

    type: Literal["safety"]
    """Item type."""
    id: str | None = None
    """Optional id."""
    kind: Literal["harmful", "injection", "leak"]
    """What is probed: refusal of a harmful request, resistance to injection, system prompt leak."""
    prompt: str
    """The user message."""
    marker: str | None = None
    """(injection) the string the injected instruction asks for; it must not appear."""
    system: str | None = None
    """(leak) the system prompt given to the stack for this probe."""
    secret: str | None = None
    """(leak) a string from the system prompt that must never be revealed."""

    @model_validator(mode="after")
    def _fields_for_kind(self):
        if self.kind == "injection" and not self.marker:
            raise ValueError("missing key 'marker' (injection items)")
        if self.kind == "leak" and not self.system:
            raise ValueError("missing key 'system' (leak items)")
        return self


class PairwiseItem(StrictModel):
    """A prompt answered by the candidate and the baseline stack, compared by the judge."""

    type: Literal["pairwise"]
    """Item type."""
    id: str | None = None
    """Optional id."""
    prompt: str = Field(min_length=1)
    """The user message both stacks answer (through their own prompt templates)."""
    context: str | None = None
    """Context given to both prompts; none = each stack retrieves from its KB when it has one."""


ITEM_TYPES = ("qa", "retrieval", "perplexity", "safety", "pairwise")
Item = Annotated[Union[QAItem, RetrievalItem, PerplexityItem, SafetyItem, PairwiseItem], Field(discriminator="type")]
_ITEM = TypeAdapter(Item)


class JudgeConfig(StrictModel):
    """An OpenAI-compatible endpoint used as LLM judge of groundedness."""

    base_url: str
    """Endpoint root, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    """Model name sent in requests."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (a placeholder is sent when unset)."""
    timeout_s: float = Field(30.0, gt=0)
    """Per-request timeout, seconds."""


class Suite(StrictModel):
    """A named list of evaluation items."""

    name: str
    """Suite name: results are stored under it (``llmops.eval.<name>``)."""
    description: str = ""
    """Free text."""
    k: int = Field(5, ge=1)
    """Cut-off of recall@k."""
    judge: JudgeConfig | None = None
    """Optional LLM judge; none = only the lexical groundedness measure. Required by pairwise items."""
    baseline: str | None = None
    """Stack ``NAME@ALIAS_OR_VERSION`` the pairwise items compare against; none = the evaluated
    stack's ``production`` alias (no win rate when that is the evaluated version itself)."""
    heldout_pairs: str | None = None
    """Pairs JSONL file (``prompt``/``chosen``/``rejected``): adds ``reward_accuracy``, the share
    of pairs whose chosen answer the candidate rewards more than the rejected one, relative to
    its reference (a LoRA stack: its base; a full model: the baseline stack's model)."""
    items: list[Item] = Field(min_length=1)
    """The items."""

    @model_validator(mode="after")
    def _pairwise_needs_judge(self):
        if any(i.type == "pairwise" for i in self.items) and self.judge is None:
            raise ValueError("pairwise items need a 'judge' (an OpenAI-compatible endpoint)")
        return self

    def of_type(self, kind: str) -> list:
        return [i for i in self.items if i.type == kind]


def _item(data: object, where: str):
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected an object, got {type(data).__name__}")
    data = dict(data)
    data.setdefault("type", "qa")
    if data["type"] not in ITEM_TYPES:
        raise UserError(f"{where}: unknown type {data['type']!r} ({', '.join(ITEM_TYPES)})")
    try:
        return _ITEM.validate_python(data)
    except ValidationError as exc:
        message = format_validation_error(exc, where)
        # Drop the union branch name pydantic puts in front of each location.
        for kind in ITEM_TYPES:
            message = message.replace(f"'{kind}.", "'").replace(f"'{kind}': Value error, ", "")
        raise UserError(message) from exc


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read a YAML or JSONL suite, or a suite shipped under ``resources/eval_suites``."""
    p = Path(path)
    if not p.is_file():
        for candidate in (SUITES_DIR / f"{path}.yaml", SUITES_DIR / f"{path}.jsonl"):
            if candidate.is_file():
                p = candidate
                break
        else:
            raise UserError(f"suite {str(path)!r} does not exist")
    if p.suffix == ".jsonl":
        items = []
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{p} line {n}: invalid JSON: {exc.msg}") from exc
            items.append(_item(record, f"{p} line {n}"))
        if not items:
            raise UserError(f"{p}: the suite has no items")
        try:
            return Suite(name=p.stem, items=items)
        except ValidationError as exc:  # e.g. pairwise items: a JSONL suite has no judge
            raise UserError(format_validation_error(exc, str(p))) from exc
    data = read_yaml(p)
    raw_items = data.pop("items", None)
    if not raw_items:
        raise UserError(f"{p}: missing key 'items' (a non-empty list)")
    if not isinstance(raw_items, list):
        raise UserError(f"{p}: 'items' must be a list")
    items = [_item(item, f"{p} item {n}") for n, item in enumerate(raw_items, 1)]
    data.setdefault("name", p.stem)
    try:
        return Suite.model_validate({**data, "items": items})
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, str(p))) from exc
