"""Typed settings, YAML loading with ``key=value`` overrides, and workspace paths.

Every config in the project is a pydantic model built on :class:`StrictModel`:
unknown keys are an error that names the key, and each field carries a docstring
(pydantic turns it into the field's description, so ``--help`` and error messages
can show it). Configs load from a YAML file or from a name shipped in
``llmops_ray/configs/<name>.yaml``; ``a.b=value`` overrides on the command line are
parsed as YAML scalars (``lr=1e-4``, ``lora.rank=8``, ``targets=[q_proj,v_proj]``).
A mapping override merges into the file's mapping (``registration={alias: canary}`` keeps the
file's ``stack``); an empty one, ``key={}``, clears it back to the field's defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

CONFIGS_DIR = Path(__file__).parent / "configs"
#: Data shipped in the package (sample corpus, eval suites, prompts, safety sets).
RESOURCES_DIR = Path(__file__).parent / "resources"
#: The sample corpus the demo ingests and the tiny model pretrains on.
SAMPLE_CORPUS = RESOURCES_DIR / "sample_corpus"

T = TypeVar("T", bound=BaseModel)

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class UserError(Exception):
    """Bad input from a user: the CLI prints the message on one line and exits with 2."""


class StrictModel(BaseModel):
    """Base of every config: unknown keys are rejected, docstrings become descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


# --------------------------------------------------------------------------- workspace


def workspace() -> Path:
    """Root of everything a run writes: ``$LLMOPS_HOME`` or ``./.llmops``.

    On a multi-node cluster point ``LLMOPS_HOME`` at a shared filesystem path.
    """
    root = Path(os.environ.get("LLMOPS_HOME") or ".llmops").expanduser()
    return root.resolve()


def workspace_path(*parts: str, create: bool = True) -> Path:
    """A directory under the workspace, created on first use."""
    path = workspace().joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def kb_root() -> Path:
    """LanceDB database directory holding one table per knowledge base."""
    return workspace_path("kb")


def models_root() -> Path:
    """Model directories: bootstrapped bases, fine-tuned adapters, merged models."""
    return workspace_path("models")


def runs_root() -> Path:
    """Ray Train / Tune storage (checkpoints, results)."""
    return workspace_path("runs")


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else an embedded SQLite store in the workspace."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{workspace_path('mlflow') / 'mlflow.db'}"


# --------------------------------------------------------------------------- loading


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict ``{"a": {"b": 1}, "c": "x"}``."""
    result: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UserError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; a learning rate is a number.
            try:
                value = float(value) if _FLOAT.fullmatch(value) else value
            except ValueError:
                pass
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return result


def deep_merge(base: dict[str, Any], extra: dict[str, Any], empty_replaces: bool = False) -> dict[str, Any]:
    """Recursively merge ``extra`` into a copy of ``base``; with ``empty_replaces`` an empty
    mapping in ``extra`` replaces instead of merging (``key={}`` overrides clear ``key``)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and (value or not empty_replaces) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, empty_replaces)
        else:
            out[key] = value
    return out


def resolve_config_path(name_or_path: str | os.PathLike[str], folder: Path = CONFIGS_DIR, what: str = "config") -> Path:
    """A YAML path as given, or the name of a config shipped in ``folder`` (default
    ``llmops_ray/configs``); a UserError lists the shipped names."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = folder / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    raise UserError(f"{what} {str(name_or_path)!r} is neither a file nor a shipped {what} ({names})")


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from exc
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line naming each offending key, e.g. ``unknown key 'lora.rnak'``."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key {loc!r}")
        elif err["type"] == "missing":
            problems.append(f"missing key {loc!r}")
        else:
            problems.append(f"{loc!r}: {err['msg']}")
    return f"{source}: " + "; ".join(problems)


def build_config(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Validate a mapping into ``cls``, turning validation errors into one-line UserErrors."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from exc


def load_config(
    cls: type[T],
    name_or_path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
) -> T:
    """Load ``cls`` from a YAML file or shipped name (or defaults), then apply overrides."""
    data: dict[str, Any] = {}
    source = "config"
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        data = read_yaml(path)
        source = str(path)
    data = deep_merge(data, parse_overrides(overrides), empty_replaces=True)
    return build_config(cls, data, source)


def dump_config(config: BaseModel) -> str:
    """YAML text of a config, for artifacts that carry their own config."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
