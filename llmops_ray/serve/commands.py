"""``llmops serve`` (run the Serve app in the foreground, or deploy it detached) and
``llmops keys create|list|revoke`` (API keys of tenants, :mod:`llmops_ray.serve.keys`)."""

from __future__ import annotations

import sys
import time
from typing import List, Optional

import typer

from llmops_ray.common.cli_output import print_json


def serve_command(
    config: str = typer.Option("local_cpu", "--config", "-c", help="Serve YAML (or a name in serve_configs/)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: key=value (repeatable)."),
    detach: bool = typer.Option(False, "--detach", help="Deploy to the running Ray cluster and return."),
) -> None:
    """Serve models behind the OpenAI-compatible gateway (Ctrl-C stops a foreground app)."""
    from llmops_ray.serve.app import check_sources
    from llmops_ray.serve.config import load_serve_config

    cfg = load_serve_config(config, set_ or [])
    check_sources(cfg)  # a missing model directory is a one-line error before Ray starts
    if detach:
        from llmops_ray.serve.app import deploy_detached

        print_json(deploy_detached(cfg))
        return
    from llmops_ray.cluster import init_ray
    from llmops_ray.serve.app import start_app

    init_ray()
    info = start_app(cfg)
    print_json(info)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()


keys_app = typer.Typer(help="API keys and tenants: create, list, usage, revoke.", no_args_is_help=True)


@keys_app.command("create")
def create_command(
    tenant: str = typer.Option(..., "--tenant", help="Tenant the key belongs to (scopes its KB rows)."),
    rpm: Optional[int] = typer.Option(None, "--rpm", min=1, help="Requests per minute (default: unlimited)."),
    tpm: Optional[int] = typer.Option(None, "--tpm", min=1, help="Tokens per minute (default: unlimited)."),
    tokens_per_day: Optional[int] = typer.Option(None, "--tokens-per-day", min=1,
                                                 help="Token budget per UTC day (default: unlimited)."),
    tokens_per_month: Optional[int] = typer.Option(None, "--tokens-per-month", min=1,
                                                   help="Token budget per UTC month (default: unlimited)."),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1,
                                                 help="Requests in flight at once (default: the gateway's, 16)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1,
                                             help="Largest max_tokens per request (default: the gateway's ceiling)."),
    models: Optional[List[str]] = typer.Option(
        None, "--models", help="Models/stacks the key may use (repeat or comma-separate; default: all)."),
    name: str = typer.Option("", "--name", help="Free-form label shown in `llmops keys list`."),
) -> None:
    """Create a key and print it once, as one JSON line (`api_key` is not stored and cannot be shown again)."""
    from llmops_ray.serve.keys import get_store

    plaintext, info = get_store().create(tenant, rpm=rpm, tpm=tpm, models=models, name=name,
                                         tokens_per_day=tokens_per_day, tokens_per_month=tokens_per_month,
                                         max_concurrent=max_concurrent, max_tokens=max_tokens)
    print("store this key now: it is shown only once", file=sys.stderr)
    print_json({"api_key": plaintext, **info.to_dict()})


@keys_app.command("list")
def list_command(
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant's keys."),
    active: bool = typer.Option(False, "--active", help="Hide revoked keys."),
) -> None:
    """One JSON line per key (id, tenant, limits, models, created/revoked); never the secret."""
    from llmops_ray.serve.keys import get_store

    for info in get_store().list(tenant=tenant, include_revoked=not active):
        print_json(info.to_dict())


@keys_app.command("usage")
def usage_command(key_id: str = typer.Argument(..., help="Key id (from `llmops keys list`).")) -> None:
    """Tokens and requests a key has used per budget period (``d:YYYY-MM-DD``, ``m:YYYY-MM``, UTC)."""
    from llmops_ray.config import UserError
    from llmops_ray.serve.keys import get_store

    store = get_store()
    info = store.get(key_id)
    if info is None:
        raise UserError(f"no API key with id {key_id!r} (see `llmops keys list`)")
    print_json({"key_id": key_id, "tenant": info.tenant, "tokens_per_day": info.tokens_per_day,
                "tokens_per_month": info.tokens_per_month, "usage": store.usage(key_id)})


@keys_app.command("revoke")
def revoke_command(key_id: str = typer.Argument(..., help="Key id (from `llmops keys list`).")) -> None:
    """Revoke a key: the next request with it gets 401 in every gateway replica."""
    from llmops_ray.serve.keys import get_store

    print_json(get_store().revoke(key_id).to_dict())


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.add_typer(keys_app, name="keys")
