"""Automatic canary rollback against the session's real MLflow registry (no Ray): the
alias moves back once however many gateway replicas see the breach, and the audit log
records ``registry.auto_rollback`` next to the registry's own ``registry.rollback``."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration]


def test_auto_rollback_moves_the_canary_once(tiny_model_dir):
    from llmops_ray.config import UserError
    from llmops_ray.common.audit import read_audit
    from llmops_ray.registry import ensure_default_prompt, register_stack, resolve_stack, set_alias
    from llmops_ray.serve.canary import auto_rollback

    prompt = ensure_default_prompt("qa-canary-unit").ref
    manifest = {"name": "unit-canary", "base_model": str(tiny_model_dir), "prompt": prompt}
    register_stack(manifest, aliases=["production", "canary"])
    register_stack({**manifest, "description": "v2"})
    register_stack({**manifest, "description": "v3"})
    set_alias("unit-canary", "canary", 2)
    set_alias("unit-canary", "canary", 3)
    figures = {"requests": 10, "errors": 5, "error_rate": 0.5, "latency_p95_ms": 10.0}
    record = auto_rollback("unit-canary", 3, ["error_rate"], figures)
    assert record["event"] == "registry.auto_rollback"
    assert record["fields"]["version"] == 2 and record["fields"]["previous"] == 3
    assert resolve_stack("unit-canary@canary").version == 2
    assert auto_rollback("unit-canary", 3, ["error_rate"], figures) is None  # another replica got there first
    assert [e["fields"]["version"] for e in read_audit(event="registry.rollback", stack="unit-canary")] == [2]
    assert len(read_audit(event="registry.auto_rollback", stack="unit-canary")) == 1
    # Rolled back to its first version, then once more: no earlier version, the alias goes.
    auto_rollback("unit-canary", 2, ["error_rate"], figures)
    assert resolve_stack("unit-canary@canary").version == 1
    auto_rollback("unit-canary", 1, ["error_rate"], figures)
    with pytest.raises(UserError):
        resolve_stack("unit-canary@canary")
