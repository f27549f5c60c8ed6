"""Preference pairs from the platform's own traffic: user feedback and an LLM judge.

Both builders write the pairs JSONL of :mod:`llmops_ray.common.pairs` plus its lineage record.

* :func:`pairs_from_feedback` reads ``/v1/feedback`` rows and the request log (LanceDB, under
  ``<workspace>/logs``). Answers to the same prompt (the logged client messages, compared
  after PII masking) rated up and down make pairs (up = chosen); a thumbs-down with a
  ``correction`` pairs the correction (chosen) with the rated answer (rejected).
* :func:`pairs_from_judge` asks a served stack for two answers per prompt (sampled,
  temperature > 0) and a judge endpoint which is better, in both positions
  (:mod:`llmops_ray.common.pairwise`); ties, unparsable and inconsistent verdicts are dropped
  and counted.

All text is PII-masked with the log's masker before it is written (log rows are masked
already; masking again is idempotent and covers prompts files and sampled answers).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from llmops_ray.common.cli_output import Progress, say
from llmops_ray.common.pairs import PreferencePair, lineage_path, prompt_text, write_pairs
from llmops_ray.config import UserError

#: Pairs kept per prompt from up/down feedback (every up answer x every down answer, capped:
#: one popular prompt must not dominate the set).
MAX_PAIRS_PER_PROMPT = 8


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds") if ts is not None else None


def _masker() -> Callable[[str], str]:
    from llmops_ray.safety.pii import mask_pii

    return lambda text: mask_pii(text)[0]


def _mask_prompt(prompt: str | list[dict[str, str]], mask: Callable[[str], str]) -> str | list[dict[str, str]]:
    if isinstance(prompt, str):
        return mask(prompt)
    return [{"role": m["role"], "content": mask(m["content"])} for m in prompt]


def _content_text(content: Any) -> str:
    """Text of an OpenAI message content: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def logged_prompt(request_json: str | None) -> str | list[dict[str, str]] | None:
    """The prompt of a logged request: its chat messages (role + text) or its completion
    prompt string; None when the row holds neither (e.g. an embeddings request)."""
    try:
        request = json.loads(request_json) if request_json else None
    except json.JSONDecodeError:
        return None
    if not isinstance(request, dict):
        return None
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        out = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                return None
            out.append({"role": m["role"], "content": _content_text(m.get("content"))})
        if out[-1]["role"] == "assistant":
            return None  # an assistant-prefill request: the answer is not a whole reply
        return out
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) and prompt.strip() else None


