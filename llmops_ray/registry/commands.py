"""``llmops registry list|show|register|alias|promote|rollback|diff|prompt``.

Every command prints JSON on stdout (one object, or one line per stack for ``list``) so
scripts can read it; bad input is one ``llmops: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from llmops_ray.common.cli_output import print_json


def register(app: typer.Typer) -> None:
    registry = typer.Typer(help="Model stacks: versions, aliases, lineage, gated promotion.", no_args_is_help=True)
    app.add_typer(registry, name="registry")

    @registry.command("list")
    def list_cmd() -> None:
        """One JSON line per stack: versions and aliases."""
        from llmops_ray.registry import list_stacks

        for row in list_stacks():
            print_json(row)

    @registry.command("show")
    def show_cmd(ref: str = typer.Argument(..., help="NAME@ALIAS_OR_VERSION, or NAME for every version")) -> None:
        """A stack version: manifest, lineage, aliases, eval results."""
        from llmops_ray.registry import list_versions, resolve_stack

        if "@" in ref:
            print_json(resolve_stack(ref).to_dict())
        else:
            print_json({"name": ref, "versions": [v.to_dict() for v in list_versions(ref)]})

    @registry.command("register")
    def register_cmd(
        manifest: Path = typer.Option(..., "--manifest", "-m", help="Stack manifest YAML"),
        lineage: Optional[str] = typer.Option(None, "--lineage", help="Extra lineage as a JSON object"),
        alias: list[str] = typer.Option([], "--alias", help="Aliases to point at the new version"),
    ) -> None:
        """Validate a manifest and register it as a new stack version."""
        from llmops_ray.config import UserError
        from llmops_ray.registry import register_stack

        extra = None
        if lineage:
            try:
                extra = json.loads(lineage)
            except json.JSONDecodeError as exc:
                raise UserError(f"--lineage is not valid JSON: {exc}") from exc
            if not isinstance(extra, dict):
                raise UserError("--lineage must be a JSON object")
        stack = register_stack(manifest, lineage=extra, aliases=alias)
        print_json({"name": stack.name, "version": stack.version, "aliases": stack.aliases})

    @registry.command("alias")
    def alias_cmd(
        name: str = typer.Argument(..., help="Stack name"),
        alias: str = typer.Option(..., "--alias", "-a", help="Alias name (production, canary, staging, ...)"),
        version: Optional[int] = typer.Option(None, "--version", "-v", help="Version to point the alias at"),
        delete: bool = typer.Option(False, "--delete", help="Remove the alias instead"),
        reason: str = typer.Option("", "--reason", help="Recorded in the alias history and audit trail"),
    ) -> None:
        """Point an alias at a version (no gates: use `promote` for production)."""
        from llmops_ray.config import UserError
        from llmops_ray.registry import set_alias
        from llmops_ray.registry.store import delete_alias

        if delete:
            delete_alias(name, alias, reason)
            print_json({"name": name, "alias": alias, "deleted": True})
            return
        if version is None:
            raise UserError("--version is required (or --delete)")
        stack = set_alias(name, alias, version, reason)
        print_json({"name": name, "alias": alias, "version": stack.version})

    @registry.command("promote")
    def promote_cmd(
        name: str = typer.Argument(..., help="Stack name"),
        version: int = typer.Option(..., "--version", "-v", help="Candidate version"),
        to: str = typer.Option("production", "--to", help="Alias to move"),
        force: bool = typer.Option(False, "--force", help="Promote even when gates fail (needs --reason)"),
        reason: str = typer.Option("", "--reason", help="Why (recorded in the audit trail)"),
    ) -> None:
        """Move an alias to a candidate when its gate metrics are not worse than the current holder's."""
        from llmops_ray.registry import promote

        stack, report = promote(name, version, to=to, force=force, reason=reason)
        print_json({"name": name, "alias": to, "version": stack.version, "forced": not report.passed,
                "gates": report.to_dict()})

    @registry.command("rollback")
    def rollback_cmd(
        name: str = typer.Argument(..., help="Stack name"),
        alias: str = typer.Option("production", "--alias", help="Alias to roll back"),
        reason: str = typer.Option("", "--reason", help="Recorded in the audit trail"),
    ) -> None:
        """Point an alias back at the version it held before."""
        from llmops_ray.registry import rollback

        stack = rollback(name, alias, reason)
        print_json({"name": name, "alias": alias, "version": stack.version})

    @registry.command("diff")
    def diff_cmd(
        name: str = typer.Argument(..., help="Stack name"),
        a: str = typer.Argument(..., help="From version"),
        b: str = typer.Argument(..., help="To version"),
    ) -> None:
        """Manifest, lineage and metric differences between two versions."""
        from llmops_ray.registry import diff_versions

        print_json(diff_versions(name, a, b))

    @registry.command("prompt")
    def prompt_cmd(
        file: Optional[Path] = typer.Option(None, "--file", "-f", help="YAML {name, messages}"),
        name: Optional[str] = typer.Option(None, "--name", help="Prompt name (overrides the file's)"),
        show: Optional[str] = typer.Option(None, "--show", help="Print NAME@VERSION instead"),
    ) -> None:
        """Register a prompt template version (or show one); identical text reuses the version."""
        from llmops_ray.config import UserError
        from llmops_ray.registry.prompts import ensure_default_prompt, get_prompt, register_prompt_file

        if show:
            p = get_prompt(show)
        elif file is not None:
            p = register_prompt_file(file, name)
        elif name:
            p = ensure_default_prompt(name)
        else:
            raise UserError("give --file FILE, --name NAME (the shipped template) or --show NAME@VERSION")
        print_json({"name": p.name, "version": p.version, "ref": p.ref, "messages": p.messages})
