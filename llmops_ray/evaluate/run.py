"""``evaluate_stack``: run a suite against a registered stack version and store the results.

Steps: resolve the stack; retrieve from its KB (retrieval items, and QA items without
their own context); batch-generate every QA and safety answer in one Ray Data + vLLM
pass with the stack's prompt template and generation settings; score perplexity with a
transformers forward pass; compute the metrics; optionally ask the LLM judge; store
the result on the stack version (MLflow tag + an MLflow run with metrics and the
per-item JSON), write it under ``<workspace>/evals/`` and refresh the HTML report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llmops_ray.config import UserError, workspace_path
import llmops_ray.evaluate.metrics as M
from llmops_ray.evaluate.suite import Suite, load_suite


def perplexity(model_dir: str, texts: list[str], max_length: int = 1024) -> dict[str, float]:
    """Token-level perplexity of ``texts`` (each truncated to ``max_length`` tokens)."""
    import torch

    from llmops_ray.models.base import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir).eval()
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)["input_ids"]
            if ids.shape[1] < 2:
                continue
            # HF shifts labels internally; loss is the mean NLL over ids.shape[1] - 1 predictions.
            loss = model(input_ids=ids, labels=ids).loss.item()
            n = ids.shape[1] - 1
            total_nll += loss * n
            total_tokens += n
    if total_tokens == 0:
        raise UserError("perplexity items are too short (need at least 2 tokens)")
    return {"perplexity": M.perplexity_from_nll(total_nll, total_tokens), "perplexity_tokens": total_tokens}


def _retrieve(kb: str, query: str, k: int, mode: str) -> list[dict[str, Any]]:
    from llmops_ray.kb import search

    return search(kb, query, k=k, mode=mode)


def _agg(values: list[float]) -> float | None:
    return M.mean(values)


def score_suite(suite: Suite, answers: dict[str, str], contexts: dict[str, str],
                retrieved: dict[str, list[str]], k: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics and per-item rows from generated answers (pure: unit-testable without an engine).

    ``answers``/``contexts``/``retrieved`` are keyed by item key ``"<index>"``.
    """
    rows: list[dict[str, Any]] = []
    em, f1, rl, grounded, rec, rr = [], [], [], [], [], []
    refused, resisted, no_leak = [], [], []
    for index, item in enumerate(suite.items):
        key = str(index)
        row: dict[str, Any] = {"index": index, "id": item.id, "type": item.type}
        if item.type == "qa":
            answer = answers[key]
            refs = item.references()
            row.update(answer=answer, exact_match=M.exact_match(answer, refs),
                       token_f1=M.token_f1(answer, refs), rouge_l=M.rouge_l(answer, refs))
            em.append(row["exact_match"])
            f1.append(row["token_f1"])
            rl.append(row["rouge_l"])
            context = contexts.get(key, "")
            if context:
                row["groundedness"] = M.lexical_groundedness(answer, context)
                grounded.append(row["groundedness"])
        if item.type in ("qa", "retrieval") and key in retrieved and item.gold():
            row["recall_at_k"] = M.recall_at_k(retrieved[key], item.gold(), k)
            row["reciprocal_rank"] = M.reciprocal_rank(retrieved[key], item.gold())
            row["retrieved"] = retrieved[key][:k]
            rec.append(row["recall_at_k"])
            rr.append(row["reciprocal_rank"])
        if item.type == "safety":
            answer = answers[key]
            row.update(kind=item.kind, answer=answer)
            if item.kind == "harmful":
                row["passed"] = M.is_refusal(answer)
                refused.append(float(row["passed"]))
            elif item.kind == "injection":
                row["passed"] = not M.follows_injection(answer, item.marker or "")
                resisted.append(float(row["passed"]))
            else:
                row["passed"] = not M.leaks_system_prompt(answer, item.system or "", item.secret)
                no_leak.append(float(row["passed"]))
        rows.append(row)
    out: dict[str, Any] = {}
    for name, values in (("exact_match", em), ("token_f1", f1), ("rouge_l", rl), ("groundedness", grounded),
                         ("recall_at_k", rec), ("mrr", rr), ("safety_refusal_rate", refused),
                         ("safety_injection_resisted", resisted), ("safety_no_leak", no_leak)):
        value = _agg(values)
        if value is not None:
            out[name] = value
    safety = refused + resisted + no_leak
    if safety:
        out["safety_pass_rate"] = sum(safety) / len(safety)
    return out, rows


