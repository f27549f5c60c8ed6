"""Shared fixtures: one temporary workspace and one local Ray instance per test session.

The workspace variable is set at import time so that every module, Ray workers included
(they inherit the driver's environment through ``cluster.runtime_env``), writes under the
session's temporary directory and never into the developer's ``./.llmops``.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="llmops-test-"))
os.environ["LLMOPS_HOME"] = str(_SESSION_HOME)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{_SESSION_HOME / 'mlflow.db'}")
# DeepSpeed's JIT-built ops are cached across sessions (about 40 s to build once).
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "llmops-torch-extensions"))
os.environ.pop("RAY_ADDRESS", None)
# Ray 2.60 token auth: Ray reads this at import, so it must be set before anything imports ray.
os.environ.setdefault("RAY_AUTH_MODE", "token")

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration/ is an integration test (it starts a local Ray):
    `-m "not integration"` then runs without Ray, whatever a file forgets to mark."""
    integration = REPO_ROOT / "tests" / "integration"
    for item in items:
        if Path(str(item.fspath)).is_relative_to(integration):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def demo_job():
    """``jobs/demo.py`` (what `make demo` / `make down` run) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("llmops_demo_job", REPO_ROOT / "jobs" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def workspace_dir() -> Path:
    """The session's workspace (``LLMOPS_HOME``)."""
    return _SESSION_HOME


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session, shut down at the end.

    2 CPUs whatever the machine: tests size their actors and deployments for CI's 2 cores.
    """
    import ray

    from llmops_ray.cluster import init_ray

    # init_ray starts a fresh instance (address="local") even when a `ray start` head, e.g.
    # from `make demo`, is running on this machine.
    init_ray(num_cpus=2)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_http_port() -> int:
    """The one HTTP port Serve uses in this session.

    Serve's proxy starts once per Ray instance and keeps the port it started with, so every
    test module's app must ask for the same port (a free one: other Ray instances may run).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real, loadable (random-init) Llama-architecture model with a trained tokenizer.

    Fast to build (seconds); for tests that need a model vLLM and transformers can load,
    not one that writes good text.
    """
    from llmops_ray.models.base import TinyModelConfig, build_random_model_dir

    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO_ROOT / "tests" / "data").rglob("*.md"))]
    texts += [p.read_text(encoding="utf-8") for p in sorted((REPO_ROOT / "llmops_ray").rglob("*.py"))]
    out = tmp_path_factory.mktemp("tiny-model")
    config = TinyModelConfig(vocab_size=1024, num_hidden_layers=2, intermediate_size=512)
    return build_random_model_dir(texts, out, config)
