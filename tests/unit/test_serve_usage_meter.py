"""Replica-seconds are metered in the engine replica and land in the replica_usage log."""

from __future__ import annotations

import time

from ray.llm._internal.serve.core.configs.accelerators import CPUConfig
from ray.serve.llm import LLMConfig

from llmops_ray.observe import request_log
from llmops_ray.serve.server import start_usage_meter


def test_usage_meter_writes_replica_seconds_on_close(workspace_dir):
    config = LLMConfig(model_loading_config={"model_id": "meter-test", "model_source": "/nonexistent"},
                       accelerator_config=CPUConfig())
    observer = start_usage_meter(config)
    time.sleep(0.3)
    observer.close()
    rows = [r for r in request_log.query_usage() if r["stack"] == "meter-test"]
    assert len(rows) == 1
    assert rows[0]["accelerator"] == "cpu"
    assert 0.2 <= rows[0]["replica_seconds"] < 30
