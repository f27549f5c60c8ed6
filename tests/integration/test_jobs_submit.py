"""Every script in ``jobs/`` runs under ``ray job submit`` against a local head started the way
``make demo`` starts it (``jobs/demo.py``: ``ray start --head`` with the workspace's auth token),
and prints its JSON result as the last line. ``jobs/pipeline.py`` is what ``make demo`` submits:
CI's newcomer smoke (``.ci/run``) runs it on the same path.

The head is this module's own (2 CPUs, its own ports); its jobs write into the session's
workspace (``LLMOPS_HOME`` travels in the job's runtime env), so the test reads their results
with the library.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "llmops_ray" / "resources" / "sample_corpus" / "en"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_module(demo_job):
    return demo_job


@pytest.fixture(scope="module")
def head(demo_module, workspace_dir, ray_session):
    """A `ray start --head` on free ports; yields its dashboard URL and GCS port; stopped (every
    process) at the end. Started after the session's own Ray instance (``ray_session``), so that
    the jobs prove they join their head and not the instance Ray's "auto" address finds."""
    demo_module.AUTH_TOKEN = workspace_dir / "ray" / "auth_token"
    port, dashboard_port = _free_port(), _free_port()
    demo_module.start_head(port=port, dashboard_port=dashboard_port)
    # As if another Ray instance had started on the machine after the head (a test session, a
    # notebook): Ray's "auto" address, which the job supervisor hands its drivers, now names it.
    from ray._common.utils import get_ray_address_file

    Path(get_ray_address_file(None)).write_text(ray_session.get_runtime_context().gcs_address)
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        demo_module.wait_dashboard(dashboard=dashboard)
        yield {"dashboard": dashboard, "port": port}
    finally:
        stopped = demo_module.stop_head(port)
        assert stopped > 0
        assert not demo_module.head_processes(port), "processes of the job head are left"


def submit(demo_module, head, *script_args: str) -> dict:
    code, final = demo_module.submit_job([str(a) for a in script_args], dashboard=head["dashboard"], gcs_port=head["port"])
    assert code == 0, f"{script_args[0]} exited {code}"
    assert final is not None, f"{script_args[0]} printed no JSON line"
    return final


def test_a_job_joins_the_head_it_was_submitted_to(demo_module, head):
    code = ("import json, ray\nfrom llmops_ray.cluster import init_ray\ninit_ray()\n"
            "print(json.dumps({'gcs': ray.get_runtime_context().gcs_address}))")
    out = submit(demo_module, head, "-c", code)
    assert out["gcs"].rsplit(":", 1)[1] == str(head["port"])


def test_ingest_job(demo_module, head):
    out = submit(demo_module, head, "jobs/ingest.py", CORPUS, "--kb", "jobs-kb", "--tenant", "jobs")
    assert out["kb"] == "jobs-kb" and out["version"] >= 1
    assert out["documents_written"] > 0 and out["chunks_written"] > 0 and out["errors"] == []

    from llmops_ray.kb.query import search

    hits = search("jobs-kb", "How long is the warranty?", k=3, tenant="jobs")
    assert hits and any("warranty" in h["source"] for h in hits)


def test_evaluate_job_stores_results_on_the_stack(demo_module, head, tiny_model_dir, tmp_path):
    from llmops_ray.registry import ensure_default_prompt, register_stack, resolve_stack

    stack = register_stack({"name": "jobs-eval", "base_model": str(tiny_model_dir),
                            "prompt": ensure_default_prompt("qa-jobs").ref,
                            "generation": {"max_tokens": 4, "max_model_len": 256}})
    suite = tmp_path / "jobs-mini.yaml"
    # Perplexity only: the job's wiring is what is tested here; generation through vLLM is
    # test_evaluate_stack.py's (an engine start costs ~40 s of the suite).
    suite.write_text("name: jobs-mini\nitems:\n"
                     "  - {type: perplexity, text: Ray Data reads documents and embeds them in batches.}\n")
    out = submit(demo_module, head, "jobs/evaluate.py", "--stack", f"jobs-eval@{stack.version}", "--suite", suite,
                 "--engine-cpus", "0.5")
    assert 1 < out["metrics"]["perplexity"] < 1e6
    stored = resolve_stack(f"jobs-eval@{stack.version}")
    assert stored.eval_results["jobs-mini"]["metrics"]["perplexity"] == pytest.approx(out["metrics"]["perplexity"])


