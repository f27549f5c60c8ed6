"""HTML report comparing the evaluated versions of a stack (table + one bar plot per metric)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from llmops_ray.config import workspace_path


def comparison_rows(versions: list[Any]) -> tuple[list[str], dict[int, dict[str, float]]]:
    """``(metric names, {version: {"suite/metric": value}})`` over every evaluated version."""
    table: dict[int, dict[str, float]] = {}
    for stack in versions:
        flat = {k: v for k, v in stack.metrics().items() if "/" in k}
        if flat:
            table[stack.version] = flat
    metrics = sorted({m for row in table.values() for m in row})
    return metrics, table


def _plot(metrics: list[str], table: dict[int, dict[str, float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(metrics))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    versions = sorted(table)
    for i, metric in enumerate(metrics):
        ax = axes[i // cols][i % cols]
        shown = [v for v in versions if metric in table[v]]  # a version without the metric gets no bar
        values = [table[v][metric] for v in shown]
        ax.bar([f"v{v}" for v in shown], values, color="#4C72B0")
        if values and min(values) >= 0:
            ax.set_ylim(0, max(max(values) * 1.1, 1e-9 if max(values) > 0 else 1.0))
        ax.set_title(metric, fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(len(metrics), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_report(name: str, out: str | Path | None = None) -> Path:
    """Write ``<workspace>/reports/<name>-eval.html`` and return its path."""
    from llmops_ray.registry import list_versions

    versions = list_versions(name)
    metrics, table = comparison_rows(versions)
    aliases = {s.version: ", ".join(s.aliases) for s in versions}
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    body = ""
    for version in sorted(table):
        cells = "".join(
            f"<td>{table[version][m]:.4g}</td>" if m in table[version] else "<td>-</td>" for m in metrics
        )
        body += f"<tr><td>v{version}</td><td>{html.escape(aliases.get(version, ''))}</td>{cells}</tr>"
    image = f'<img alt="metrics by version" src="data:image/png;base64,{_plot(metrics, table)}"/>' if table else ""
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(name)}: evaluation</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Stack {html.escape(name)}: evaluation by version</h1>"
        f"<table><tr><th>version</th><th>aliases</th>{head}</tr>{body}</table>{image}</body></html>"
    )
    path = Path(out) if out else workspace_path("reports") / f"{name}-eval.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
