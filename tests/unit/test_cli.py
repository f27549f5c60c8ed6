"""The `llmops` entry point: help works, bad usage is one line and exit code 2."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LLMOPS = [sys.executable, "-c", "from llmops_ray.cli import main; main()"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMOPS, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_help_lists_commands():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("ingest", "search", "pipeline", "finetune", "serve", "keys", "registry", "eval", "tune",
                    "model", "data", "kb", "logs", "cost", "slo", "audit", "info"):
        assert f" {command} " in result.stdout, f"`llmops --help` does not list {command}"


def test_unknown_command_is_exit_2_one_line():
    result = run("no-such-command")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("llmops: error:"), result.stderr


def test_console_script_installed():
    assert (Path(sys.executable).parent / "llmops").exists()
