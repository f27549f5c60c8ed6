"""Connect to the Ray cluster in ``RAY_ADDRESS``, or start a local one sized to the machine.

Nothing here assumes a single node: paths handed to tasks are workspace paths (a shared
filesystem on a real cluster) or URIs, never process-local state.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Set before Ray, torch or transformers are imported anywhere in the process: the
# embedder and tokenizers must never try a model hub (none is reachable), and the
# tokenizers' own thread pool fights Ray's workers for the same cores.
PROCESS_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "1",
}
# Ray Serve latency settings (read by every replica and HTTP proxy at start-up, so they go to
# the head's environment as well as to the workers'): run our async replica code and the
# router on the replica's main event loop instead of hopping to a second loop per message,
# send proxy -> gateway -> LLM server calls over Serve's direct gRPC channel instead of Ray
# actor tasks, and keep the per-request access log in the log files only (our own request log
# has the details). These are the settings of Serve's own throughput-optimised mode minus its
# direct ingress (which listens on per-replica ports, not the one endpoint) and its buffered
# replica logs (which hide start-up logs until 1000 lines). Measured on 2 cores with
# benchmarks/serve_overhead.py: the two event-loop settings gave -5 ms time-to-first-token in
# one A/B; gRPC, in two alternating A/B pairs, +7.6/+9.3 ms over bare vLLM vs +10.0/+11.5 ms
# without, and 1.10x/1.02x of bare vLLM's tokens/s at 32 streams vs 0.91x/0.96x.
SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_LOG_TO_STDERR": "0",
}
PROCESS_ENV.update(SERVE_ENV)
# Ray Train V2's controller collects a worker's `ray.train.report` when it polls the worker
# group, every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (default 2 s), and a worker holds at most one
# unread report: a worker that reports more often than that waits for the poll. On the tiny
# fine-tuning runs of a Tune search a report (one ASHA iteration) came every 2.04 s whatever
# its work was. A poll is one small Ray task per worker; a missed poll is not an error (the
# controller waits on it, for 10 minutes by default), so a short interval only costs those tasks.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}
PROCESS_ENV.update(TRAIN_ENV)


def apply_process_env() -> None:
    """Apply :data:`PROCESS_ENV` defaults without overriding what the user set."""
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    # Ray 2.60 token auth: CLI clients (`ray job submit`, `serve deploy`) need
    # RAY_AUTH_MODE=token to use the token the head wrote to ~/.ray/auth_token. Ray reads the
    # variable once, at import: changing it after `import ray` makes this process disagree
    # with the cluster it starts (InvalidAuthToken), so only set it before Ray is imported.
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def runtime_env() -> dict[str, Any]:
    """Environment every Ray worker of ours gets (the same offline settings as the driver)."""
    env = {k: os.environ.get(k, v) for k, v in PROCESS_ENV.items()}
    if os.environ.get("LLMOPS_HOME"):
        env["LLMOPS_HOME"] = os.environ["LLMOPS_HOME"]
    if os.environ.get("MLFLOW_TRACKING_URI"):
        env["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
    torch_ext = os.environ.get("TORCH_EXTENSIONS_DIR")
    if torch_ext:
        env["TORCH_EXTENSIONS_DIR"] = torch_ext
    return {"env_vars": env}


def init_ray(num_cpus: float | None = None, **kwargs: Any):
    """Connect to ``RAY_ADDRESS`` when set, else start (or reuse) a local Ray instance.

    A local instance gets every core of the machine unless ``num_cpus`` says otherwise.
    Returns the Ray context (or ``None`` when Ray was already initialised in this process).
    """
    apply_process_env()
    import ray

    if ray.is_initialized():
        return None
    address = os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {
        "runtime_env": runtime_env(),
        "log_to_driver": True,
        "ignore_reinit_error": True,
    }
    options.update(kwargs)
    if address:
        return ray.init(address=address, **options)
    options.setdefault("include_dashboard", False)
    # address="local": without it Ray 2.60 attaches to any head that `ray start` left on the
    # machine (/tmp/ray/ray_current_cluster) and then refuses num_cpus.
    options.setdefault("address", "local")
    return ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **options)


def cluster_cpus() -> float:
    """CPUs the connected cluster has in total (starts/joins Ray if needed)."""
    import ray

    init_ray()
    return float(ray.cluster_resources().get("CPU", 1.0))


def cluster_gpus() -> float:
    """GPUs the connected cluster has in total."""
    import ray

    init_ray()
    return float(ray.cluster_resources().get("GPU", 0.0))