def evaluate_stack(ref: str, suite_path: str | Suite, store: bool = True, report: bool = True,
                   engine_cpus: float = 1.0, engine_gpus: float = 0.0) -> dict[str, Any]:
    """Evaluate stack ``ref`` (``NAME@ALIAS_OR_VERSION``) on a suite; returns the result record.

    The record: ``stack``, ``version``, ``suite``, ``evaluated_at``, ``metrics``
    (flat name -> float), ``counts``, ``items`` (per-item rows), ``report`` (HTML path).
    """
    from llmops_ray.evaluate.generate import batch_generate, materialize_model
    from llmops_ray.registry import record_eval, resolve_stack

    suite = suite_path if isinstance(suite_path, Suite) else load_suite(suite_path)
    stack = resolve_stack(ref)
    gen = stack.manifest.generation
    if suite.of_type("retrieval") and not stack.kb:
        raise UserError(f"suite {suite.name!r} has retrieval items but stack {stack.ref} has no kb")
    prompt = stack.prompt()
    started = time.time()

    contexts: dict[str, str] = {}
    retrieved: dict[str, list[str]] = {}
    requests: list[dict[str, Any]] = []
    for index, item in enumerate(suite.items):
        key = str(index)
        if item.type == "retrieval":
            hits = _retrieve(stack.kb, item.query, max(suite.k, gen.retrieval_k), gen.retrieval_mode)
            retrieved[key] = M.gold_labels(hits, item.gold_doc_ids or (), item.gold_sources or ())
        elif item.type == "qa":
            context = item.context or ""
            # Retrieve when the prompt needs a context, or to score retrieval against gold ids.
            if stack.kb and (not context or item.gold()):
                hits = _retrieve(stack.kb, item.question, max(suite.k, gen.retrieval_k), gen.retrieval_mode)
                retrieved[key] = M.gold_labels(hits, item.gold_doc_ids or (), item.gold_sources or ())
                context = context or "\n\n".join(h["text"] for h in hits[: gen.retrieval_k])
            contexts[key] = context
            requests.append({"id": key, "messages": prompt.render(item.question, context)})
        elif item.type == "safety":
            system = item.system if item.kind == "leak" else None
            requests.append({"id": key, "messages": prompt.render(item.prompt, "", system=system)})
        elif item.type == "pairwise":
            requests.append({"id": key, "messages": prompt.render(item.prompt, _pairwise_context(stack, item))})

    model_dir = materialize_model(stack.base_model, stack.adapter, f"{stack.name}-v{stack.version}")
    sampling = {"temperature": gen.temperature, "top_p": gen.top_p, "max_tokens": gen.max_tokens, "stop": gen.stop}
    texts = batch_generate(model_dir, requests, sampling, max_model_len=gen.max_model_len,
                           engine_cpus=engine_cpus, engine_gpus=engine_gpus)
    answers = {r["id"]: t.strip() for r, t in zip(requests, texts)}
    metric_values, rows = score_suite(suite, answers, contexts, retrieved, suite.k)
    counts: dict[str, Any] = {t: len(suite.of_type(t)) for t in ("qa", "retrieval", "perplexity", "safety", "pairwise")}
    counts["k"] = suite.k

    if suite.of_type("pairwise") or suite.heldout_pairs:
        from llmops_ray.evaluate.pairwise import resolve_baseline

        baseline = resolve_baseline(stack, suite.baseline)
        counts["baseline"] = baseline.ref if baseline else None
        if suite.of_type("pairwise"):
            _pairwise(suite, stack, baseline, answers, rows, metric_values, counts, engine_cpus, engine_gpus)
        if suite.heldout_pairs:
            from llmops_ray.evaluate.pairwise import heldout_reward_accuracy

            scored = heldout_reward_accuracy(stack, baseline, suite.heldout_pairs, gen.max_model_len)
            if scored is not None:
                metric_values["reward_accuracy"] = scored["reward_accuracy"]
                counts["heldout_pairs"] = scored["pairs"]

    ppl_items = suite.of_type("perplexity")
    if ppl_items:
        ppl = perplexity(model_dir, [i.text for i in ppl_items], gen.max_model_len)
        metric_values["perplexity"] = ppl["perplexity"]
        counts["perplexity_tokens"] = ppl["perplexity_tokens"]

    if suite.judge:
        from llmops_ray.evaluate.judge import judge_groundedness

        cases = [{"question": suite.items[int(k)].question, "context": contexts[k], "answer": answers[k]}
                 for k in sorted(contexts, key=int) if contexts[k]]
        if cases:
            judged = judge_groundedness(suite.judge, cases)
            if judged["judge_groundedness"] is not None:
                metric_values["judge_groundedness"] = judged["judge_groundedness"]
            metric_values["judge_parse_failures"] = float(judged["judge_parse_failures"])
            counts["judge_calls"] = judged["judge_calls"]

    result = {
        "stack": stack.name,
        "version": stack.version,
        "suite": suite.name,
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(time.time() - started, 2),
        "metrics": metric_values,
        "counts": counts,
        "items": rows,
    }
    if store:
        out_dir = workspace_path("evals", stack.name, f"v{stack.version}")
        path = out_dir / f"{suite.name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        tmp.replace(path)
        _log_mlflow(stack, suite.name, result, path)
        record_eval(stack.name, stack.version, suite.name,
                    {k: result[k] for k in ("metrics", "counts", "evaluated_at", "suite")})
        result["results_path"] = str(path)
        if report:
            from llmops_ray.evaluate.report import write_report

            result["report"] = str(write_report(stack.name))
    return result


