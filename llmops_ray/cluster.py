"""Connect to the Ray cluster in ``RAY_ADDRESS``, or start a local one sized to the machine.

Nothing here assumes a single node: paths handed to tasks are workspace paths (a shared
filesystem on a real cluster) or URIs, never process-local state.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
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
        # Clients of a head that `make demo` (or a test) started find its token here.
        use_auth_token(workspace_auth_token(), create=False)


# Where Ray 2.60's token auth finds the cluster token when neither variable is set: the
# workspace's copy (written by `make demo`, a test session or `use_auth_token`), never a
# file in the home directory that a fresh machine does not have.
AUTH_TOKEN_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def workspace_auth_token() -> Path:
    """The workspace's Ray auth token file (``$LLMOPS_HOME/ray/auth_token``)."""
    from llmops_ray.config import workspace

    return workspace() / "ray" / "auth_token"


def use_auth_token(path: str | os.PathLike[str], create: bool = True) -> Path | None:
    """Point this process (and every process it starts) at the Ray auth token in ``path``.

    ``ray start --head`` with token auth on refuses to start when no token exists, and a
    local ``ray.init`` writes one to ``~/.ray``; both are avoided by keeping the token in
    the workspace and naming it in ``RAY_AUTH_TOKEN_PATH``. ``create`` writes a new token
    (256 random bits, hex, mode 0600, as ``ray get-auth-token --generate`` does) when the
    file is missing. A token the user chose (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``
    already set) wins: returns None then, and when there is no file and ``create`` is False.
    Call it before ``import ray``: Ray's token loader caches what it found.
    """
    if any(os.environ.get(var) for var in AUTH_TOKEN_VARS):
        return None
    path = Path(path)
    if not path.is_file():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic and never replaces a token another process just wrote
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path.resolve())
    return path


# The cluster a job submitted by `make demo` (or a test) belongs to. Ray's job supervisor hands
# its driver RAY_ADDRESS resolved from "auto", i.e. the Ray instance started *last* on the
# machine, which is another one when a test session or a notebook started after the head.
JOB_CLUSTER_VAR = "LLMOPS_RAY_ADDRESS"


def cluster_address() -> str | None:
    """The cluster to join: ``LLMOPS_RAY_ADDRESS`` (set by whoever submitted the job and knows
    its head), else ``RAY_ADDRESS``; None = start a local instance."""
    return os.environ.get(JOB_CLUSTER_VAR) or os.environ.get("RAY_ADDRESS") or None


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
    """Connect to :func:`cluster_address` when set, else start (or reuse) a local Ray instance.

    A local instance gets every core of the machine unless ``num_cpus`` says otherwise.
    Returns the Ray context (or ``None`` when Ray was already initialised in this process).
    A new local instance uses the workspace's auth token (created on first use).
    """
    address = cluster_address()
    if not address and kwargs.get("address", "local") == "local":
        use_auth_token(workspace_auth_token())
    apply_process_env()
    import ray

    if ray.is_initialized():
        return None
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
