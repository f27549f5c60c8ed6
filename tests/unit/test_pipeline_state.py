"""The pipeline's skip rule, fingerprints and config, without Ray: a stage runs once per
fingerprint, runs again when its inputs or its outputs change, and bad configs fail early."""

from __future__ import annotations

import json

import pytest

from llmops_ray.config import UserError


@pytest.fixture()
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from llmops_ray.pipeline import PipelineConfig, Runner

    lines: list[str] = []
    return Runner(PipelineConfig(name="unit"), progress=lines.append), lines


def test_stage_runs_once_per_fingerprint_and_again_when_outputs_vanish(runner, tmp_path):
    run, lines = runner
    out = tmp_path / "artifact.txt"
    calls = []

    def work():
        calls.append(1)
        out.write_text("x")
        return {"path": str(out), "n": len(calls)}

    def ok(result):
        return (tmp_path / "artifact.txt").is_file()

    assert run.stage("ingest", "fp-1", work, ok)["n"] == 1
    assert run.records["ingest"]["status"] == "ran"
    assert run.stage("ingest", "fp-1", work, ok)["n"] == 1  # unchanged: skipped
    assert run.records["ingest"]["status"] == "skipped" and len(calls) == 1
    assert any("ingest: skipped" in line for line in lines)
    assert run.stage("ingest", "fp-2", work, ok)["n"] == 2  # input changed
    out.unlink()
    assert run.stage("ingest", "fp-2", work, ok)["n"] == 3  # output gone
    state = json.loads(run.state.path.read_text())
    assert state["stages"]["ingest"]["fingerprint"] == "fp-2"
    assert state["stages"]["ingest"]["result"]["n"] == 3


def test_failing_output_check_reruns_and_force_reruns(runner):
    from llmops_ray.pipeline import PipelineConfig, Runner

    run, _ = runner
    calls = []
    work = lambda: calls.append(1) or {"n": len(calls)}  # noqa: E731

    def broken(_result):
        raise FileNotFoundError("gone")

    run.stage("register", "fp", work, lambda r: True)
    run.stage("register", "fp", work, broken)
    assert len(calls) == 2
    forced = Runner(PipelineConfig(name="unit", force=["register"]))
    forced.stage("register", "fp", work, lambda r: True)
    assert len(calls) == 3 and forced.records["register"]["status"] == "ran"


def test_failed_stage_records_nothing(runner):
    run, _ = runner

    def boom():
        raise UserError("bad input")

    with pytest.raises(UserError):
        run.stage("finetune", "fp", boom, lambda r: True)
    assert run.state.get("finetune") is None


def test_content_hash_follows_file_bytes(tmp_path):
    from llmops_ray.pipeline import content_hash, digest

    (tmp_path / "a.md").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("world")
    first = content_hash([str(tmp_path)])
    assert content_hash([str(tmp_path)]) == first
    (tmp_path / "sub" / "b.txt").write_text("world!")
    assert content_hash([str(tmp_path)]) != first
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})


def test_shipped_pipeline_config_loads_and_rejects_unknown_keys():
    from llmops_ray.pipeline import load_pipeline_config, serve_config, served_model_name

    cfg = load_pipeline_config("pipeline_demo_cpu", ["finetune.mode=tune", "deploy.overrides=[http.port=8123]"])
    assert cfg.finetune.mode == "tune" and cfg.ingest.tenant == cfg.demo_key.tenant == "demo"
    serve_cfg = serve_config(cfg)
    assert serve_cfg.http.port == 8123
    assert [h.path.rsplit(":", 1)[1] for h in serve_cfg.gateway.hooks] == [
        "ApiKeyHook", "RailsHook", "StackHook", "ObserveHook"]
    assert served_model_name(cfg, serve_cfg, "/x/models/demo-sft-1") == "demo"
    plain = load_pipeline_config("pipeline_demo_cpu", ["deploy.hooks=[]"])
    assert served_model_name(plain, serve_config(plain), "/x/models/demo-sft-1") == "tiny-base:demo-sft-1"
    with pytest.raises(UserError, match="unknown key 'finetune.modee'"):
        load_pipeline_config("pipeline_demo_cpu", ["finetune.modee=tune"])


def test_unknown_forced_stage_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path))
    from llmops_ray.pipeline import PipelineConfig, run_pipeline

    with pytest.raises(UserError, match="unknown stage 'trian'"):
        run_pipeline(PipelineConfig(force=["trian"]))


def test_missing_ingest_path_fails_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from llmops_ray.pipeline import PipelineConfig, run_pipeline

    with pytest.raises(UserError, match="does not exist"):
        run_pipeline(PipelineConfig.model_validate({"ingest": {"paths": [str(tmp_path / "nope")]}}))
    assert not (tmp_path / "ws" / "models" / "tiny-base").exists()


def test_stage_summary_line_shows_scalars_and_metrics():
    from llmops_ray.pipeline.state import _summary

    line = _summary({"ref": "demo@3", "suite": "sample_kb", "report": None,
                     "metrics": {"recall_at_k": 1.0, "mrr": 0.9375, "perplexity": 1234.5678},
                     "dropped": {"too_short": ["a.md"]}})
    assert line == "ref=demo@3 suite=sample_kb report=None metrics: recall_at_k=1 mrr=0.9375 perplexity=1235"