@pytest.fixture(scope="module")
def served_app(demo_module, head, tiny_model_dir, tmp_path_factory):
    """``jobs/deploy.py`` of an app that checks keys, on the job head; shut down at the end."""
    config = yaml.safe_load((REPO / "serve_configs" / "local_cpu.yaml").read_text())
    port = _free_port()
    config["http"] = {"host": "127.0.0.1", "port": port}
    config["name"] = "jobs-app"
    config["gateway"]["embeddings"] = False
    config["gateway"]["hooks"] = [{"path": "llmops_ray.serve.keys:ApiKeyHook", "kwargs": {"limiter": "local"}}]
    config["models"][0]["source"] = str(tiny_model_dir)
    engine = config["models"][0]["engine_kwargs"]
    engine.pop("gpu_memory_utilization", None)  # a fixed KV cache instead (see test_serve_gateway)
    engine["kv_cache_memory_bytes"] = 256 * 2**20
    engine["max_model_len"] = 256
    path = tmp_path_factory.mktemp("jobs-app") / "jobs_app.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        out = submit(demo_module, head, "jobs/deploy.py", "--config", path)
        yield {"info": out, "port": port, "model": config["models"][0]["model_id"]}
    finally:
        subprocess.run([str(demo_module.BIN / "serve"), "shutdown", "-y", "--address", head["dashboard"]],
                       env=demo_module._env(), timeout=120)


def test_deploy_job_waits_for_an_app_with_keys(served_app):
    """The app checks keys and the job has none: it must still see the model answer (through a
    readiness key it revokes afterwards), not wait for 401s until it times out."""
    from llmops_ray.serve.keys import get_store

    out, model = served_app["info"], served_app["model"]
    assert out["endpoint"] == f"http://127.0.0.1:{served_app['port']}/v1"
    assert httpx.get(f"{out['endpoint']}/models", timeout=30).status_code == 401
    key, _ = get_store().create("jobs", models=[model])
    resp = httpx.post(f"{out['endpoint']}/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "prompt": "Ray", "max_tokens": 2}, timeout=120)
    assert resp.status_code == 200, resp.text
    probes = get_store().list(tenant="llmops-deploy")
    assert probes and all(p.revoked for p in probes), "the readiness key is revoked after the deploy"


@pytest.mark.slow
def test_bootstrap_finetune_and_tune_jobs_beside_a_serving_app(demo_module, head, served_app, tmp_path, capsys):
    """The training jobs run while the app holds part of the 2-CPU head (a rerun of `make demo`):
    their workers ask for what is free instead of waiting for CPUs forever."""
    base = tmp_path / "jobs-base"
    boot = submit(demo_module, head, "jobs/bootstrap.py", "--config", "bootstrap_tiny_cpu", "--corpus", CORPUS,
                  "--out", base, "run_name=jobs-boot", "model.vocab_size=512", "model.hidden_size=128",
                  "model.num_attention_heads=2", "model.num_key_value_heads=2", "model.num_hidden_layers=2",
                  "model.intermediate_size=256", "seq_len=64", "optim.max_steps=4", "optim.warmup_steps=1",
                  "checkpoint.every_steps=4", "log_every=2")
    assert Path(boot["output_dir"]) == base and (base / "config.json").is_file()

    data = tmp_path / "sft.jsonl"
    with data.open("w") as handle:
        for i in range(32):
            handle.write(json.dumps({"messages": [{"role": "user", "content": f"What colour is item {i}?"},
                                                  {"role": "assistant", "content": f"Item {i} is red."}]}) + "\n")
    small = ["optim.max_steps=2", "optim.micro_batch_size=4", "checkpoint.every_steps=2", "log_every=1",
             "data.max_seq_len=64"]
    ft = submit(demo_module, head, "jobs/finetune.py", "--config", "sft_lora_tiny_cpu", f"base_model={base}",
                f"data.path={data}", "run_name=jobs-lora", *small)
    assert (Path(ft["output_dir"]) / "adapter_config.json").is_file()
    assert "[train] 2 workers x" in capsys.readouterr().out, "the workers were fitted to the free CPUs"

    tuned = submit(demo_module, head, "jobs/tune.py", "--config", "tune_asha_tiny_cpu", f"data={data}",
                   f"base_model={base}", "name=jobs-asha", "num_samples=1", "max_t=1",
                   f"overrides=[{','.join(small)}]", "registration={}")
    assert len(tuned["trials"]) == 1 and all(t["error"] is None for t in tuned["trials"])
