"""Registry on the session's real MLflow SQLite store: round trip, gates, rollback, bad input.

No Ray needed: MLflow's registry is embedded. Each test uses its own stack name because
the store is shared by the whole test session.
"""

from __future__ import annotations

import json

import pytest

from llmops_ray.config import UserError
from llmops_ray.common.audit import read_audit
from llmops_ray.registry import (
    alias_history, diff_versions, ensure_default_prompt, get_prompt, list_stacks, promote,
    register_prompt, register_stack, resolve_stack, rollback, set_alias,
)


def _manifest(name: str, model_dir, prompt_ref: str, **extra):
    return {
        "name": name,
        "base_model": str(model_dir),
        "prompt": prompt_ref,
        "policy": {"gates": [{"metric": "token_f1", "direction": "higher", "threshold": 0.1},
                             {"metric": "perplexity", "direction": "lower"}]},
        **extra,
    }


def _evals(f1: float, ppl: float):
    return {"smoke": {"metrics": {"token_f1": f1, "perplexity": ppl}, "evaluated_at": "2026-01-01T00:00:00Z"}}


@pytest.fixture(scope="module")
def prompt_ref():
    return ensure_default_prompt("qa-test").ref


def test_prompt_versions_are_idempotent():
    messages = [{"role": "user", "content": "Q: {{question}}"}]
    p1 = register_prompt("p-test", messages)
    assert register_prompt("p-test", messages).version == p1.version
    p2 = register_prompt("p-test", [{"role": "user", "content": "Question: {{question}}"}])
    assert p2.version == p1.version + 1
    assert get_prompt(f"p-test@{p1.version}").render("hi") == [{"role": "user", "content": "Q: hi"}]
    assert get_prompt("p-test@latest").version == p2.version
    with pytest.raises(UserError, match="does not exist"):
        get_prompt("p-test@99")
    with pytest.raises(UserError, match="question"):
        register_prompt("p-test", [{"role": "user", "content": "no variable"}])


def test_round_trip_register_resolve_diff(tiny_model_dir, prompt_ref):
    v1 = register_stack(_manifest("rt-stack", tiny_model_dir, prompt_ref), lineage={"search": "abc"},
                        eval_results=_evals(0.5, 20.0), aliases=["staging"])
    v2 = register_stack(_manifest("rt-stack", tiny_model_dir, prompt_ref, description="v2",
                                  generation={"max_tokens": 32}))
    assert (v1.version, v2.version) == (1, 2)
    got = resolve_stack("rt-stack@staging")
    assert got.version == 1 and got.aliases == ["staging"]
    assert got.base_model == str(tiny_model_dir.resolve())
    assert got.lineage["search"] == "abc" and got.lineage["prompt"] == prompt_ref
    assert got.metrics()["smoke/token_f1"] == 0.5
    assert got.prompt().ref == prompt_ref
    assert resolve_stack("rt-stack@latest").version == 2
    assert resolve_stack("rt-stack@2").manifest.generation.max_tokens == 32
    diff = diff_versions("rt-stack", 1, 2)
    assert diff["manifest"]["generation.max_tokens"] == {"from": 64, "to": 32}
    assert diff["lineage"]["search"] == {"from": "abc", "to": None}
    assert diff["metrics"]["smoke/token_f1"]["to"] is None
    row = [r for r in list_stacks() if r["name"] == "rt-stack"][0]
    assert row["versions"] == [1, 2] and row["aliases"] == {"staging": 1}


def test_unknown_stack_alias_version_are_clear_errors(tiny_model_dir, prompt_ref):
    register_stack(_manifest("err-stack", tiny_model_dir, prompt_ref))
    with pytest.raises(UserError, match="unknown stack 'no-such-stack'"):
        resolve_stack("no-such-stack@production")
    with pytest.raises(UserError, match="no alias 'canary'"):
        resolve_stack("err-stack@canary")
    with pytest.raises(UserError, match="no version 7"):
        resolve_stack("err-stack@7")
    with pytest.raises(UserError, match="not a number"):
        set_alias("err-stack", "3", 1)


