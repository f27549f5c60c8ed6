"""``llmops tune --config NAME_OR_PATH [key=value ...]``: last stdout line is the search summary (JSON)."""

from __future__ import annotations

from typing import Optional

import typer
from llmops_ray.common.cli_output import print_json


def register(app: typer.Typer) -> None:
    @app.command("tune")
    def tune_cmd(
        config: str = typer.Option(..., "--config", help="Shipped tune config name or YAML path"),
        overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides of the tune config"),
    ) -> None:
        """Search fine-tuning hyperparameters with Ray Tune; optionally register the best trial."""
        from llmops_ray.tune.search import load_search_config, run_search

        summary = run_search(load_search_config(config, overrides or []))
        print_json(summary)
