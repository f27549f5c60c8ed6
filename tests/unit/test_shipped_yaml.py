"""Every shipped YAML parses, begins with a comment giving its purpose and the exact
command that runs it, and validates against the config model it is for."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DIRS = ["llmops_ray/configs", "serve_configs", "deploy"]
COMMAND_WORDS = ("llmops ", "serve run", "serve deploy", "ray job submit", "ray up", "kubectl ", "python ")


def shipped_yamls() -> list[Path]:
    files: list[Path] = []
    for folder in SHIPPED_DIRS:
        files += sorted((REPO / folder).rglob("*.yaml")) + sorted((REPO / folder).rglob("*.yml"))
    files.append(REPO / "cluster.yaml")
    return files


def header_comment(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("path", shipped_yamls(), ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses_and_says_how_to_run_it(path: Path):
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    assert docs, f"{path} is empty"
    header = header_comment(path)
    assert header, f"{path} must begin with a comment saying what it is for"
    assert any(word in header for word in COMMAND_WORDS), f"{path}: the header comment names no command"


# Config files and the function that validates them (raises on any problem).
VALIDATORS = {
}


@pytest.mark.parametrize("pattern", sorted(VALIDATORS))
def test_shipped_configs_validate(pattern: str):
    module_name, func_name = VALIDATORS[pattern].split(":")
    validate = getattr(importlib.import_module(module_name), func_name)
    matched = sorted(REPO.glob(pattern))
    assert matched, f"no file matches {pattern}"
    for path in matched:
        validate(path)
