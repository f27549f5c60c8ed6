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

Modules: ``config`` (the typed config and its checks), ``state`` (fingerprints, the state
file, the :class:`Runner`, MLflow), ``stages`` (one function per stage); this module runs them.

The bootstrap stage only runs when there is no base model at
``<workspace>/models/tiny-base`` (``models_root() / "tiny-base"``); an existing one is used
as is, whoever made it.
"""

from __future__ import annotations

from typing import Any

from llmops_ray.common.cli_output import Progress
from llmops_ray.config import UserError
from llmops_ray.pipeline.config import (
    STAGES, PipelineConfig, check_pipeline_config, load_pipeline_config, serve_config,
)
from llmops_ray.pipeline.stages import (
    base_model_dir, demo_api_key, served_model_name, stage_bootstrap, stage_demo_key, stage_deploy,
    stage_evaluate, stage_finetune, stage_ingest, stage_promote, stage_register,
)
from llmops_ray.pipeline.state import Runner, content_hash, digest


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


__all__ = [
    "STAGES", "PipelineConfig", "Runner", "base_model_dir", "check_pipeline_config", "content_hash", "digest",
    "load_pipeline_config", "run_pipeline", "serve_config", "served_model_name",
]
