"""Model stacks on MLflow: manifest validation, versions, aliases, lineage, gated promotion.

Public calls (other areas use these):

* :func:`resolve_stack` ``("support@production") -> StackVersion``
* :func:`register_stack` ``(manifest, lineage=None, eval_results=None, aliases=()) -> StackVersion``
* :func:`set_alias` ``(name, alias, version, reason="") -> StackVersion``
* :func:`promote` ``(name, version, to="production", force=False, reason="") -> (StackVersion, GateReport)``
* :func:`rollback` ``(name, alias="production", reason="") -> StackVersion``
* prompts: :func:`register_prompt`, :func:`get_prompt`, :func:`ensure_default_prompt`

MLflow is imported inside the functions, so importing this package is cheap.
"""

from llmops_ray.registry.gates import GateReport, evaluate_gates, promote
from llmops_ray.registry.manifest import StackManifest, load_manifest
from llmops_ray.registry.prompts import PromptTemplate, ensure_default_prompt, get_prompt, register_prompt
from llmops_ray.registry.store import (
    StackVersion,
    alias_history,
    diff_versions,
    get_version,
    list_stacks,
    list_versions,
    record_eval,
    register_stack,
    resolve_stack,
    rollback,
    set_alias,
)

__all__ = [
    "GateReport", "PromptTemplate", "StackManifest", "StackVersion", "alias_history", "diff_versions",
    "ensure_default_prompt", "evaluate_gates", "get_prompt", "get_version", "list_stacks", "list_versions",
    "load_manifest", "promote", "record_eval", "register_prompt", "register_stack", "resolve_stack",
    "rollback", "set_alias",
]
