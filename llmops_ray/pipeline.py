"""The whole lifecycle as one job: ingest -> bootstrap -> fine-tune (or tune) -> register ->
evaluate -> promote -> demo key -> deploy.

:func:`run_pipeline` is what ``jobs/pipeline.py`` (``ray job submit``) and ``make demo`` run.
Each stage prints one result line (``[pipeline] <stage>: ran ...`` / ``skipped ...``) and is
logged to MLflow (experiment ``pipeline/<name>``: one run per pipeline execution, a tag and the
result JSON per stage, numeric results as metrics).

Reruns do no stage twice: a stage's *fingerprint* is a hash of its config and of the
identity of its inputs (file contents of the corpus, the KB version, the base model files,
the adapter, the stack version, the eval suite, the serve config). Fingerprint and result are
kept in ``<workspace>/pipeline/<name>/state.json``; a stage is skipped when its fingerprint
is unchanged and its outputs still exist (the KB version, the model directory, the stack
version and its eval result, the running Serve app). A stage's fingerprint includes the
results of the stages it depends on, so a change upstream re-runs everything after it.

Order note: evaluation runs against a registered stack version (``evaluate_stack`` stores
the results on it, and the promotion gates read them), so the candidate is registered
first, then evaluated, then promoted when its gates pass. A refused promotion is a result,
not an error: the pipeline still deploys (production keeps serving the previous version).

The bootstrap stage only runs when there is no base model at
``<workspace>/models/tiny-base`` (``models_root() / "tiny-base"``); an existing one is used
as is, whoever made it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from llmops_ray.common.cli_output import Progress, print_progress, say
from llmops_ray.config import SAMPLE_CORPUS, StrictModel, UserError, build_config, load_config, models_root, workspace_path

STAGES = ("ingest", "bootstrap", "finetune", "register", "evaluate", "promote", "demo_key", "deploy")
STACK_HOOK = "llmops_ray.serve.stacks:StackHook"
KEY_HOOK = "llmops_ray.serve.keys:ApiKeyHook"



# --------------------------------------------------------------------------- config


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


# --------------------------------------------------------------------------- hashing


def digest(*parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts`` (16 hex characters)."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_hash(paths: list[str]) -> str:
    """sha256 over relative names and bytes of every file under ``paths`` (the corpus)."""
    h = hashlib.sha256()
    for root in paths:
        base = Path(root)
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            h.update(str(f.relative_to(base) if f != base else f.name).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def dir_fingerprint(path: str | Path) -> str:
    """Cheap identity of a model directory: names, sizes and mtimes of its files."""
    base = Path(path)
    items = [(str(p.relative_to(base)), p.stat().st_size, p.stat().st_mtime_ns)
             for p in sorted(base.rglob("*")) if p.is_file()]
    return digest(items)


# --------------------------------------------------------------------------- state


class State:
    """``<workspace>/pipeline/<name>/state.json``: per stage, fingerprint and last result."""

    def __init__(self, name: str):
        self.dir = workspace_path("pipeline", name)
        self.path = self.dir / "state.json"
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                self.data = {}  # an unreadable state only costs a rerun
        self.data.setdefault("stages", {})

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.data["stages"].get(stage)

    def put(self, stage: str, fingerprint: str, result: dict[str, Any]) -> None:
        self.data["stages"][stage] = {"fingerprint": fingerprint, "result": result, "finished_at": time.time()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.path)


# --------------------------------------------------------------------------- MLflow


def start_tracking(name: str, fingerprint: str):
    """One MLflow run per pipeline execution (client API: no global active run, so the
    stages' own MLflow runs are unaffected); None when the store is unusable."""
    from llmops_ray.common.tracking import start_run

    return start_run(f"pipeline/{name}", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                     tags={"llmops.pipeline": name, "llmops.config_hash": fingerprint})


def track_stage(run, stage: str, status: str, seconds: float, result: dict[str, Any]) -> None:
    """A stage's status tag, duration, numeric results and the result itself."""
    if run is None:
        return
    run.set_tag(f"stage.{stage}", status)
    run.log_metrics({"seconds": seconds, **_numbers(result)}, prefix=f"{stage}.")
    run.log_dict(result, f"stages/{stage}.json")


def _numbers(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and value == value:
            out[name] = float(value)
        elif isinstance(value, dict) and key in ("metrics",):
            out.update(_numbers(value, f"{name}."))
    return {k.replace("@", "_"): v for k, v in out.items()}


# --------------------------------------------------------------------------- stages


def _summary(result: dict[str, Any]) -> str:
    """One line of a stage's scalar results, plus a flat mapping of numbers (the eval metrics)."""
    keep = {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None}
    line = " ".join(f"{k}={v}" for k, v in list(keep.items())[:10])
    for key, value in result.items():
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            line += f" {key}: " + " ".join(f"{k}={v:.4g}" for k, v in value.items())
    return line


class Runner:
    """Runs the stages in order with the skip rule; collects one record per stage."""

    def __init__(self, config: PipelineConfig, progress: Progress = None):
        self.config = config
        self.progress = progress or print_progress
        self.state = State(config.name)
        self.tracker = start_tracking(config.name, digest(config.model_dump(mode="json")))
        self.records: dict[str, dict[str, Any]] = {}

    def stage(self, name: str, fingerprint: str, run: Callable[[], dict[str, Any]],
              outputs_ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        previous = self.state.get(name)
        forced = name in self.config.force or "all" in self.config.force
        if previous and previous["fingerprint"] == fingerprint and not forced:
            try:
                ok = outputs_ok(previous["result"])
            except Exception:  # noqa: BLE001 - an output check that fails means "not there"
                ok = False
            if ok:
                result = previous["result"]
                self.records[name] = {"status": "skipped", "seconds": 0.0, "fingerprint": fingerprint, "result": result}
                say(self.progress, f"[pipeline] {name}: skipped (unchanged, fingerprint {fingerprint}) {_summary(result)}")
                track_stage(self.tracker, name, "skipped", 0.0, result)
                return result
        say(self.progress, f"[pipeline] {name}: running (fingerprint {fingerprint})")
        started = time.monotonic()
        result = run()
        seconds = round(time.monotonic() - started, 1)
        self.state.put(name, fingerprint, result)
        self.records[name] = {"status": "ran", "seconds": seconds, "fingerprint": fingerprint, "result": result}
        say(self.progress, f"[pipeline] {name}: ran in {seconds} s {_summary(result)}")
        track_stage(self.tracker, name, "ran", seconds, result)
        return result


def _ingest_paths(config: PipelineConfig) -> list[str]:
    paths = config.ingest.paths or [str(SAMPLE_CORPUS)]
    return [str(Path(p).expanduser().resolve()) for p in paths]


def stage_ingest(runner: Runner) -> dict[str, Any]:
    cfg = runner.config.ingest
    paths = _ingest_paths(runner.config)
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"ingest: path does not exist: {', '.join(missing)}")
    # The packaged corpus is named, not located: a job's working_dir copy moves with every
    # upload and Ray session, and its bytes (the content hash) are what matter.
    where = paths if cfg.paths else ["<sample_corpus>"]
    fp = digest("ingest", cfg.model_dump(mode="json"), where, content_hash(paths))

    def run() -> dict[str, Any]:
        from llmops_ray.data.ingest import ingest, load_ingest_config

        summary = ingest(paths, cfg.kb, tenant=cfg.tenant, mode=cfg.mode,
                         config=load_ingest_config(cfg.config, cfg.overrides),
                         progress=lambda m: say(runner.progress, f"  ingest: {m}"))
        if summary["documents_read"] == 0:
            raise UserError(f"ingest: no document of {paths} could be read (errors: {summary['errors'][:3]})")
        keep = ("kb", "tenant", "version", "documents_read", "documents_written", "documents_unchanged",
                "chunks_written", "errors")
        out = {k: summary.get(k) for k in keep}
        out["errors"] = len(summary.get("errors") or [])
        out["kb_ref"] = f"{cfg.kb}@{summary['version']}"
        return out

    def outputs_ok(result: dict[str, Any]) -> bool:
        from llmops_ray.registry.manifest import kb_version_exists

        kb_version_exists(result["kb_ref"])
        return True

    return runner.stage("ingest", fp, run, outputs_ok)


def base_model_dir() -> Path:
    """The bootstrapped base model's directory (the cross-area contract)."""
    return models_root() / "tiny-base"


def stage_bootstrap(runner: Runner) -> dict[str, Any]:
    cfg = runner.config.bootstrap
    base = base_model_dir()
    fp = digest("bootstrap", cfg.model_dump(mode="json"))
    if (base / "config.json").is_file() and runner.state.get("bootstrap") is None:
        # A base model made outside the pipeline: use it, record it, never overwrite it.
        fp = digest("bootstrap", "present")

    def run() -> dict[str, Any]:
        if (base / "config.json").is_file():
            return {"output_dir": str(base), "bootstrapped": False, "model_fp": dir_fingerprint(base)}
        from llmops_ray.train.bootstrap import BootstrapConfig, bootstrap

        boot = load_config(BootstrapConfig, cfg.config, cfg.overrides)
        corpus = cfg.corpus or _ingest_paths(runner.config)
        # The fingerprint in the run name: changed settings never resume an older run's checkpoints.
        boot = boot.model_copy(update={"corpus": corpus, "out": str(base), "run_name": f"{boot.run_name}-{fp[:8]}"})
        result = bootstrap(boot)
        metrics = result.get("metrics") or {}
        return {"output_dir": str(base), "bootstrapped": True, "model_fp": dir_fingerprint(base),
                "train_loss": metrics.get("train_loss"), "eval_loss": metrics.get("eval_loss"),
                "steps": metrics.get("steps")}

    def outputs_ok(result: dict[str, Any]) -> bool:
        return (base / "config.json").is_file() and dir_fingerprint(base) == result["model_fp"]

    return runner.stage("bootstrap", fp, run, outputs_ok)


def _adapter_ok(path: str) -> bool:
    p = Path(path)
    return ((p / "adapter_config.json").is_file() or (p / "config.json").is_file()) and (p / "lineage.json").is_file()


def stage_finetune(runner: Runner, ingest: dict[str, Any], boot: dict[str, Any]) -> dict[str, Any]:
    cfg = runner.config.finetune
    kb_ref = ingest["kb_ref"]
    from llmops_ray.train.config import FinetuneConfig

    ft = load_config(FinetuneConfig, cfg.config, cfg.overrides)  # bad overrides fail before anything runs
    fp = digest("finetune", cfg.model_dump(mode="json"), ft.model_dump(mode="json"), kb_ref,
                runner.config.ingest.tenant, boot["model_fp"])
    run_name = f"{cfg.run_name}-{fp[:8]}"
    out_dir = models_root() / run_name

    def run() -> dict[str, Any]:
        from llmops_ray.train.kb_sft import build_sft_from_kb

        data = workspace_path("data") / f"{runner.config.name}_sft_{fp[:8]}.jsonl"
        sft = build_sft_from_kb(kb_ref, str(data), max_pairs=cfg.max_pairs, per_chunk=cfg.per_chunk,
                                tenant=runner.config.ingest.tenant)
        say(runner.progress, f"  finetune: SFT set {sft['pairs']} pairs from {sft['chunks']} chunks of {kb_ref}")
        if cfg.mode == "tune":
            return _run_tune(runner, cfg, str(data), run_name, out_dir, sft)
        from llmops_ray.train import finetune

        result = finetune(ft.model_copy(update={
            "run_name": run_name,
            "output_dir": str(out_dir),
            "data": ft.data.model_copy(update={"path": str(data)}),
        }))
        metrics = result.get("metrics") or {}
        return {"mode": "finetune", "run_name": run_name, "output_dir": str(result["output_dir"]),
                "pairs": sft["pairs"], "train_loss": metrics.get("train_loss"), "eval_loss": metrics.get("eval_loss")}

    return runner.stage("finetune", fp, run, lambda r: _adapter_ok(r["output_dir"]))


def _run_tune(runner: Runner, cfg: FinetuneStage, data: str, run_name: str, out_dir: Path,
              sft: dict[str, Any]) -> dict[str, Any]:
    """A Ray Tune search; the best trial's adapter is copied to ``models/<run_name>`` (where
    the gateway serves adapters from)."""
    from llmops_ray.tune.search import load_search_config, run_search

    search = load_search_config(cfg.tune_config, [*cfg.tune_overrides, f"name={run_name}", f"data={data}"])
    search = search.model_copy(update={"registration": search.registration.model_copy(update={"stack": None})})
    summary = run_search(search)
    best = summary.get("best")
    if not best:
        raise UserError(f"tune search {run_name!r}: no trial completed")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(best["output_dir"], tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {"mode": "tune", "run_name": run_name, "output_dir": str(out_dir), "pairs": sft["pairs"],
            "best_trial": best["trial_id"], "eval_loss": best.get("last"), "trials": len(summary["trials"])}


def stack_manifest(config: PipelineConfig, kb_ref: str, adapter: str) -> dict[str, Any]:
    """The manifest registered for the pipeline's candidate."""
    from llmops_ray.registry import ensure_default_prompt

    s = config.stack
    manifest = {
        "name": s.name,
        "description": s.description,
        "base_model": str(base_model_dir()),
        "adapter": adapter,
        "prompt": ensure_default_prompt(s.prompt).ref,
        "kb": kb_ref if s.use_kb else None,
        "generation": s.generation,
        "policy": s.policy,
    }
    from llmops_ray.registry.manifest import load_manifest

    load_manifest(manifest)  # a bad stack section fails here, with the key named
    return manifest


def stage_register(runner: Runner, ingest: dict[str, Any], boot: dict[str, Any], ft: dict[str, Any]) -> dict[str, Any]:
    manifest = stack_manifest(runner.config, ingest["kb_ref"], ft["output_dir"])
    fp = digest("register", manifest, boot["model_fp"], dir_fingerprint(ft["output_dir"]))

    def run() -> dict[str, Any]:
        from llmops_ray.registry import register_stack

        version = register_stack(manifest, lineage={"pipeline": runner.config.name, "pipeline_fingerprint": fp})
        return {"stack": version.name, "version": version.version, "ref": version.ref, "adapter": ft["output_dir"]}

    def outputs_ok(result: dict[str, Any]) -> bool:
        from llmops_ray.registry import get_version

        return get_version(result["stack"], result["version"]).manifest.model_dump(mode="json")["adapter"] == manifest["adapter"]

    return runner.stage("register", fp, run, outputs_ok)


def _suite_identity(suite: str) -> tuple[str, str]:
    from llmops_ray.evaluate.suite import load_suite

    loaded = load_suite(suite)
    return loaded.name, digest(loaded.model_dump(mode="json") if hasattr(loaded, "model_dump") else repr(loaded))


def stage_evaluate(runner: Runner, reg: dict[str, Any]) -> dict[str, Any]:
    cfg = runner.config.evaluate
    suite_name, suite_fp = _suite_identity(cfg.suite)
    fp = digest("evaluate", reg["ref"], suite_fp, cfg.model_dump(mode="json"))

    def run() -> dict[str, Any]:
        from llmops_ray.evaluate.run import evaluate_stack

        result = evaluate_stack(reg["ref"], cfg.suite, engine_cpus=cfg.engine_cpus, engine_gpus=cfg.engine_gpus)
        return {"ref": reg["ref"], "suite": result["suite"], "metrics": result["metrics"],
                "report": result.get("report")}

    def outputs_ok(result: dict[str, Any]) -> bool:
        from llmops_ray.registry import get_version

        return suite_name in get_version(reg["stack"], reg["version"]).eval_results

    return runner.stage("evaluate", fp, run, outputs_ok)


def stage_promote(runner: Runner, reg: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    cfg = runner.config.promote
    fp = digest("promote", reg["ref"], ev["metrics"], cfg.model_dump(mode="json"))

    def run() -> dict[str, Any]:
        if not cfg.enabled:
            return {"ref": reg["ref"], "promoted": False, "reason": "promotion disabled"}
        from llmops_ray.registry import promote, resolve_stack

        try:
            current = resolve_stack(f"{reg['stack']}@{cfg.alias}")
        except UserError:
            current = None
        if current is not None and current.version == reg["version"]:
            return {"ref": reg["ref"], "promoted": True, "alias": cfg.alias, "reason": f"already {cfg.alias}"}
        try:
            _, report = promote(reg["stack"], reg["version"], to=cfg.alias)
        except UserError as exc:
            # Gates failed: a normal outcome (production keeps its version), not a job failure.
            return {"ref": reg["ref"], "promoted": False, "alias": cfg.alias, "reason": str(exc),
                    "production_version": current.version if current else None}
        return {"ref": reg["ref"], "promoted": True, "alias": cfg.alias, "reason": "gates passed",
                "gates": report.to_dict()}

    # A manual rollback after the pipeline promoted is respected: the outcome is not redone.
    return runner.stage("promote", fp, run, lambda r: True)


def _key_file(config: PipelineConfig) -> Path:
    return workspace_path("pipeline", config.name) / "demo_key.json"


def stage_demo_key(runner: Runner) -> dict[str, Any]:
    """A demo API key, created once. Its secret is shown only at creation, so it is kept
    (mode 0600) in the workspace for the demo's final line; revoke it with ``llmops keys revoke``."""
    cfg = runner.config.demo_key
    path = _key_file(runner.config)
    fp = digest("demo_key", cfg.model_dump(mode="json"))

    def run() -> dict[str, Any]:
        from llmops_ray.serve.keys import get_store

        plaintext, info = get_store().create(cfg.tenant, rpm=cfg.rpm, name=f"pipeline {runner.config.name} demo key")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"api_key": plaintext, "key_id": info.key_id, "tenant": info.tenant}))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return {"key_id": info.key_id, "tenant": info.tenant, "key_file": str(path)}

    def outputs_ok(result: dict[str, Any]) -> bool:
        from llmops_ray.serve.keys import get_store

        info = get_store().get(result["key_id"])
        saved = json.loads(path.read_text())
        return info is not None and not info.revoked and saved.get("key_id") == result["key_id"]

    return runner.stage("demo_key", fp, run, outputs_ok)


def demo_api_key(config: PipelineConfig) -> str | None:
    path = _key_file(config)
    return json.loads(path.read_text())["api_key"] if path.is_file() else None


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


def served_model_name(config: PipelineConfig, serve_cfg, adapter: str) -> str:
    if config.deploy.model:
        return config.deploy.model
    for hook in serve_cfg.gateway.hooks:
        if hook.path == STACK_HOOK and config.stack.name in (hook.kwargs.get("stacks") or {}):
            return config.stack.name
    return f"{serve_cfg.models[0].model_id}:{Path(adapter).name}"


def _app_running(name: str) -> bool:
    from ray import serve

    app = serve.status().applications.get(name)
    return app is not None and str(getattr(app.status, "value", app.status)) == "RUNNING"


def stage_deploy(runner: Runner, reg: dict[str, Any], prom: dict[str, Any]) -> dict[str, Any]:
    from llmops_ray.cluster import init_ray

    config = runner.config
    serve_cfg = serve_config(config)
    init_ray()
    from llmops_ray.common.ray_compat import serve_http_address

    running = serve_http_address()
    if running is not None and (serve_cfg.http.host, serve_cfg.http.port) != running:
        say(runner.progress, f"  deploy: Serve already listens on {running[0]}:{running[1]}; using it")
        serve_cfg = serve_cfg.model_copy(update={"http": serve_cfg.http.model_copy(
            update={"host": running[0] or "127.0.0.1", "port": running[1]})})
    model = served_model_name(config, serve_cfg, reg["adapter"])
    # The stack's production version is part of what is served (the StackHook resolves
    # aliases at request time, so a promotion alone needs no redeploy; the version is here
    # so that the result line says which one serves).
    fp = digest("deploy", serve_cfg.model_dump(mode="json"), model, reg["adapter"])

    def run() -> dict[str, Any]:
        from llmops_ray.serve.app import deploy_detached, endpoint, wait_ready

        upgrade = _app_running(serve_cfg.name)
        info = deploy_detached(serve_cfg, wait=False)
        waited = wait_ready(info["endpoint"], model, config.deploy.timeout_s, api_key=demo_api_key(config),
                            route="chat/completions")
        return {"app": serve_cfg.name, "endpoint": endpoint(serve_cfg), "model": model,
                "dashboard": info["dashboard"], "upgraded": upgrade, "ready_after_s": round(waited, 1),
                "serving_version": prom.get("ref") if prom.get("promoted") else prom.get("production_version")}

    def outputs_ok(result: dict[str, Any]) -> bool:
        return _app_running(result["app"])

    return runner.stage("deploy", fp, run, outputs_ok)


# --------------------------------------------------------------------------- entry point


def run_pipeline(config: PipelineConfig, progress: Progress = None) -> dict[str, Any]:
    """Run every stage (skipping unchanged ones); returns ``{"stages": {name: {status,
    seconds, fingerprint, result}}, "info": {endpoint, api_key, model, dashboard}}``."""
    from llmops_ray.cluster import apply_process_env

    apply_process_env()
    unknown = [s for s in config.force if s not in STAGES and s != "all"]
    if unknown:
        raise UserError(f"force: unknown stage {unknown[0]!r} (stages: {', '.join(STAGES)}, or all)")
    runner = Runner(config, progress)
    failed = True
    try:
        ingest = stage_ingest(runner)
        boot = stage_bootstrap(runner)
        ft = stage_finetune(runner, ingest, boot)
        reg = stage_register(runner, ingest, boot, ft)
        ev = stage_evaluate(runner, reg)
        prom = stage_promote(runner, reg, ev)
        stage_demo_key(runner)
        info: dict[str, Any] = {"endpoint": None, "api_key": demo_api_key(config), "model": None,
                                "dashboard": "http://127.0.0.1:8265"}
        if config.deploy.enabled:
            dep = stage_deploy(runner, reg, prom)
            info.update(endpoint=dep["endpoint"], model=dep["model"], dashboard=dep["dashboard"])
        failed = False
    finally:
        if runner.tracker is not None:
            runner.tracker.finish(failed)
    return {"stages": runner.records, "info": info}
