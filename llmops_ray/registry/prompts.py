"""Versioned prompt templates, on MLflow's prompt registry (same store as the stacks).

A template is a list of chat messages whose contents may use ``{{question}}`` and
``{{context}}`` (MLflow's double-brace variables). Stacks reference it as
``name@version``. Registering identical text again returns the existing version, so
re-running a demo does not pile up versions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from llmops_ray.config import RESOURCES_DIR, UserError, read_yaml

DEFAULT_PROMPT_FILE = RESOURCES_DIR / "prompts" / "qa_default.yaml"


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt version: ``messages`` with ``{{variables}}`` in their contents."""

    name: str
    version: int
    messages: list[dict[str, str]]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, question: str, context: str = "", system: str | None = None) -> list[dict[str, str]]:
        """Fill the variables. ``system`` replaces the template's system message (safety suites)."""
        out = []
        for message in self.messages:
            content = message["content"].replace("{{question}}", question).replace("{{context}}", context)
            out.append({"role": message["role"], "content": content})
        if system is not None:
            out = [m for m in out if m["role"] != "system"]
            out.insert(0, {"role": "system", "content": system})
        return out


def _validate_messages(messages: Any, source: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{source}: 'messages' must be a non-empty list of {{role, content}}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise UserError(f"{source}: message {i} must have exactly 'role' and 'content'")
        if message["role"] not in ("system", "user", "assistant"):
            raise UserError(f"{source}: message {i} has unknown role {message['role']!r}")
    if not any("{{question}}" in m["content"] for m in messages):
        raise UserError(f"{source}: no message uses {{{{question}}}}")
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def register_prompt(name: str, messages: list[dict[str, str]], message: str = "") -> PromptTemplate:
    """Register ``messages`` as a new version of prompt ``name`` (or return the identical latest)."""
    from llmops_ray.common.tracking import mlflow_client

    messages = _validate_messages(messages, f"prompt {name!r}")
    mlflow_client()
    import mlflow

    try:
        latest = _latest(name)
    except UserError:
        latest = None
    if latest is not None and latest.messages == messages:
        return latest
    prompt = mlflow.genai.register_prompt(name=name, template=messages, commit_message=message or "llmops")
    return PromptTemplate(name=name, version=int(prompt.version), messages=messages)


def register_prompt_file(path: str | os.PathLike[str], name: str | None = None) -> PromptTemplate:
    """Register a YAML file ``{name: ..., messages: [...]}`` (``name`` may be given instead)."""
    data = read_yaml(path)
    unknown = set(data) - {"name", "messages", "description"}
    if unknown:
        raise UserError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    prompt_name = name or data.get("name")
    if not prompt_name:
        raise UserError(f"{path}: missing key 'name'")
    return register_prompt(prompt_name, data.get("messages"), data.get("description", ""))


def ensure_default_prompt(name: str = "qa") -> PromptTemplate:
    """The shipped QA template registered under ``name`` (idempotent)."""
    data = read_yaml(DEFAULT_PROMPT_FILE)
    return register_prompt(name, data["messages"], data.get("description", ""))


def _latest(name: str) -> PromptTemplate:
    from llmops_ray.common.tracking import mlflow_client

    client = mlflow_client()
    import mlflow

    try:
        versions = client.search_prompt_versions(name)
        numbers = [int(v.version) for v in getattr(versions, "prompt_versions", versions)]
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own exception type
        raise UserError(f"prompt {name!r} does not exist") from exc
    if not numbers:
        raise UserError(f"prompt {name!r} does not exist")
    prompt = mlflow.genai.load_prompt(f"prompts:/{name}/{max(numbers)}")
    return PromptTemplate(name=name, version=int(prompt.version), messages=list(prompt.template))


def get_prompt(ref: str) -> PromptTemplate:
    """Load ``name@version`` (or ``name@latest``); a clear error when it does not exist."""
    from llmops_ray.registry.manifest import split_ref
    from llmops_ray.common.tracking import mlflow_client

    name, version = split_ref(ref, "prompt")
    if version == "latest":
        return _latest(name)
    if not version.isdigit():
        raise UserError(f"prompt {ref!r}: version must be a number or 'latest'")
    mlflow_client()
    import mlflow

    try:
        prompt = mlflow.genai.load_prompt(f"prompts:/{name}/{int(version)}")
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"prompt {ref!r} does not exist in the prompt registry") from exc
    template = prompt.template
    if isinstance(template, str):  # a text prompt registered outside llmops: one user message
        template = [{"role": "user", "content": template}]
    return PromptTemplate(name=name, version=int(prompt.version), messages=list(template))