def _prompt_key(prompt: str | list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _pair_id(prefix: str, *parts: str) -> str:
    return f"{prefix}-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def pairs_from_feedback(
    since: str | float | None,
    out: str,
    stack: str | None = None,
    tenant: str | None = None,
    db_dir: str | os.PathLike[str] | None = None,
    max_pairs_per_prompt: int = MAX_PAIRS_PER_PROMPT,
    progress: Progress = None,
) -> dict[str, Any]:
    """Build a pairs file from feedback given since ``since`` (``24h``, an ISO date, epoch
    seconds; None: all) on ``stack`` (None: every stack) and write it to ``out``.

    Only the latest rating of each response counts (a user may change their mind). Returns
    ``{"pairs", "out", "sha256", "lineage", "counts", "time_range"}``; ``pairs`` is 0 when
    there is nothing new (the file and its lineage are still written).
    """
    from llmops_ray.observe.request_log import logs_dir, parse_since, query_feedback, requests_for_responses

    if max_pairs_per_prompt < 1:
        raise UserError("max_pairs_per_prompt must be at least 1")
    lo = parse_since(since)
    feedback = query_feedback(tenant=tenant, since=lo, db_dir=db_dir)
    if stack is not None:
        feedback = [f for f in feedback if f.get("stack") == stack]
    counts: dict[str, int] = {"feedback_rows": len(feedback)}
    # Latest rating per response (rows come oldest first).
    latest: dict[str, dict[str, Any]] = {}
    for row in feedback:
        latest[row["response_id"]] = row
    counts["responses_rated"] = len(latest)
    say(progress, f"{len(feedback)} feedback rows on {len(latest)} responses")
    logged = requests_for_responses(list(latest), db_dir=db_dir)

    mask = _masker()
    # prompt key -> {"prompt", "up": [(answer, fb)], "down": [(answer, fb)]}
    groups: dict[str, dict[str, Any]] = {}
    corrections: list[PreferencePair] = []
    skipped = {"not_in_log": 0, "no_prompt": 0, "no_answer": 0, "correction_same_as_answer": 0}
    for response_id, fb in latest.items():
        req = logged.get(response_id)
        if req is None:
            skipped["not_in_log"] += 1
            continue
        prompt = logged_prompt(req.get("request"))
        if prompt is None:
            skipped["no_prompt"] += 1
            continue
        answer = req.get("response") or ""
        if int(req.get("status") or 200) >= 400 or not answer.strip():
            skipped["no_answer"] += 1
            continue
        prompt, answer = _mask_prompt(prompt, mask), mask(answer)
        group = groups.setdefault(_prompt_key(prompt), {"prompt": prompt, "up": [], "down": []})
        group[fb["rating"]].append((answer, fb, req))
        correction = mask(fb.get("correction") or "")
        if fb["rating"] == "down" and correction.strip():
            if correction.strip() == answer.strip():
                skipped["correction_same_as_answer"] += 1
                continue
            corrections.append(PreferencePair(
                prompt=prompt, chosen=correction, rejected=answer,
                id=_pair_id("fbc", fb["feedback_id"]),
                metadata={"source": "feedback", "kind": "correction", "stack": fb.get("stack"),
                          "rejected_response_id": response_id, "feedback_ids": [fb["feedback_id"]],
                          "variants": [req.get("variant")], "feedback_ts": _iso(fb.get("ts"))},
            ))

    pairs: list[PreferencePair] = []
    capped = 0
    for group in groups.values():
        made = 0
        for up_answer, up_fb, up_req in group["up"]:
            for down_answer, down_fb, down_req in group["down"]:
                if up_answer == down_answer:
                    skipped.setdefault("same_answer_up_and_down", 0)
                    skipped["same_answer_up_and_down"] += 1
                    continue
                if made >= max_pairs_per_prompt:
                    capped += 1
                    continue
                made += 1
                pairs.append(PreferencePair(
                    prompt=group["prompt"], chosen=up_answer, rejected=down_answer,
                    id=_pair_id("fbp", up_fb["response_id"], down_fb["response_id"]),
                    metadata={"source": "feedback", "kind": "up_down", "stack": up_fb.get("stack"),
                              "chosen_response_id": up_fb["response_id"],
                              "rejected_response_id": down_fb["response_id"],
                              "feedback_ids": [up_fb["feedback_id"], down_fb["feedback_id"]],
                              "variants": [up_req.get("variant"), down_req.get("variant")],
                              "feedback_ts": _iso(max(up_fb.get("ts") or 0.0, down_fb.get("ts") or 0.0))},
                ))
    counts.update({f"skipped_{k}": v for k, v in skipped.items()})
    counts["pairs_up_down"] = len(pairs)
    counts["pairs_correction"] = len(corrections)
    counts["capped_per_prompt"] = capped
    counts["prompts_with_up_and_down"] = sum(1 for g in groups.values() if g["up"] and g["down"])
    pairs += corrections

    stamps = [f["ts"] for f in latest.values() if f.get("ts") is not None]
    time_range = {"start": _iso(min(stamps)), "end": _iso(max(stamps))} if stamps else None
    lineage = write_pairs(out, pairs, {
        "sources": [{"kind": "feedback", "logs": str(Path(db_dir) if db_dir else logs_dir()),
                     "since": _iso(lo), "stack": stack, "tenant": tenant}],
        "counts": counts,
        "time_range": time_range,
    })
    say(progress, f"{lineage['pairs']} pairs ({len(corrections)} from corrections) -> {out}")
    return {"pairs": lineage["pairs"], "out": lineage["path"], "sha256": lineage["sha256"],
            "lineage": str(lineage_path(lineage["path"])),
            "counts": counts, "time_range": time_range}


# --------------------------------------------------------------------------- judge


def read_prompts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Prompts for :func:`pairs_from_judge`: a ``.jsonl`` file of ``{"prompt": str or chat
    messages, "id": optional}`` rows (``question`` is accepted for ``prompt``, so eval-suite
    ``qa`` items work), or any other text file with one prompt per non-empty line."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"prompts file not found: {file}")
    rows: list[dict[str, Any]] = []
    jsonl = file.suffix.lower() == ".jsonl"
    for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{line_no}"
        if not jsonl:
            rows.append({"prompt": line.strip(), "id": f"line-{line_no}"})
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: a prompt row must be a JSON object")
        prompt = row.get("prompt", row.get("question"))
        # Validate the prompt with the pairs format's own rules (placeholder answers).
        try:
            PreferencePair(prompt=prompt, chosen="a", rejected="b")
        except ValueError as exc:
            first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
            raise UserError(f"{where}: prompt: {first}") from None
        rows.append({"prompt": prompt, "id": str(row.get("id") or f"line-{line_no}")})
    if not rows:
        raise UserError(f"prompts file {file} has no prompts")
    return rows


