"""The Serve latency settings reach every place a Ray node or worker starts from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from llmops_ray.cluster import PROCESS_ENV, SERVE_ENV, runtime_env

REPO = Path(__file__).resolve().parents[2]


def test_serve_env_is_part_of_the_process_and_worker_env():
    assert set(SERVE_ENV) >= {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "RAY_SERVE_USE_GRPC_BY_DEFAULT"}
    for key, value in SERVE_ENV.items():
        assert PROCESS_ENV[key] == value
        assert runtime_env()["env_vars"][key]  # workers (replicas) get it too


def test_cluster_yaml_starts_every_node_with_the_serve_env():
    assert SERVE_ENV, "nothing to check"
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    for section in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[section] if "ray start" in c]
        assert start, section
        for key, value in SERVE_ENV.items():
            assert all(f"{key}={value}" in c for c in start), (section, key)


def test_demo_head_gets_the_serve_env(monkeypatch):
    assert SERVE_ENV, "nothing to check"
    for key in SERVE_ENV:
        monkeypatch.delenv(key, raising=False)
    spec = importlib.util.spec_from_file_location("demo_job", REPO / "jobs" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    env = demo._env()
    assert all(env[k] == v for k, v in SERVE_ENV.items())
    monkeypatch.setenv("RAY_SERVE_LOG_TO_STDERR", "1")  # what the user set wins
    assert demo._env()["RAY_SERVE_LOG_TO_STDERR"] == "1"


def test_train_poll_interval_reaches_every_worker_and_the_user_value_wins(monkeypatch):
    from llmops_ray.cluster import TRAIN_ENV

    assert "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S" in TRAIN_ENV
    # Train V2's controller reads it in its own actor, which inherits the job's env_vars.
    assert float(TRAIN_ENV["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]) < 2.0  # Ray's default is 2 s
    for key, value in TRAIN_ENV.items():
        assert PROCESS_ENV[key] == value
        monkeypatch.delenv(key, raising=False)
        assert runtime_env()["env_vars"][key] == value
        monkeypatch.setenv(key, "1.5")
        assert runtime_env()["env_vars"][key] == "1.5"
