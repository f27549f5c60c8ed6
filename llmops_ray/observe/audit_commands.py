"""``llmops audit``: print the audit log as JSON lines, with simple filters."""

from __future__ import annotations

from typing import Optional

import typer
from llmops_ray.common.cli_output import print_json


def audit_command(
    since: Optional[str] = typer.Option(None, "--since", help="ISO timestamp or a duration ago: 30m, 2h, 7d."),
    event: Optional[str] = typer.Option(None, "--event", help="Event name, or its prefix before a dot (e.g. 'key')."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only records whose fields.tenant is this."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Only the last N matching records."),
) -> None:
    """Print audit records (key creation/revocation, promotions, rollbacks, blocked requests), oldest first."""
    from llmops_ray.common.audit import read_audit

    match = {"tenant": tenant} if tenant else {}
    for record in read_audit(since=since, event=event, limit=limit, **match):
        print_json(record)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_command)