def _pairwise_context(stack, item) -> str:
    """A pairwise item's context: its own, else what ``stack``'s KB retrieves for the prompt."""
    if item.context or not stack.kb:
        return item.context or ""
    gen = stack.manifest.generation
    hits = _retrieve(stack.kb, item.prompt, gen.retrieval_k, gen.retrieval_mode)
    return "\n\n".join(h["text"] for h in hits[: gen.retrieval_k])


def _pairwise(suite: Suite, stack, baseline, answers: dict[str, str], rows: list[dict[str, Any]],
              metric_values: dict[str, Any], counts: dict[str, Any], engine_cpus: float, engine_gpus: float) -> None:
    """Answer the pairwise prompts with the baseline stack too, judge both orders, and add
    ``win_rate`` (with wins/losses/ties and the dropped verdicts in ``counts``)."""
    from llmops_ray.evaluate.generate import batch_generate, materialize_model
    from llmops_ray.evaluate.pairwise import judge_asker, judge_pairs

    if baseline is None:  # the first version of a stack: nothing to compare against
        counts["pairwise_skipped"] = "no baseline (no production version, or it is this version)"
        return
    items = [(str(i), item) for i, item in enumerate(suite.items) if item.type == "pairwise"]
    base_prompt = baseline.prompt()
    requests = [{"id": key, "messages": base_prompt.render(item.prompt, _pairwise_context(baseline, item))}
                for key, item in items]
    gen = baseline.manifest.generation
    model_dir = materialize_model(baseline.base_model, baseline.adapter, f"{baseline.name}-v{baseline.version}")
    texts = batch_generate(model_dir, requests, {"temperature": gen.temperature, "top_p": gen.top_p,
                                                 "max_tokens": gen.max_tokens, "stop": gen.stop},
                           max_model_len=gen.max_model_len, engine_cpus=engine_cpus, engine_gpus=engine_gpus)
    cases = [{"prompt": item.prompt, "candidate": answers[key], "baseline": text.strip()}
             for (key, item), text in zip(items, texts)]
    ask = judge_asker(suite.judge)
    summary, judged = judge_pairs(ask, cases)
    counts["pairwise_judge_errors"] = ask.errors  # failed judge calls (timeouts, 5xx): counted as undecided
    if ask.last_error:
        counts["pairwise_judge_last_error"] = ask.last_error
    for (key, _item), case, verdict in zip(items, cases, judged):
        rows[int(key)].update(answer=case["candidate"], baseline_answer=case["baseline"],
                              outcome=verdict["outcome"], verdicts=verdict["verdicts"])
    if summary["win_rate"] is not None:
        metric_values["win_rate"] = summary["win_rate"]
    counts.update({f"pairwise_{k}": v for k, v in summary.items() if k != "win_rate"})


def _log_mlflow(stack, suite: str, result: dict[str, Any], path: Path) -> None:
    import mlflow

    from llmops_ray.common.tracking import mlflow_client

    mlflow_client()
    experiment = mlflow.set_experiment(f"eval/{stack.name}")
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"{stack.name}-v{stack.version}-{suite}"):
        mlflow.log_params({"stack": stack.name, "version": stack.version, "suite": suite,
                           "base_model": stack.base_model, "adapter": stack.adapter or "",
                           "prompt": stack.prompt_ref, "kb": stack.kb or ""})
        mlflow.log_metrics({k: float(v) for k, v in result["metrics"].items()})
        mlflow.log_artifact(str(path))
