"""``llmops cost report``, ``llmops logs query``, ``llmops slo report`` and ``llmops audit``."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from llmops_ray.config import UserError
from llmops_ray.common.cli_output import print_json

cost_app = typer.Typer(help="Cost per tenant, stack and variant (tokens and replica-seconds).", no_args_is_help=True)
logs_app = typer.Typer(help="Query the request log (PII-masked).", no_args_is_help=True)
slo_app = typer.Typer(help="SLO figures per stack against the stacks' policy targets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``cost``, ``logs`` and ``slo`` command groups and ``audit``."""
    app.add_typer(cost_app, name="cost")
    app.add_typer(logs_app, name="logs")
    app.add_typer(slo_app, name="slo")
    app.command("audit")(audit_command)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width text table (floats with 6 significant digits)."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.6g}"
        return str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- cost


def cost_report(
    since: str,
    until: str | None = None,
    prices: str | None = None,
    csv_path: str | None = None,
    tenant: str | None = None,
    stack: str | None = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Aggregate cost rows for the window and write them to a CSV; returns (rows, csv path)."""
    from llmops_ray.config import workspace_path
    from llmops_ray.observe.cost import COST_COLUMNS, aggregate_costs, load_prices
    from llmops_ray.observe.request_log import parse_since, query_requests, query_usage

    table = load_prices(prices)
    lo, hi = parse_since(since), parse_since(until)
    requests = query_requests(since=lo, until=hi, tenant=tenant, stack=stack)
    usage = [u for u in query_usage(lo, hi) if stack is None or u["stack"] == stack]
    rows = aggregate_costs(requests, usage, table, since=lo, until=hi)
    if tenant is not None:
        rows = [r for r in rows if r["tenant"] == tenant]
    if csv_path:
        path = Path(csv_path)
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = workspace_path("reports") / f"cost-{stamp}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COST_COLUMNS + ["currency"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "currency": table.currency})
    return rows, path


@cost_app.command("report")
def cost_report_cmd(
    since: str = typer.Option(..., "--since", help="Window start: 24h, 30m, 7d or an ISO date (UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Window end (same forms); default now."),
    prices: Optional[str] = typer.Option(None, "--prices", help="Price table YAML (default: shipped 'prices')."),
    csv_path: Optional[str] = typer.Option(None, "--csv", help="CSV path (default <workspace>/reports/cost-<time>.csv)."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant."),
    stack: Optional[str] = typer.Option(None, "--stack", help="Only this stack."),
) -> None:
    """Print cost per tenant, stack and variant for a window, and write it as CSV."""
    from llmops_ray.observe.cost import COST_COLUMNS

    rows, path = cost_report(since, until, prices, csv_path, tenant, stack)
    total = {c: sum(r[c] for r in rows) for c in COST_COLUMNS[3:]}
    print(format_table(rows + [{"tenant": "TOTAL", "stack": "", "variant": "", **total}], COST_COLUMNS))
    print(f"wrote {path}")


# --------------------------------------------------------------------------- logs


@logs_app.command("query")
def logs_query_cmd(
    since: Optional[str] = typer.Option(None, "--since", help="24h, 30m, 7d or an ISO date (UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Window end (same forms)."),
    tenant: Optional[str] = typer.Option(None, "--tenant"),
    stack: Optional[str] = typer.Option(None, "--stack", help="Stack (a configured stack, or the served model; (unknown) = no model resolved)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model that served the request."),
    variant: Optional[str] = typer.Option(None, "--variant"),
    status: Optional[str] = typer.Option(None, "--status", help="200, 4xx, 5xx, ok (<400) or error (>=400)."),
    request_id: Optional[str] = typer.Option(None, "--id", help="A request id or response id."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the newest N rows."),
    eval_case: bool = typer.Option(False, "--eval-case", help="Print each row as an eval-suite case (qa item)."),
    output: Optional[str] = typer.Option(None, "--output", help="Append the lines to this JSONL file instead."),
) -> None:
    """Print matching request-log rows as JSON lines (oldest first)."""
    from llmops_ray.observe.request_log import export_eval_case, query_requests

    if limit is not None and limit < 1:
        raise UserError("--limit must be >= 1")
    rows = query_requests(since, until, tenant, stack, model, variant, status, request_id, limit)
    if eval_case and not rows:
        raise UserError("no logged request matches; nothing to export")
    lines = []
    for row in rows:
        if eval_case:
            lines.append(json.dumps(export_eval_case(row), ensure_ascii=False))
            continue
        for key in ("request", "citations", "rails", "pii"):
            try:
                row[key] = json.loads(row[key]) if row.get(key) else None
            except json.JSONDecodeError:
                pass
        lines.append(json.dumps(row, ensure_ascii=False))
    if output:
        with open(output, "a", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in lines)
        print_json({"output": output, "lines": len(lines)})
    else:
        for line in lines:
            print(line)


# --------------------------------------------------------------------------- slo


def stack_targets(stacks: list[str], targets_file: str | None) -> dict[str, Any]:
    """SLO targets per stack: from ``targets_file`` (YAML ``stack: {...}`` with an optional
    ``default``, or one flat set of targets), else each stack's registered policy
    (``NAME@production``, then ``NAME@latest``), else the defaults."""
    from llmops_ray.config import read_yaml

    if targets_file:
        return read_yaml(targets_file)
    out: dict[str, Any] = {}
    for name in stacks:
        base = name.split("@", 1)[0]
        for ref in ([name] if "@" in name else [f"{base}@production", f"{base}@latest"]):
            try:
                from llmops_ray.registry.store import resolve_stack

                out[name] = resolve_stack(ref).manifest.policy.slo.model_dump()
                break
            except (UserError, ImportError, ValueError):
                continue
    return out


@slo_app.command("report")
def slo_report_cmd(
    since: Optional[str] = typer.Option(
        None, "--since", help="Window start (1h, 30m, ISO date); default: each stack's policy window_s."
    ),
    stack: Optional[str] = typer.Option(None, "--stack", help="Only this stack."),
    by_variant: bool = typer.Option(False, "--by-variant", help="One line per stack and variant."),
    targets: Optional[str] = typer.Option(None, "--targets", help="YAML of targets (stack -> targets, or one set)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line per stack instead of a table."),
    fail_on_breach: bool = typer.Option(False, "--fail-on-breach", help="Exit 1 when any target is breached."),
) -> None:
    """Availability, error rate, p50/p95 TTFT and latency per stack against its targets."""
    from llmops_ray.observe.request_log import parse_since, query_requests
    from llmops_ray.observe.slo import coerce_targets, slo_report

    now = time.time()
    lo = parse_since(since, now)
    # Without --since each stack is measured over its own window: read the longest one.
    rows = query_requests(since=lo if lo is not None else now - 86400 * 30, stack=stack)
    stacks = sorted({r["stack"] or "-" for r in rows})
    per_stack = stack_targets(stacks, targets)
    report = []
    for name in stacks:
        if isinstance(per_stack, dict) and name in per_stack:
            t = per_stack[name]
        elif isinstance(per_stack, dict) and "default" in per_stack:
            t = per_stack["default"]
        elif isinstance(per_stack, dict) and per_stack and not any(isinstance(v, dict) for v in per_stack.values()):
            t = per_stack  # one flat set of targets for every stack
        else:
            t = None
        t = coerce_targets(t)
        start = lo if lo is not None else now - t.window_s
        window_rows = [r for r in rows if (r["stack"] or "-") == name and r["ts"] >= start]
        for entry in slo_report(window_rows, t, by_variant=by_variant):
            entry["window_s"] = round(now - start, 3)
            report.append(entry)
    if as_json:
        for entry in report:
            print_json(entry)
    else:
        columns = ["stack"] + (["variant"] if by_variant else []) + [
            "requests", "availability", "error_rate", "ttft_p50_ms", "ttft_p95_ms", "latency_p50_ms",
            "latency_p95_ms", "window_s", "status",
        ]
        shown = [{**e, "status": "ok" if e["ok"] else "BREACH: " + ",".join(e["breaches"])} for e in report]
        print(format_table(shown, columns) if shown else "no requests in the window")
    if fail_on_breach and any(not e["ok"] for e in report):
        raise typer.Exit(1)


def audit_command(
    since: Optional[str] = typer.Option(None, "--since", help="ISO timestamp or a duration ago: 30m, 2h, 7d."),
    event: Optional[str] = typer.Option(None, "--event", help="Event name, or its prefix before a dot (e.g. 'key')."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only records whose fields.tenant is this."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Only the last N matching records."),
) -> None:
    """Print audit records (key creation/revocation, promotions, rollbacks, blocked requests), oldest first."""
    from llmops_ray.common.audit import read_audit

    match = {"tenant": tenant} if tenant else {}
    for record in read_audit(since=since, event=event, limit=limit, **match):
        print_json(record)