def _chat_messages(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def pairs_from_judge(
    stack: str,
    prompts: str,
    out: str,
    base_url: str,
    api_key: str | None,
    judge_model: str,
    judge_base_url: str | None = None,
    judge_api_key: str | None = None,
    temperature: float = 0.9,
    max_tokens: int = 256,
    concurrency: int = 4,
    timeout_s: float = 120.0,
    progress: Progress = None,
) -> dict[str, Any]:
    """Sample two answers per prompt from ``stack`` (served at ``base_url``, an
    OpenAI-compatible ``/v1`` root) and keep the pairs a judge model prefers consistently.

    The judge endpoint defaults to the same server. Returns ``{"pairs", "out", "sha256",
    "lineage", "counts"}``; counts: prompts, sample failures, identical samples, judge
    outcomes (undecided = tie or no parsable verdict; inconsistent = the two orders
    disagreed) and judge request errors.
    """
    from openai import OpenAI

    from llmops_ray.common.pairwise import compare, openai_asker

    if temperature <= 0:
        raise UserError("--temperature must be > 0: two answers sampled at 0 are the same answer")
    if concurrency < 1 or max_tokens < 1:
        raise UserError("--concurrency and --max-tokens must be at least 1")
    rows = read_prompts(prompts)
    client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=1)
    ask = openai_asker(judge_base_url or base_url, judge_model, judge_api_key if judge_api_key is not None else api_key,
                       timeout_s=timeout_s)
    mask = _masker()
    started = datetime.now(timezone.utc)
    sample_errors: list[str] = []

    def sample(messages: list[dict[str, str]]) -> str | None:
        try:
            response = client.chat.completions.create(model=stack, messages=messages,
                                                      temperature=temperature, max_tokens=max_tokens)
        except Exception as exc:  # noqa: BLE001 - counted; one bad request must not end the run
            sample_errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return None
        text = response.choices[0].message.content if response.choices else None
        return text if text and text.strip() else None

    def one(row: dict[str, Any]) -> tuple[str, PreferencePair | None, dict[str, Any]]:
        messages = _chat_messages(row["prompt"])
        first, second = sample(messages), sample(messages)
        if first is None or second is None:
            return "sample_failed", None, {}
        if first.strip() == second.strip():
            return "identical_answers", None, {}
        shown = prompt_text(row["prompt"])
        verdict = compare(ask, shown, first, second)
        if verdict["outcome"] in ("tie", "undecided"):
            return "undecided", None, verdict
        if verdict["outcome"] == "inconsistent":
            return "inconsistent", None, verdict
        chosen, rejected = (first, second) if verdict["outcome"] == "first" else (second, first)
        pair = PreferencePair(
            prompt=_mask_prompt(row["prompt"], mask), chosen=mask(chosen), rejected=mask(rejected),
            id=_pair_id("judge", stack, row["id"], _prompt_key(row["prompt"])),
            metadata={"source": "judge", "stack": stack, "prompt_id": row["id"], "judge_model": judge_model,
                      "verdicts": verdict["verdicts"]},
        )
        return "kept", pair, verdict

    counts = {"prompts": len(rows), "kept": 0, "sample_failed": 0, "identical_answers": 0,
              "undecided": 0, "inconsistent": 0}
    pairs: list[PreferencePair] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for done, (status, pair, _verdict) in enumerate(pool.map(one, rows), start=1):
            counts[status] += 1
            if pair is not None:
                pairs.append(pair)
            if done % 10 == 0 or done == len(rows):
                say(progress, f"{done}/{len(rows)} prompts judged, {counts['kept']} pairs kept")
    counts["judge_request_errors"] = ask.errors  # type: ignore[attr-defined]
    if counts["sample_failed"] == len(rows):
        raise UserError(f"every answer request to {base_url} (model {stack!r}) failed: {sample_errors[-1]}")
    if rows and ask.errors and ask.errors >= 2 * (len(rows) - counts["sample_failed"] - counts["identical_answers"]):  # type: ignore[attr-defined]
        raise UserError(f"every judge request to {judge_base_url or base_url} (model {judge_model!r}) failed: "
                        f"{ask.last_error}")  # type: ignore[attr-defined]
    lineage = write_pairs(out, pairs, {
        "sources": [{"kind": "judge", "stack": stack, "endpoint": base_url, "prompts": str(Path(prompts).resolve()),
                     "judge_endpoint": judge_base_url or base_url, "judge_model": judge_model,
                     "temperature": temperature, "max_tokens": max_tokens, "position_swapped": True}],
        "counts": counts,
        "time_range": {"start": started.isoformat(timespec="seconds"),
                       "end": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    })
    say(progress, f"{lineage['pairs']} pairs -> {out}")
    return {"pairs": lineage["pairs"], "out": lineage["path"], "sha256": lineage["sha256"],
            "lineage": str(lineage_path(lineage["path"])), "counts": counts}
