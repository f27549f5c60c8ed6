"""Serve configs: the three shipped YAMLs load and build Ray Serve LLM ``LLMConfig``s."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_ray.config import UserError, build_config, read_yaml
from llmops_ray.serve.config import SERVE_CONFIGS_DIR, ServeAppConfig, expand_path, load_serve_config

SHIPPED = ["local_cpu", "gpu_vllm", "multi_model"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_yaml_starts_with_purpose_and_command(name):
    text = (SERVE_CONFIGS_DIR / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert f"serve run llmops_ray.serve.app:app_builder config=serve_configs/{name}.yaml" in header
    assert f"llmops serve --config serve_configs/{name}.yaml" in header


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_yaml_builds_llm_configs(name, workspace_dir):
    from ray.serve.llm import LLMConfig

    from llmops_ray.serve.llm import build_llm_config

    config = load_serve_config(name)
    for spec in config.models:
        llm = build_llm_config(spec)
        assert isinstance(llm, LLMConfig)
        assert llm.model_id == spec.model_id
        auto = llm.deployment_config["autoscaling_config"]
        assert auto["min_replicas"] == spec.autoscaling.min_replicas
        assert auto["max_replicas"] == spec.autoscaling.max_replicas
        assert auto["target_ongoing_requests"] == spec.autoscaling.target_ongoing_requests
        assert llm.deployment_config["ray_actor_options"]["num_cpus"] == spec.num_cpus
        assert llm.accelerator_config.kind == spec.accelerator
        if spec.lora is not None:
            assert llm.engine_kwargs["enable_lora"] is True
            assert llm.lora_config.max_num_adapters_per_replica == spec.lora.max_adapters_per_replica
            assert llm.lora_config.dynamic_lora_loading_path is None  # local dir: our loader
        source = llm.model_loading_config.model_source
        if spec.source.startswith("${LLMOPS_HOME}"):
            assert source == str(workspace_dir / "models" / "tiny-base")


def test_cpu_and_gpu_defaults_come_from_yaml():
    cpu = load_serve_config("local_cpu").models[0]
    assert cpu.accelerator == "cpu" and cpu.num_cpus == 0
    assert cpu.engine_kwargs["gpu_memory_utilization"] <= 0.2
    assert cpu.engine_kwargs["enforce_eager"] is True
    assert cpu.engine_kwargs["max_model_len"] == 1024
    gpu = load_serve_config("gpu_vllm").models[0]
    assert gpu.accelerator == "gpu"
    assert gpu.engine_kwargs["tensor_parallel_size"] == 1
    assert gpu.engine_kwargs["gpu_memory_utilization"] >= 0.8
    multi = load_serve_config("multi_model")
    assert [m.model_id for m in multi.models] == ["tiny-base", "tiny-chat"]
    assert multi.models[1].autoscaling.min_replicas == 0


def test_gpu_placement_and_accelerator_type():
    from llmops_ray.serve.llm import llm_config_dict

    data = read_yaml(SERVE_CONFIGS_DIR / "gpu_vllm.yaml")
    data["models"][0]["placement_group_config"] = {"bundles": [{"GPU": 1}, {"GPU": 1}], "strategy": "PACK"}
    spec = build_config(ServeAppConfig, data).models[0]
    d = llm_config_dict(spec)
    assert d["accelerator_type"] == "L40S"
    assert d["placement_group_config"]["strategy"] == "PACK"
    assert d["accelerator_config"] == {"kind": "gpu"}


def test_overrides_and_unknown_keys():
    config = load_serve_config("local_cpu", ["http.port=8123", "gateway.num_cpus=0.5"])
    assert config.http.port == 8123 and config.gateway.num_cpus == 0.5
    with pytest.raises(UserError, match="unknown key 'gateway.nmu_cpus'"):
        load_serve_config("local_cpu", ["gateway.nmu_cpus=1"])
    with pytest.raises(UserError):
        load_serve_config("no_such_config")


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"model_id": "a:b"}, "no ':'"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "max_replicas"),
        ({"autoscaling": {"min_replicas": -1}}, "min_replicas"),
        ({"accelerator": "tpu"}, "accelerator"),
    ],
)
def test_bad_model_specs_are_user_errors(patch, message):
    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"][0].update(patch)
    with pytest.raises(UserError, match=message):
        build_config(ServeAppConfig, data)


def test_duplicate_models_rejected():
    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(UserError, match="duplicate model_id"):
        build_config(ServeAppConfig, data)


def test_scale_to_zero_allowed():
    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"][0]["autoscaling"] = {"min_replicas": 0, "max_replicas": 2}
    assert build_config(ServeAppConfig, data).models[0].autoscaling.to_serve()["min_replicas"] == 0


def test_expand_path(workspace_dir, monkeypatch, tmp_path):
    assert expand_path("${LLMOPS_HOME}/models/x") == f"{workspace_dir}/models/x"
    (workspace_dir / "models" / "rel-model").mkdir(parents=True, exist_ok=True)
    assert expand_path("models/rel-model") == str(workspace_dir / "models" / "rel-model")
    assert expand_path("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    monkeypatch.setenv("MY_MODELS", str(tmp_path))
    assert expand_path("$MY_MODELS/m") == f"{tmp_path}/m"


def test_build_app_reports_missing_model_dir(tmp_path):
    from llmops_ray.serve.app import build_app

    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"][0]["source"] = str(tmp_path / "nope")
    with pytest.raises(UserError, match="does not exist"):
        build_app(build_config(ServeAppConfig, data))


def test_cli_serve_bad_input_exits_2(tmp_path):
    import subprocess
    import sys


    repo = Path(__file__).resolve().parents[2]
    env = {"LLMOPS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for args, needle in [
        (["serve", "--config", "no_such_config"], "no_such_config"),
        (["serve", "--config", "local_cpu"], "tiny-base"),  # empty workspace: no bootstrapped model
        (["serve", "--set", "gateway.bogus=1"], "unknown key"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "llmops_ray.cli", *args], capture_output=True, text=True,
                              env=env, cwd=repo, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("llmops: error:") and needle in lines[0], proc.stderr
