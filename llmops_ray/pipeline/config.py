"""Typed config of the lifecycle pipeline (``llmops_ray/configs/pipeline_demo_cpu.yaml``), its
stages' settings, and the checks that every config it names loads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from llmops_ray.config import StrictModel, build_config, load_config

STAGES = ("ingest", "bootstrap", "finetune", "register", "evaluate", "promote", "demo_key", "deploy")
STACK_HOOK = "llmops_ray.serve.stacks:StackHook"


class IngestStage(StrictModel):
    """Documents -> knowledge base."""

    paths: list[str] = Field(default_factory=list)
    """Files/directories to ingest; empty = the packaged sample corpus."""
    kb: str = "demo"
    """Knowledge base name (LanceDB table)."""
    tenant: str = "demo"
    """Tenant the documents belong to (the demo API key gets the same tenant)."""
    mode: Literal["incremental", "rebuild"] = "incremental"
    """Ingest mode."""
    config: str | None = None
    """IngestConfig YAML (None = defaults)."""
    overrides: list[str] = Field(default_factory=list)
    """``key=value`` overrides of the IngestConfig."""


class BootstrapStage(StrictModel):
    """Pretraining the tiny base model when ``<workspace>/models/tiny-base`` is missing."""

    config: str = "bootstrap_tiny_cpu"
    """BootstrapConfig YAML or shipped name."""
    overrides: list[str] = Field(default_factory=list)
    """``key=value`` overrides (e.g. ``optim.max_steps=8``)."""
    corpus: list[str] = Field(default_factory=list)
    """Pretraining corpus; empty = the ingest paths (or the sample corpus)."""


class FinetuneStage(StrictModel):
    """SFT set from the KB, then LoRA fine-tuning (or a Ray Tune search) of the base model."""

    mode: Literal["finetune", "tune"] = "finetune"
    """``finetune``: one run; ``tune``: a Ray Tune search, the best trial's adapter is used."""
    config: str = "sft_lora_tiny_cpu"
    """FinetuneConfig YAML or shipped name."""
    overrides: list[str] = Field(default_factory=list)
    """``key=value`` overrides of the FinetuneConfig."""
    run_name: str = "demo-sft"
    """Prefix of the run name; the stage fingerprint is appended (``demo-sft-1a2b3c4d``), so
    changed inputs train a fresh adapter and an interrupted run of the same inputs resumes."""
    tune_config: str = "tune_asha_tiny_cpu"
    """TuneSearchConfig YAML or shipped name (mode ``tune``)."""
    tune_overrides: list[str] = Field(default_factory=list)
    """``key=value`` overrides of the TuneSearchConfig."""
    max_pairs: int = Field(400, ge=1)
    """Most question/answer pairs taken from the KB for the SFT set."""
    per_chunk: int = Field(3, ge=1)
    """Question/answer pairs per KB chunk."""


class StackStage(StrictModel):
    """The stack version registered from the pipeline's outputs."""

    name: str = "demo"
    """Stack name in the registry (and the ``model`` clients call when a StackHook serves it)."""
    description: str = "Demo stack built by the llmops pipeline"
    """Shown by ``llmops registry show``."""
    prompt: str = "qa"
    """Prompt name; the shipped QA template is registered under it (idempotent)."""
    use_kb: bool = True
    """Attach the ingested KB version (RAG on the serving path)."""
    generation: dict[str, Any] = Field(default_factory=dict)
    """Manifest ``generation`` settings (``max_tokens``, ``temperature``, ...)."""
    policy: dict[str, Any] = Field(default_factory=dict)
    """Manifest ``policy`` (``gates``, ``slo``)."""


class EvaluateStage(StrictModel):
    """Evaluation of the candidate (vLLM batch generation through Ray Data)."""

    suite: str = "smoke"
    """Suite file or shipped suite name."""
    engine_cpus: float = Field(1.0, gt=0)
    """CPU share of the evaluation engine actor."""
    engine_gpus: float = Field(0.0, ge=0)
    """GPUs of the evaluation engine actor."""


class PromoteStage(StrictModel):
    """Gate-checked promotion."""

    enabled: bool = True
    """Promote the candidate when its gates pass."""
    alias: str = "production"
    """Alias to move."""


class DemoKeyStage(StrictModel):
    """The API key printed at the end (created once, kept in the workspace)."""

    tenant: str = "demo"
    """Tenant of the key (same as the ingest tenant so RAG finds its documents)."""
    rpm: int | None = None
    """Requests per minute (None = unlimited)."""


