"""What every ``llmops`` command shares: JSON lines on stdout and sub-command groups."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional

import typer


#: Where a long-running library call reports its progress lines (None: nowhere).
Progress = Optional[Callable[[str], None]]


def say(progress: Progress, message: str) -> None:
    """Hand one progress line to ``progress`` (None: say nothing)."""
    if progress is not None:
        progress(message)


def print_progress(message: str) -> None:
    """A :data:`Progress` that prints each line at once (the commands' and jobs' default)."""
    print(message, flush=True)


def print_json(obj: Any, drop: tuple[str, ...] = ()) -> None:
    """One JSON line on stdout, flushed (a command's result is its last stdout line); keys in
    ``drop`` are left out of a mapping (e.g. a training ``history``)."""
    if drop and isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k not in drop}
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """The sub-app ``name`` of ``app``, reusing one another area already registered."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub
