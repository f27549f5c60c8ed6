"""The pipeline's stages, in order: ingest, bootstrap, fine-tune (or tune), register, evaluate,
promote, demo key, deploy. Each takes the :class:`~llmops_ray.pipeline.state.Runner` and the
results of the stages it depends on, and returns its own result (what the state file keeps)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


from llmops_ray.common.cli_output import say
from llmops_ray.config import SAMPLE_CORPUS, UserError, load_config, models_root, workspace_path
from llmops_ray.pipeline.config import (
    STACK_HOOK, FinetuneStage, PipelineConfig, serve_config,
)
from llmops_ray.pipeline.state import Runner, content_hash, digest, dir_fingerprint


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
                            route="chat/completions", certfile=serve_cfg.http.ssl_certfile)
        return {"app": serve_cfg.name, "endpoint": endpoint(serve_cfg), "model": model,
                "dashboard": info["dashboard"], "upgraded": upgrade, "ready_after_s": round(waited, 1),
                "serving_version": prom.get("ref") if prom.get("promoted") else prom.get("production_version")}

    def outputs_ok(result: dict[str, Any]) -> bool:
        return _app_running(result["app"])

    return runner.stage("deploy", fp, run, outputs_ok)