def test_missing_references_register_nothing(tiny_model_dir, prompt_ref, tmp_path, workspace_dir):
    import lancedb

    from llmops_ray.config import kb_root

    name = "ref-stack"
    with pytest.raises(UserError, match="adapter directory .* does not exist"):
        register_stack(_manifest(name, tiny_model_dir, prompt_ref, adapter=str(tmp_path / "nope")))
    with pytest.raises(UserError, match="knowledge base 'ghost-kb' does not exist"):
        register_stack(_manifest(name, tiny_model_dir, prompt_ref, kb="ghost-kb@1"))
    with pytest.raises(UserError, match="prompt 'qa-test@999' does not exist"):
        register_stack(_manifest(name, tiny_model_dir, "qa-test@999"))
    with pytest.raises(UserError, match="base model path"):
        register_stack(_manifest(name, tmp_path / "no-model", prompt_ref))
    # A real LanceDB table with versions 1 and 2 (create + one add).
    db = lancedb.connect(str(kb_root()))
    table = db.create_table("reg-kb", data=[{"doc_id": "a", "text": "x"}], mode="overwrite")
    table.add([{"doc_id": "b", "text": "y"}])
    latest = max(int(v.version) if not isinstance(v, dict) else int(v["version"]) for v in table.list_versions())
    with pytest.raises(UserError, match="has no version 999"):
        register_stack(_manifest(name, tiny_model_dir, prompt_ref, kb="reg-kb@999"))
    assert name not in [r["name"] for r in list_stacks()]
    stack = register_stack(_manifest(name, tiny_model_dir, prompt_ref, kb=f"reg-kb@{latest}"))
    assert stack.kb == f"reg-kb@{latest}" and stack.version == 1


def test_promotion_refused_for_worse_candidate_then_forced(tiny_model_dir, prompt_ref):
    name = "gate-stack"
    register_stack(_manifest(name, tiny_model_dir, prompt_ref), eval_results=_evals(0.5, 20.0))
    register_stack(_manifest(name, tiny_model_dir, prompt_ref), eval_results=_evals(0.4, 18.0))
    register_stack(_manifest(name, tiny_model_dir, prompt_ref))  # v3: never evaluated
    stack, report = promote(name, 1)
    assert stack.version == 1 and report.passed and report.production_version is None
    with pytest.raises(UserError, match="token_f1: 0.4 is worse than production's 0.5"):
        promote(name, 2)
    assert resolve_stack(f"{name}@production").version == 1
    with pytest.raises(UserError, match="no evaluation result"):
        promote(name, 3)
    with pytest.raises(UserError, match="--reason"):
        promote(name, 2, force=True)
    stack, report = promote(name, 2, force=True, reason="hotfix for incident 42")
    assert stack.version == 2 and not report.passed
    records = [r for r in read_audit() if r["fields"].get("stack") == name]
    events = [r["event"] for r in records]
    assert events.count("registry.promote_refused") == 2
    forced = [r for r in records if r["event"] == "registry.promoted" and r["fields"]["forced"]]
    assert len(forced) == 1
    assert forced[0]["fields"]["reason"] == "hotfix for incident 42" and forced[0]["fields"]["failures"]
    assert forced[0]["timestamp"]


def test_rollback_restores_previous_production(tiny_model_dir, prompt_ref):
    name = "rb-stack"
    for f1 in (0.3, 0.4, 0.5):
        register_stack(_manifest(name, tiny_model_dir, prompt_ref), eval_results=_evals(f1, 10.0))
    promote(name, 1)
    promote(name, 2)
    promote(name, 3)
    assert rollback(name).version == 2
    assert resolve_stack(f"{name}@production").version == 2
    assert rollback(name).version == 1
    with pytest.raises(UserError, match="no earlier version"):
        rollback(name)
    assert resolve_stack(f"{name}@production").version == 1
    history = alias_history(name, "production")
    assert history[-1]["version"] == 1 and "rollback" in history[-1]["reason"]
    with pytest.raises(UserError, match="no alias 'canary' to roll back"):
        rollback(name, "canary")


def test_cli_registry_commands(tiny_model_dir, prompt_ref, tmp_path, capsys):
    from llmops_ray.cli import main

    manifest = tmp_path / "stack.yaml"
    manifest.write_text(json.dumps(_manifest("cli-stack", tiny_model_dir, prompt_ref)))

    def run(*argv):
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        out = capsys.readouterr()
        return exit_info.value.code, out.out, out.err

    code, out, _ = run("registry", "register", "--manifest", str(manifest), "--alias", "canary")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["version"] == 1
    code, out, _ = run("registry", "show", "cli-stack@canary")
    assert code == 0 and json.loads(out)["version"] == 1
    code, _, err = run("registry", "show", "cli-stack@production")
    assert code == 2 and err.startswith("llmops: error:") and "no alias 'production'" in err
    code, _, err = run("registry", "promote", "cli-stack", "--version", "1", "--to", "production")
    assert code == 2 and "no evaluation result" in err
    code, out, _ = run("registry", "promote", "cli-stack", "--version", "1", "--force", "--reason", "first")
    assert code == 0 and json.loads(out)["forced"] is True
    code, out, _ = run("registry", "list")
    assert code == 0 and any(json.loads(line)["name"] == "cli-stack" for line in out.splitlines())
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(_manifest("cli-stack", tiny_model_dir, prompt_ref, adapter="/no/such/adapter")))
    code, _, err = run("registry", "register", "--manifest", str(bad))
    assert code == 2 and "adapter directory" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run("registry", "show", "cli-stack")
    assert len(json.loads(out)["versions"]) == 1  # the bad manifest registered nothing
