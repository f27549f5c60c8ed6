"""Typed configs: YAML + key=value overrides, unknown keys named in a one-line error."""

from pathlib import Path

import pytest
from pydantic import Field

from llmops_ray.config import (
    StrictModel,
    UserError,
    load_config,
    parse_overrides,
    workspace,
)


class Inner(StrictModel):
    rank: int = 8
    """LoRA rank."""
    targets: list[str] = Field(default_factory=lambda: ["q_proj"])
    """Module names."""


class Outer(StrictModel):
    lr: float = 1e-3
    """Learning rate."""
    name: str = "run"
    """Run name."""
    inner: Inner = Field(default_factory=Inner)
    """Nested section."""


def test_overrides_parse_yaml_scalars_and_nesting():
    assert parse_overrides(["lr=1e-4", "inner.rank=4", "inner.targets=[a,b]", "name=x"]) == {
        "lr": 1e-4,
        "inner": {"rank": 4, "targets": ["a", "b"]},
        "name": "x",
    }


def test_override_without_equals_is_an_error():
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["lr"])


def test_yaml_then_overrides(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("# test config\nlr: 0.5\ninner:\n  rank: 16\n")
    cfg = load_config(Outer, path, ["inner.rank=2"])
    assert cfg.lr == 0.5 and cfg.inner.rank == 2 and cfg.inner.targets == ["q_proj"]


def test_mapping_override_merges_and_empty_mapping_clears(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("# test config\ninner:\n  rank: 16\n  targets: [k_proj]\n")
    merged = load_config(Outer, path, ["inner={rank: 2}"])
    assert merged.inner.rank == 2 and merged.inner.targets == ["k_proj"]
    cleared = load_config(Outer, path, ["inner={}"])
    assert cleared.inner == Inner()


def test_unknown_key_is_named(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  rnak: 16\n")
    with pytest.raises(UserError, match=r"unknown key 'inner\.rnak'"):
        load_config(Outer, path)
    with pytest.raises(UserError, match=r"unknown key 'bogus'"):
        load_config(Outer, None, ["bogus=1"])


def test_wrong_type_is_one_line(tmp_path: Path):
    with pytest.raises(UserError) as info:
        load_config(Outer, None, ["lr=fast"])
    assert "lr" in str(info.value) and "\n" not in str(info.value)


def test_unknown_config_name_lists_shipped_ones():
    with pytest.raises(UserError, match="neither a file nor a shipped config"):
        load_config(Outer, "no_such_config_anywhere")


def test_field_docstrings_become_descriptions():
    assert Outer.model_fields["lr"].description == "Learning rate."


def test_workspace_follows_llmops_home(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "ws"))
    assert workspace() == (tmp_path / "ws").resolve()
