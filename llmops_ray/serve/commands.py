"""``llmops serve``: run the Serve app in the foreground, or deploy it detached."""

from __future__ import annotations

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


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
