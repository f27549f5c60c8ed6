"""Model stacks on MLflow's model registry: versions, aliases with history, lineage, results.

Layout in MLflow (one registered model per stack):

* model version ``source``: the artifact directory of an MLflow run that holds
  ``manifest.yaml`` and ``lineage.json``; the run (experiment ``stacks/<name>``) also
  carries the lineage as params, so the version is traceable in the MLflow UI;
* model version tags: ``llmops.manifest`` (the validated manifest, JSON),
  ``llmops.lineage`` (JSON), ``llmops.eval.<suite>`` (JSON metrics of the latest
  evaluation of that suite);
* registered model tags: ``llmops.alias_history.<alias>`` (JSON list of the versions
  the alias pointed to, oldest first), used by :func:`rollback`.

Every alias change is written to the audit trail.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_ray.common.tracking import mlflow_client
from llmops_ray.config import UserError
from llmops_ray.registry.manifest import (
    StackManifest,
    load_manifest,
    split_ref,
)

MANIFEST_TAG = "llmops.manifest"
LINEAGE_TAG = "llmops.lineage"
EVAL_TAG_PREFIX = "llmops.eval."
HISTORY_TAG_PREFIX = "llmops.alias_history."
STACK_TAG = "llmops.stack"
HISTORY_KEEP = 50  # alias history entries kept per alias


@dataclass
class StackVersion:
    """One registered stack version, resolved: what serving and evaluation load."""

    name: str
    version: int
    manifest: StackManifest
    aliases: list[str] = field(default_factory=list)
    lineage: dict[str, Any] = field(default_factory=dict)
    eval_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""
    run_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def base_model(self) -> str:
        return self.manifest.base_model

    @property
    def adapter(self) -> str | None:
        return self.manifest.adapter

    @property
    def prompt_ref(self) -> str:
        return self.manifest.prompt

    @property
    def kb(self) -> str | None:
        return self.manifest.kb

    def prompt(self):
        """The stack's :class:`~llmops_ray.registry.prompts.PromptTemplate`."""
        from llmops_ray.registry.prompts import get_prompt

        return get_prompt(self.manifest.prompt)

    def metrics(self) -> dict[str, float]:
        """Flat view of stored eval results: ``metric`` and ``suite/metric`` keys.

        A bare ``metric`` key takes the most recently evaluated suite that has it.
        """
        flat: dict[str, float] = {}
        suites = sorted(self.eval_results.items(), key=lambda kv: kv[1].get("evaluated_at", ""))
        for suite, result in suites:
            for metric, value in (result.get("metrics") or {}).items():
                if isinstance(value, (int, float)):
                    flat[metric] = float(value)
                    flat[f"{suite}/{metric}"] = float(value)
        return flat

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": self.aliases,
            "manifest": self.manifest.model_dump(mode="json"),
            "lineage": self.lineage,
            "eval_results": self.eval_results,
            "source": self.source,
            "run_id": self.run_id,
        }


# --------------------------------------------------------------------------- MLflow access


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _registered_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise UserError(f"unknown stack {name!r}") from exc
    if (model.tags or {}).get(STACK_TAG) != "true":
        raise UserError(f"{name!r} is a registered model or prompt but not an llmops stack")
    return model


def _to_stack_version(client, mv, model=None) -> StackVersion:
    tags = mv.tags or {}
    if MANIFEST_TAG not in tags:
        raise UserError(f"stack {mv.name!r} version {mv.version} has no manifest")
    manifest = StackManifest.model_validate(json.loads(tags[MANIFEST_TAG]))
    evals = {k[len(EVAL_TAG_PREFIX):]: json.loads(v) for k, v in tags.items() if k.startswith(EVAL_TAG_PREFIX)}
    model = model or client.get_registered_model(mv.name)
    aliases = sorted(a for a, v in (model.aliases or {}).items() if str(v) == str(mv.version))
    return StackVersion(
        name=mv.name,
        version=int(mv.version),
        manifest=manifest,
        aliases=aliases,
        lineage=json.loads(tags.get(LINEAGE_TAG, "{}")),
        eval_results=evals,
        source=mv.source,
        run_id=mv.run_id,
    )


