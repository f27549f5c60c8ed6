"""The stack manifest: what gets deployed, validated before anything is registered.

A model stack = base model + optional adapter + prompt template ``name@version`` +
optional knowledge base ``name@version`` + generation settings + policy (gate metrics
and SLO targets). The manifest is a YAML file validated into :class:`StackManifest`;
:func:`llmops_ray.registry.store.check_manifest_references` then checks that everything it names exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from llmops_ray.config import StrictModel, UserError, build_config, read_yaml

STACK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)@([A-Za-z0-9_.-]+)$")


class GenerationSettings(StrictModel):
    """Sampling settings the stack is served and evaluated with."""

    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature; 0 is greedy (reproducible evaluations)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    max_tokens: int = Field(64, ge=1)
    """Most tokens generated per answer."""
    stop: list[str] = Field(default_factory=list)
    """Extra stop strings (the chat template's end token always stops)."""
    max_model_len: int = Field(1024, ge=64)
    """Longest prompt + answer (tokens) the engine is started for."""
    retrieval_k: int = Field(4, ge=1)
    """Chunks retrieved from the stack's knowledge base per question (RAG stacks)."""
    retrieval_mode: Literal["vector", "fts", "hybrid"] = "hybrid"
    """Search mode used for retrieval."""


class GateMetric(StrictModel):
    """One metric a candidate must pass before it may become production."""

    metric: str
    """Metric name as stored by ``llmops eval`` (``token_f1``), or ``SUITE/METRIC`` to pin a suite."""
    direction: Literal["higher", "lower"] = "higher"
    """Whether larger values are better (``token_f1``) or smaller ones (``perplexity``)."""
    threshold: float | None = None
    """Absolute bar: a floor for ``higher``, a ceiling for ``lower``; none = no absolute bar."""
    tolerance: float = Field(0.0, ge=0.0)
    """Regression allowed against current production (absolute units of the metric)."""


class SloTargets(StrictModel):
    """Service-level objectives the serving path watches for this stack."""

    error_rate: float = Field(0.01, ge=0.0, le=1.0)
    """Largest fraction of failed requests in the window."""
    p95_latency_ms: float = Field(5000.0, gt=0.0)
    """95th percentile end-to-end latency target, milliseconds."""
    p95_ttft_ms: float = Field(1000.0, gt=0.0)
    """95th percentile time to first token target, milliseconds."""
    window_s: int = Field(300, ge=1)
    """Length of the sliding window the targets are measured over, seconds."""


class Policy(StrictModel):
    """Promotion gates and SLOs of a stack."""

    gates: list[GateMetric] = Field(default_factory=list)
    """Metrics checked by ``llmops registry promote`` (all must pass)."""
    slo: SloTargets = Field(default_factory=SloTargets)
    """Serving targets."""


class StackManifest(StrictModel):
    """A model stack version: what is deployed, evaluated, promoted and rolled back."""

    name: str
    """Stack name (the registered model name in MLflow)."""
    description: str = ""
    """Free text shown by ``llmops registry show``."""
    base_model: str
    """Base model: a local Hugging Face directory or a hub id."""
    adapter: str | None = None
    """LoRA adapter directory (peft format) applied on the base; none for a plain/full model."""
    prompt: str
    """Prompt template as ``name@version`` in the prompt registry."""
    kb: str | None = None
    """Knowledge base as ``name@version`` (RAG stacks); none for no retrieval."""
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    """Generation settings."""
    policy: Policy = Field(default_factory=Policy)
    """Gate metrics and SLO targets."""

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not STACK_NAME_RE.match(value):
            raise ValueError("stack name must be letters, digits, '_', '-', '.' (at most 100)")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_ref(cls, value: str) -> str:
        if not REF_RE.match(value):
            raise ValueError("prompt must be NAME@VERSION, e.g. qa@1")
        return value

    @field_validator("kb")
    @classmethod
    def _kb_ref(cls, value: str | None) -> str | None:
        if value is not None and not REF_RE.match(value):
            raise ValueError("kb must be NAME@VERSION, e.g. docs@3")
        return value


def split_ref(ref: str, what: str = "reference") -> tuple[str, str]:
    """``"name@x"`` -> ``("name", "x")``; a clear error otherwise."""
    match = REF_RE.match(ref or "")
    if not match:
        raise UserError(f"{what} {ref!r} is not of the form NAME@ALIAS_OR_VERSION")
    return match.group(1), match.group(2)


def load_manifest(path_or_data: str | os.PathLike[str] | dict) -> StackManifest:
    """Validate a manifest file (or mapping) into a :class:`StackManifest`."""
    if isinstance(path_or_data, dict):
        return build_config(StackManifest, path_or_data, "manifest")
    path = Path(path_or_data)
    if not path.is_file():
        raise UserError(f"manifest {str(path)!r} does not exist")
    return build_config(StackManifest, read_yaml(path), str(path))


def kb_version_exists(kb_ref: str) -> None:
    """Raise a UserError unless the LanceDB table ``name`` has version (or tag) ``version``."""
    import lancedb

    from llmops_ray.config import kb_root

    name, version = split_ref(kb_ref, "kb")
    db = lancedb.connect(str(kb_root()))
    try:
        table = db.open_table(name)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"knowledge base {name!r} does not exist under {kb_root()}") from exc
    versions = {int(v["version"]) if isinstance(v, dict) else int(v.version) for v in table.list_versions()}
    if version.isdigit():
        if int(version) not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            raise UserError(f"knowledge base {name!r} has no version {version} (versions: {known})")
        return
    try:
        tags = table.tags.list()
    except Exception:  # noqa: BLE001 - a table without tag support has no tags
        tags = {}
    if version not in tags:
        raise UserError(f"knowledge base {name!r} has no version or tag {version!r}")


def check_adapter_dir(adapter: str) -> str:
    """An adapter directory must exist and hold a peft ``adapter_config.json``."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise UserError(f"adapter directory {adapter!r} does not exist")
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"adapter directory {adapter!r} has no adapter_config.json (not a peft adapter)")
    return str(path.resolve())
