"""Every shipped YAML parses, begins with a comment giving its purpose and the exact
command that runs it, and validates against the config model it is for."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DIRS = ["llmops_ray/configs", "llmops_ray/resources", "serve_configs", "deploy"]
COMMAND_WORDS = ("llmops ", "serve run", "serve deploy", "ray job submit", "ray up", "kubectl ", "python ", "promtool ")


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


# Each shipped config and what validates it: a StrictModel class (loaded through
# llmops_ray.config.load_config, so unknown keys fail) or a loader function.
VALIDATORS = {
    "llmops_ray/configs/sft_*.yaml": "llmops_ray.train.config:FinetuneConfig",
    "llmops_ray/configs/dpo_*.yaml": "llmops_ray.train.config:FinetuneConfig",
    "llmops_ray/configs/bootstrap_*.yaml": "llmops_ray.train.bootstrap:BootstrapConfig",
    "llmops_ray/configs/tune_*.yaml": "llmops_ray.tune.config:TuneSearchConfig",
    "llmops_ray/configs/pipeline_*.yaml": "llmops_ray.pipeline:PipelineConfig",
    "llmops_ray/configs/prices.yaml": "llmops_ray.observe.cost:load_prices",
    "serve_configs/*.yaml": "llmops_ray.serve.config:load_serve_config",
    "llmops_ray/resources/eval_suites/*.yaml": "llmops_ray.evaluate.suite:load_suite",
}


def _validate(target: str, path: Path) -> None:
    from pydantic import BaseModel

    from llmops_ray.config import load_config

    module_name, attr = target.split(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        load_config(obj, path)
    else:
        obj(path)


@pytest.mark.parametrize("pattern", sorted(VALIDATORS))
def test_shipped_configs_validate(pattern: str):
    matched = sorted(REPO.glob(pattern))
    assert matched, f"no file matches {pattern}"
    for path in matched:
        _validate(VALIDATORS[pattern], path)


def test_every_shipped_config_has_a_validator():
    covered = {path for pattern in VALIDATORS for path in REPO.glob(pattern)}
    configs = set((REPO / "llmops_ray/configs").glob("*.yaml")) | set((REPO / "serve_configs").glob("*.yaml")) \
        | set((REPO / "llmops_ray/resources/eval_suites").glob("*.yaml"))
    assert configs - covered == set(), f"configs nobody validates: {sorted(configs - covered)}"


def test_a_config_with_an_unknown_key_is_refused(tmp_path: Path):
    from llmops_ray.config import UserError

    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "llmops_ray/configs/sft_lora_tiny_cpu.yaml").read_text() + "\nnot_a_field: 1\n")
    with pytest.raises(UserError, match="not_a_field"):
        _validate(VALIDATORS["llmops_ray/configs/sft_*.yaml"], bad)