def get_version(name: str, version: int | str) -> StackVersion:
    """Stack ``name`` at version number ``version``."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client()
    model = _registered_model(client, name)
    try:
        mv = client.get_model_version(name, str(int(version)))
    except (MlflowException, ValueError) as exc:
        raise UserError(f"stack {name!r} has no version {version}") from exc
    return _to_stack_version(client, mv, model)


def resolve_stack(ref: str) -> StackVersion:
    """``NAME@ALIAS_OR_VERSION`` (``support@production``, ``support@3``, ``support@latest``)."""
    from mlflow.exceptions import MlflowException

    name, selector = split_ref(ref, "stack")
    client = mlflow_client()
    model = _registered_model(client, name)
    if selector.isdigit():
        return get_version(name, int(selector))
    if selector == "latest":
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise UserError(f"stack {name!r} has no versions")
        return get_version(name, max(int(v.version) for v in versions))
    try:
        mv = client.get_model_version_by_alias(name, selector)
    except MlflowException as exc:
        known = ", ".join(sorted(model.aliases or {})) or "none"
        raise UserError(f"stack {name!r} has no alias {selector!r} (aliases: {known})") from exc
    return _to_stack_version(client, mv, model)


def list_stacks() -> list[dict[str, Any]]:
    """Every stack with its versions and aliases."""
    client = mlflow_client()
    out = []
    for model in client.search_registered_models():
        if (model.tags or {}).get(STACK_TAG) != "true":
            continue
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{model.name}'"))
        out.append(
            {
                "name": model.name,
                "versions": versions,
                "aliases": {a: int(v) for a, v in (model.aliases or {}).items()},
                "description": model.description or "",
            }
        )
    return sorted(out, key=lambda r: r["name"])


def list_versions(name: str) -> list[StackVersion]:
    client = mlflow_client()
    model = _registered_model(client, name)
    versions = client.search_model_versions(f"name='{name}'")
    return sorted((_to_stack_version(client, mv, model) for mv in versions), key=lambda s: s.version)


# --------------------------------------------------------------------------- registering


def _adapter_lineage(model_dir: str | None) -> dict[str, Any]:
    if not model_dir:
        return {}
    path = Path(model_dir) / "lineage.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def check_manifest_references(manifest: StackManifest) -> StackManifest:
    """Check that the base model, adapter, prompt version and KB version all exist.

    Returns a copy with local paths made absolute (what gets stored in the registry).
    """
    from llmops_ray.models.base import check_model_source
    from llmops_ray.registry.manifest import check_adapter_dir, kb_version_exists
    from llmops_ray.registry.prompts import get_prompt

    base = check_model_source(manifest.base_model)
    adapter = check_adapter_dir(manifest.adapter) if manifest.adapter else None
    get_prompt(manifest.prompt)  # raises UserError naming the missing prompt version
    if manifest.kb:
        kb_version_exists(manifest.kb)
    return manifest.model_copy(update={"base_model": base, "adapter": adapter})


def register_stack(
    manifest: StackManifest | dict | str | os.PathLike[str],
    lineage: dict[str, Any] | None = None,
    eval_results: dict[str, dict[str, Any]] | None = None,
    aliases: list[str] | tuple[str, ...] = (),
) -> StackVersion:
    """Validate a manifest, check every reference, and register it as a new stack version.

    ``lineage`` is merged over what is found automatically (the adapter's
    ``lineage.json`` as ``training``, the KB and prompt versions). Nothing is written
    when a reference is missing.
    """
    if not isinstance(manifest, StackManifest):
        manifest = load_manifest(manifest)
    manifest = check_manifest_references(manifest)
    full_lineage: dict[str, Any] = {
        "base_model": manifest.base_model,
        "adapter": manifest.adapter,
        "prompt": manifest.prompt,
        "kb": manifest.kb,
        "registered_at": _now(),
    }
    # The fine-tuning output's lineage.json: the adapter's, or a full fine-tuned model's.
    training = _adapter_lineage(manifest.adapter) or _adapter_lineage(manifest.base_model)
    if training:
        full_lineage["training"] = training
        dataset = training.get("dataset") if isinstance(training.get("dataset"), dict) else {}
        full_lineage["dataset_hash"] = training.get("dataset_hash") or dataset.get("sha256")
        full_lineage["training_run"] = training.get("run_name")
        full_lineage["training_mlflow_run_id"] = training.get("mlflow_run_id")
    full_lineage.update(lineage or {})

    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow_client()
    name = manifest.name
    try:
        model = client.get_registered_model(name)
        if (model.tags or {}).get(STACK_TAG) != "true":
            raise UserError(f"{name!r} already names a registered model or prompt that is not a stack")
    except MlflowException:
        client.create_registered_model(name, tags={STACK_TAG: "true"}, description=manifest.description)

    experiment = mlflow.set_experiment(f"stacks/{name}")
    manifest_json = manifest.model_dump(mode="json")
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"register-{name}") as run:
        mlflow.log_params(
            {k: str(v)[:500] for k, v in full_lineage.items() if not isinstance(v, (dict, list))}
        )
        with tempfile.TemporaryDirectory() as tmp:
            import yaml

            (Path(tmp) / "manifest.yaml").write_text(yaml.safe_dump(manifest_json, sort_keys=False))
            (Path(tmp) / "lineage.json").write_text(json.dumps(full_lineage, indent=2, default=str))
            mlflow.log_artifacts(tmp, artifact_path="stack")
        source = f"{run.info.artifact_uri}/stack"
    tags = {
        MANIFEST_TAG: json.dumps(manifest_json),
        LINEAGE_TAG: json.dumps(full_lineage, default=str),
    }
    for suite, result in (eval_results or {}).items():
        tags[EVAL_TAG_PREFIX + suite] = json.dumps(result, default=str)
    mv = client.create_model_version(name, source=source, run_id=run.info.run_id, tags=tags,
                                     description=manifest.description)
    _audit("registry.registered", stack=name, version=int(mv.version), base_model=manifest.base_model,
           adapter=manifest.adapter, prompt=manifest.prompt, kb=manifest.kb)
    for alias in aliases:
        set_alias(name, alias, int(mv.version))
    return get_version(name, int(mv.version))


def record_eval(name: str, version: int, suite: str, result: dict[str, Any]) -> None:
    """Store the results of evaluating ``suite`` with stack version ``name@version``."""
    client = mlflow_client()
    get_version(name, version)  # clear error for an unknown stack/version
    client.set_model_version_tag(name, str(version), EVAL_TAG_PREFIX + suite, json.dumps(result, default=str))


# --------------------------------------------------------------------------- aliases


def _audit(event: str, **fields: Any) -> None:
    from llmops_ray.common.audit import audit

    audit(event, **fields)


def alias_history(name: str, alias: str) -> list[dict[str, Any]]:
    """Versions ``alias`` pointed to, oldest first (``[{"version", "at", "reason"}]``)."""
    client = mlflow_client()
    model = _registered_model(client, name)
    return json.loads((model.tags or {}).get(HISTORY_TAG_PREFIX + alias, "[]"))


def _write_history(client, name: str, alias: str, history: list[dict[str, Any]]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG_PREFIX + alias, json.dumps(history[-HISTORY_KEEP:]))


def set_alias(name: str, alias: str, version: int, reason: str = "", _event: str = "registry.alias",
              _audit_fields: dict[str, Any] | None = None) -> StackVersion:
    """Point ``alias`` of stack ``name`` at ``version``, keeping the alias history."""
    # MLflow reserves "latest" and "v<N>" (they would shadow version numbers).
    if (not alias or alias.isdigit() or alias == "latest" or re.fullmatch(r"[vV]\d+", alias)
            or not alias.replace("-", "").replace("_", "").isalnum()):
        raise UserError(f"alias {alias!r} must be a name (letters, digits, '-', '_'), not a number, v<N> or 'latest'")
    client = mlflow_client()
    model = _registered_model(client, name)
    target = get_version(name, version)
    previous = (model.aliases or {}).get(alias)
    history = json.loads((model.tags or {}).get(HISTORY_TAG_PREFIX + alias, "[]"))
    if previous is not None and (not history or int(history[-1]["version"]) != int(previous)):
        history.append({"version": int(previous), "at": _now(), "reason": "(set outside llmops)"})
    if previous is not None and int(previous) == target.version:
        return target
    client.set_registered_model_alias(name, alias, str(target.version))
    history.append({"version": target.version, "at": _now(), "reason": reason})
    _write_history(client, name, alias, history)
    _audit(_event, stack=name, alias=alias, version=target.version,
           previous=int(previous) if previous is not None else None, reason=reason, **(_audit_fields or {}))
    return get_version(name, target.version)


def delete_alias(name: str, alias: str, reason: str = "") -> None:
    client = mlflow_client()
    model = _registered_model(client, name)
    if alias not in (model.aliases or {}):
        raise UserError(f"stack {name!r} has no alias {alias!r}")
    previous = int(model.aliases[alias])
    client.delete_registered_model_alias(name, alias)
    history = json.loads((model.tags or {}).get(HISTORY_TAG_PREFIX + alias, "[]"))
    history.append({"version": None, "at": _now(), "reason": reason or "deleted"})
    _write_history(client, name, alias, history)
    _audit("registry.alias_deleted", stack=name, alias=alias, previous=previous, reason=reason)


def rollback(name: str, alias: str = "production", reason: str = "") -> StackVersion:
    """Point ``alias`` back at the version it held before its current one."""
    client = mlflow_client()
    model = _registered_model(client, name)
    current = (model.aliases or {}).get(alias)
    if current is None:
        raise UserError(f"stack {name!r} has no alias {alias!r} to roll back")
    history = json.loads((model.tags or {}).get(HISTORY_TAG_PREFIX + alias, "[]"))
    # Drop trailing entries for the current version, then the previous distinct one wins.
    while history and history[-1]["version"] is not None and int(history[-1]["version"]) == int(current):
        history.pop()
    while history and history[-1]["version"] is None:
        history.pop()
    if not history:
        raise UserError(f"alias {alias!r} of stack {name!r} has no earlier version to roll back to")
    previous = int(history[-1]["version"])
    history.pop()
    client.set_registered_model_alias(name, alias, str(previous))
    history.append({"version": previous, "at": _now(), "reason": f"rollback from {current}" + (f": {reason}" if reason else "")})
    _write_history(client, name, alias, history)
    _audit("registry.rollback", stack=name, alias=alias, version=previous, previous=int(current), reason=reason)
    return get_version(name, previous)


# --------------------------------------------------------------------------- diff


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def diff_versions(name: str, a: int | str, b: int | str) -> dict[str, Any]:
    """What changed from version ``a`` to ``b``: manifest keys, lineage keys, metrics."""
    va, vb = get_version(name, a), get_version(name, b)

    def changes(left: dict, right: dict) -> dict[str, dict[str, Any]]:
        fa, fb = _flatten(left), _flatten(right)
        return {k: {"from": fa.get(k), "to": fb.get(k)} for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}

    skip = {"registered_at"}
    la = {k: v for k, v in va.lineage.items() if k not in skip}
    lb = {k: v for k, v in vb.lineage.items() if k not in skip}
    ma, mb = va.metrics(), vb.metrics()
    metrics = {
        k: {"from": ma.get(k), "to": mb.get(k),
            "delta": (mb[k] - ma[k]) if k in ma and k in mb else None}
        for k in sorted(set(ma) | set(mb)) if "/" in k
    }
    return {
        "name": name,
        "from": va.version,
        "to": vb.version,
        "manifest": changes(va.manifest.model_dump(mode="json"), vb.manifest.model_dump(mode="json")),
        "lineage": changes(la, lb),
        "metrics": metrics,
    }
