"""A terminal annotation queue for preference pairs (``llmops annotate``).

Input rows (JSONL) are either candidates ``{"prompt", "answers": [x, y], "id"?, "metadata"?}``
or existing pairs (``prompt``/``chosen``/``rejected``, e.g. judge-built ones to review); a
pair's two answers are shown in an order fixed by a hash of the row, so the annotator cannot
tell which one was "chosen". For each row the prompt and answers A and B are printed; the
annotator types ``a`` or ``b`` (the better answer), ``s`` to skip, ``q`` to quit.

Every decision is saved at once to ``<out>.progress.json`` (atomically), keyed by the row's
``id`` or, without one, a hash of its content, so a rerun with the same ``--out`` resumes at
the first undecided row, even after Ctrl-C or if the input was reordered. The pairs file
``--out`` (with its lineage record) is rewritten from all decisions whenever the queue stops.
Reading answers line by line from any stream makes the queue scriptable and testable.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from llmops_ray.common.pairs import PreferencePair, pairs_sha256, prompt_text, write_pairs
from llmops_ray.config import UserError

HELP = "Better answer? [a] / [b], [s]kip, [q]uit: "
_CHOICES = {"a": "a", "1": "a", "b": "b", "2": "b", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}


def progress_path(out: str | os.PathLike[str]) -> Path:
    """Where the queue keeps its decisions: ``<out>.progress.json``."""
    file = Path(out)
    return file.with_name(file.name + ".progress.json")


def _row_key(row: dict[str, Any]) -> str:
    if row.get("id"):
        return f"id:{row['id']}"
    body = json.dumps({k: row.get(k) for k in ("prompt", "answers", "chosen", "rejected")}, sort_keys=True, ensure_ascii=False)
    return "sha:" + hashlib.sha256(body.encode()).hexdigest()[:24]


def load_queue(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows to annotate: ``{"key", "prompt", "answers": [x, y], "id", "metadata",
    "given": index of the input's chosen answer in ``answers`` or None}``."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"annotation input not found: {file}")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{line_no}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{where}: a row must be a JSON object")
        if "answers" in raw:
            answers = raw["answers"]
            if not (isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) and a.strip() for a in answers)):
                raise UserError(f"{where}: 'answers' must be a list of two non-empty strings")
            extra = set(raw) - {"prompt", "answers", "id", "metadata"}
            if extra:
                raise UserError(f"{where}: unknown keys {sorted(extra)} (expected prompt, answers, id, metadata)")
            try:  # the pairs format's rules for prompt / id / metadata
                PreferencePair(prompt=raw.get("prompt"), chosen=answers[0], rejected=answers[1],
                               id=raw.get("id"), metadata=raw.get("metadata") or {})
            except ValueError as exc:
                msg = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
                raise UserError(f"{where}: {msg}") from None
            if answers[0] == answers[1]:
                raise UserError(f"{where}: the two answers are identical")
            given = None
        else:
            from llmops_ray.common.pairs import parse_pair

            pair = parse_pair(raw, where)
            raw = pair.model_dump()
            answers = [pair.chosen, pair.rejected]
            given = 0
        key = _row_key(raw)
        if key in seen:
            raise UserError(f"{where}: duplicate row ({key}); give rows distinct ids")
        seen.add(key)
        if given is not None and int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2:
            # Show a pair's answers in a hash-fixed order, so "chosen" is not always A.
            answers, given = answers[::-1], 1
        rows.append({"key": key, "prompt": raw["prompt"], "answers": answers, "id": raw.get("id"),
                     "metadata": raw.get("metadata") or {}, "given": given})
    if not rows:
        raise UserError(f"annotation input {file} has no rows")
    return rows


def _load_progress(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"decisions": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"annotation progress file {path} is unreadable ({exc}); move it away to start over") from None
    if not isinstance(state, dict) or not isinstance(state.get("decisions"), dict):
        raise UserError(f"annotation progress file {path} is not a progress record; move it away to start over")
    return state


def _save_progress(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(state, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _show(row: dict[str, Any], position: int, total: int, out: TextIO) -> None:
    label = f" id {row['id']}" if row["id"] else ""
    out.write(f"\n[{position}/{total}]{label}\nPROMPT:\n{prompt_text(row['prompt'])}\n")
    out.write(f"\n--- A ---\n{row['answers'][0]}\n\n--- B ---\n{row['answers'][1]}\n\n")


def _write_output(rows: list[dict[str, Any]], decisions: dict[str, Any], in_path: Path, out: str) -> dict[str, Any]:
    pairs: list[PreferencePair] = []
    agreed = disagreed = skipped = 0
    stamps = []
    for row in rows:
        decision = decisions.get(row["key"])
        if decision is None:
            continue
        stamps.append(decision["at"])
        if decision["choice"] == "skip":
            skipped += 1
            continue
        pick = 0 if decision["choice"] == "a" else 1
        if row["given"] is not None:
            agreed += pick == row["given"]
            disagreed += pick != row["given"]
        metadata = dict(row["metadata"])
        metadata["annotation"] = {"at": decision["at"], "agreed_with_input": None if row["given"] is None else pick == row["given"]}
        pairs.append(PreferencePair(prompt=row["prompt"], chosen=row["answers"][pick], rejected=row["answers"][1 - pick],
                                    id=row["id"], metadata=metadata))
    decided = sum(1 for row in rows if row["key"] in decisions)
    counts = {"rows": len(rows), "annotated": len(pairs), "skipped": skipped, "remaining": len(rows) - decided,
              "agreed_with_input": agreed, "disagreed_with_input": disagreed}
    lineage = write_pairs(out, pairs, {
        "sources": [{"kind": "annotation", "in": str(in_path.resolve()), "in_sha256": pairs_sha256(in_path)}],
        "counts": counts,
        "time_range": {"start": min(stamps), "end": max(stamps)} if stamps else None,
    })
    return {"pairs": lineage["pairs"], "out": lineage["path"], "sha256": lineage["sha256"], "counts": counts}


def annotate(in_path: str | os.PathLike[str], out: str | os.PathLike[str], stdin: TextIO, stdout: TextIO) -> dict[str, Any]:
    """Run the queue over ``in_path``, reading one answer per line from ``stdin`` (end of
    input = quit) and writing the prompts to ``stdout``; returns the summary
    ``{"pairs", "out", "sha256", "counts", "progress", "finished"}``."""
    source = Path(in_path)
    if Path(out).resolve() == source.resolve():
        raise UserError("--out must differ from --in (the input is the queue)")
    rows = load_queue(source)
    state_path = progress_path(out)
    state = _load_progress(state_path)
    decisions: dict[str, Any] = state["decisions"]
    state["in"] = str(source.resolve())
    todo = [row for row in rows if row["key"] not in decisions]
    if len(todo) < len(rows):
        stdout.write(f"resuming: {len(rows) - len(todo)} of {len(rows)} rows already decided\n")
    quit_early = False
    echo = not (hasattr(stdin, "isatty") and stdin.isatty())
    try:
        for offset, row in enumerate(todo, start=len(rows) - len(todo) + 1):
            _show(row, offset, len(rows), stdout)
            while True:
                stdout.write(HELP)
                stdout.flush()
                line = stdin.readline()
                if not line:  # end of input: stop here, resume later
                    choice = "quit"
                    stdout.write("\n")
                    break
                if echo:  # piped answers are not echoed by a terminal: keep the transcript readable
                    stdout.write(line.strip() + "\n")
                choice = _CHOICES.get(line.strip().lower())
                if choice is not None:
                    break
                stdout.write(f"unknown key {line.strip()!r}\n")
            if choice == "quit":
                quit_early = True
                break
            decisions[row["key"]] = {"choice": choice, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            _save_progress(state_path, state)
    except KeyboardInterrupt:
        quit_early = True
    _save_progress(state_path, state)
    summary = _write_output(rows, decisions, source, str(out))
    summary["progress"] = str(state_path)
    summary["finished"] = not quit_early and summary["counts"]["remaining"] == 0
    return summary
