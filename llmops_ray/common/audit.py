"""Append-only audit log: who created or revoked keys, promoted or rolled back stacks, and
which requests the guardrails blocked.

One JSON object per line in ``<workspace>/audit/audit.jsonl``::

    {"timestamp": "2026-11-22T10:00:00.123456+00:00", "event": "key.created",
     "fields": {"key_id": "...", "tenant": "acme"}}

Writers in several processes (CLI, gateway replicas, the rollback monitor) append
concurrently: the file is opened with ``O_APPEND`` and each line goes out in a single
``write`` under an exclusive ``flock``, so lines never interleave or tear (on a local
filesystem; on NFS ``flock`` maps to POSIX locks). Nothing ever rewrites the file.
Readers skip a torn last line (a writer killed mid-write) instead of failing.

Never put secrets or user text into fields: key ids, tenants, model names, rail names
and reasons only (the plaintext API key and the prompt of a blocked request stay out).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from llmops_ray.config import UserError, workspace_path

#: Event names used across the project (free-form names are accepted too).
EVENTS = (
    "key.created",
    "key.revoked",
    "registry.promoted",
    "registry.rollback",
    "registry.auto_rollback",
    "request.blocked",
)


def audit_path() -> Path:
    """``<workspace>/audit/audit.jsonl`` (the directory is created on first use)."""
    return workspace_path("audit") / "audit.jsonl"


def audit(event: str, **fields: Any) -> dict[str, Any]:
    """Append one event; returns the record written.

    Values that JSON cannot encode are written with ``str()``.
    """
    if not event or not isinstance(event, str):
        raise ValueError("audit event must be a non-empty string")
    record = {"timestamp": datetime.now(timezone.utc).isoformat(), "event": event, "fields": fields}
    line = (json.dumps(record, ensure_ascii=False, default=str, sort_keys=False) + "\n").encode("utf-8")
    fd = os.open(audit_path(), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # A writer killed mid-line left no newline: start ours on a fresh line so that
            # only the torn record is lost, never the next one.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            view = memoryview(line)
            while view:  # a single write in practice; loop only on a (rare) short write
                n = os.write(fd, view)
                view = view[n:]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return record


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(since: str | datetime | None) -> datetime | None:
    """``None``, a datetime, an ISO-8601 timestamp, or a duration ago such as ``15m``, ``2h``, ``7d``."""
    if since is None or isinstance(since, datetime):
        if isinstance(since, datetime) and since.tzinfo is None:
            return since.replace(tzinfo=timezone.utc)
        return since
    text = since.strip()
    m = _DURATION.match(text)
    if m:
        return datetime.now(timezone.utc) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError(f"--since {since!r}: expected an ISO timestamp or a duration like 30m, 2h, 7d") from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def iter_audit(path: Path | None = None) -> Iterator[dict[str, Any]]:
    """Every well-formed record, oldest first."""
    path = path or audit_path()
    if not path.is_file():
        return
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a killed writer
            if isinstance(record, dict) and "event" in record and "timestamp" in record:
                yield record


def read_audit(since: str | datetime | None = None, event: str | None = None, limit: int | None = None,
               **match: Any) -> list[dict[str, Any]]:
    """Records at or after ``since`` whose event is ``event`` (or starts with ``event.``,
    so ``key`` selects ``key.created`` and ``key.revoked``) and whose fields equal
    ``match`` (e.g. ``tenant="acme"``); the last ``limit`` of them, oldest first.
    """
    start = parse_since(since)
    out: list[dict[str, Any]] = []
    for record in iter_audit():
        if event and not (record["event"] == event or record["event"].startswith(event + ".")):
            continue
        if start is not None:
            try:
                when = datetime.fromisoformat(record["timestamp"])
            except ValueError:
                continue
            if when < start:
                continue
        fields = record.get("fields") or {}
        if any(str(fields.get(k)) != str(v) for k, v in match.items()):
            continue
        out.append(record)
    if limit is not None and limit >= 0:
        out = out[-limit:] if limit else []
    return out