class DeployStage(StrictModel):
    """Deploy or upgrade the Serve app (detached: it outlives the job)."""

    enabled: bool = True
    """Deploy at all (off: stop after promotion)."""
    config: str = "local_cpu"
    """Serve YAML or a name in ``serve_configs/``."""
    overrides: list[str] = Field(default_factory=list)
    """``key=value`` overrides of the serve config (``http.port=8001``, ``name=...``)."""
    hooks: list[dict[str, Any]] | None = None
    """Gateway hooks replacing the serve config's (``[{path, kwargs}]``); None = keep them."""
    model: str = ""
    """``model`` clients call; empty = the stack name when a StackHook serves it, else
    ``<model_id>:<adapter>``."""
    timeout_s: float = Field(900.0, gt=0)
    """How long to wait for the first answer."""


class PipelineConfig(StrictModel):
    """The end-to-end pipeline (``jobs/pipeline.py``, ``make demo``)."""

    name: str = "demo"
    """Pipeline name: state ``<workspace>/pipeline/<name>/``, MLflow experiment ``pipeline/<name>``."""
    ingest: IngestStage = Field(default_factory=IngestStage)
    """Ingest stage."""
    bootstrap: BootstrapStage = Field(default_factory=BootstrapStage)
    """Bootstrap stage."""
    finetune: FinetuneStage = Field(default_factory=FinetuneStage)
    """Fine-tune / tune stage."""
    stack: StackStage = Field(default_factory=StackStage)
    """Registration stage."""
    evaluate: EvaluateStage = Field(default_factory=EvaluateStage)
    """Evaluation stage."""
    promote: PromoteStage = Field(default_factory=PromoteStage)
    """Promotion stage."""
    demo_key: DemoKeyStage = Field(default_factory=DemoKeyStage)
    """Demo API key."""
    deploy: DeployStage = Field(default_factory=DeployStage)
    """Deploy stage."""
    force: list[str] = Field(default_factory=list)
    """Stages to run even when their fingerprint is unchanged (``all`` = every stage)."""


def load_pipeline_config(name_or_path: str | None = "pipeline_demo_cpu", overrides=()) -> PipelineConfig:
    """Load a :class:`PipelineConfig` (shipped name or YAML path) with ``key=value`` overrides."""
    return load_config(PipelineConfig, name_or_path, overrides)


def check_pipeline_config(config: PipelineConfig) -> dict[str, Any]:
    """Load every config the pipeline refers to (UserError naming the first that fails) and
    return where each was found: ``{"bootstrap", "finetune", "tune", "suite", "serve"}``
    (file paths; ``suite`` is the suite's name)."""
    from llmops_ray.config import resolve_config_path
    from llmops_ray.evaluate.suite import load_suite
    from llmops_ray.train.bootstrap import BootstrapConfig
    from llmops_ray.serve.config import resolve_serve_config_path
    from llmops_ray.train import FinetuneConfig

    load_config(BootstrapConfig, config.bootstrap.config, config.bootstrap.overrides)
    load_config(FinetuneConfig, config.finetune.config, config.finetune.overrides)
    found = {"bootstrap": resolve_config_path(config.bootstrap.config),
             "finetune": resolve_config_path(config.finetune.config)}
    if config.finetune.mode == "tune":
        from llmops_ray.tune.search import load_search_config

        load_search_config(config.finetune.tune_config, config.finetune.tune_overrides)
        found["tune"] = resolve_config_path(config.finetune.tune_config)
    found["suite"] = load_suite(config.evaluate.suite).name
    if config.deploy.enabled:
        serve_config(config)
        found["serve"] = resolve_serve_config_path(config.deploy.config)
    return {key: str(value) for key, value in found.items()}


def serve_config(config: PipelineConfig):
    """The :class:`~llmops_ray.serve.config.ServeAppConfig` the pipeline deploys."""
    from llmops_ray.serve.config import ServeAppConfig, load_serve_config

    cfg = config.deploy
    serve_cfg = load_serve_config(cfg.config, cfg.overrides)
    if cfg.hooks is not None:
        data = serve_cfg.model_dump(mode="json")
        data["gateway"]["hooks"] = cfg.hooks
        serve_cfg = build_config(ServeAppConfig, data, "deploy.hooks")
    return serve_cfg
