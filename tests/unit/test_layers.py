"""Layers import one way: ARCHITECTURE.md's layer table is the rule, every import of every
module of ``llmops_ray`` (inside functions too) must follow it, the table has no cycle, and no
two modules import each other round a cycle."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "llmops_ray"


def layer_table(text: str | None = None) -> dict[str, set[str]]:
    """package -> packages it may import, from the table between the layer markers."""
    text = text if text is not None else (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = text.split("<!-- layers:begin -->", 1)[1].split("<!-- layers:end -->", 1)[0]
    table: dict[str, set[str]] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        table[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", cells[1]))
    return table


def package_of(module: str) -> str:
    """``llmops_ray.serve.gateway`` -> ``serve``; ``llmops_ray.cli`` -> ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "llmops_ray"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        if "serve_configs" in rel.parts or "resources" in rel.parts:
            continue
        name = ".".join(rel.parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """Every ``llmops_ray`` module imported anywhere in the file: (name, line)."""
    out = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parent + ([node.module] if node.module else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in out if name.startswith("llmops_ray.")]


def import_edges() -> dict[str, dict[str, list[str]]]:
    """importing module -> imported module -> where (``path:line``), among llmops_ray modules."""
    mods = modules()
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, path in mods.items():
        for name, line in imports_of(path, module):
            if name in mods and name != module:
                edges[module][name].append(f"{path.relative_to(REPO)}:{line}")
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_the_table_lists_every_package_and_has_no_cycle():
    table = layer_table()
    packages = {package_of(m) for m in modules()} - {"llmops_ray"}
    assert packages <= set(table), f"packages missing from ARCHITECTURE.md's layer table: {sorted(packages - set(table))}"
    unknown = {dep for deps in table.values() for dep in deps} - set(table)
    assert not unknown, f"the table names unknown packages: {sorted(unknown)}"
    assert not cycles(table), f"the layer table has a cycle: {cycles(table)}"


def test_every_import_follows_the_layer_table():
    table = layer_table()
    wrong = []
    for module, targets in import_edges().items():
        src = package_of(module)
        for target, where in targets.items():
            dst = package_of(target)
            if dst != src and dst != "llmops_ray" and dst not in table.get(src, set()):
                wrong.append(f"{src} -> {dst}: {where[0]} imports {target}")
    assert not wrong, "imports the layer table does not allow:\n" + "\n".join(sorted(wrong))


def test_no_module_import_cycle():
    graph = {module: set(targets) for module, targets in import_edges().items()}
    assert not cycles(graph), f"modules that import each other round a cycle: {cycles(graph)}"


def test_cycle_rule_on_a_small_table():
    cyclic = layer_table("<!-- layers:begin -->\n| `a` | `b` |\n| `b` | `a` |\n<!-- layers:end -->")
    assert cyclic == {"a": {"b"}, "b": {"a"}} and cycles(cyclic) == [["a", "b"]]
    assert not cycles(layer_table("<!-- layers:begin -->\n| `a` | `b` |\n| `b` | |\n<!-- layers:end -->"))


def test_imports_inside_functions_and_relative_ones_are_seen(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("import json\n\ndef f():\n    from llmops_ray.serve.app import build_app\n"
                    "    from ..kb import store\n    import llmops_ray.config as c\n")
    names = {name for name, _ in imports_of(path, "llmops_ray.data.mod")}
    assert {"llmops_ray.serve.app", "llmops_ray.kb.store", "llmops_ray.config"} <= names
    assert "json" not in names


RAY_INTERNAL_PREFIXES = ("ray._private", "ray._common", "ray._raylet", "ray.llm._internal", "ray.serve._private",
                         "ray.train.v2._internal", "ray.serve.context")


def test_ray_internals_only_in_the_compat_module():
    """ARCHITECTURE.md: what touches Ray internals lives in common/ray_compat.py (checked by
    tests/unit/test_ray_compat.py); everything else uses Ray's public API."""
    compat = PACKAGE / "common" / "ray_compat.py"
    wrong = []
    for module, path in modules().items():
        if path == compat:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{path.relative_to(REPO)}:{node.lineno} imports {n}" for n in names
                      if n.startswith(RAY_INTERNAL_PREFIXES)]
    assert not wrong, "Ray internals outside common/ray_compat.py:\n" + "\n".join(wrong)


def test_the_cli_starts_without_heavy_imports():
    """ARCHITECTURE.md: heavy imports stay inside functions, so `llmops --help` is fast."""
    import subprocess
    import sys

    code = ("import sys\nfrom llmops_ray.cli import build_app\nbuild_app()\n"
            "heavy = [m for m in ('torch', 'ray', 'vllm', 'lancedb', 'transformers', 'deepspeed', 'mlflow') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"building the CLI imports {out.stdout.strip()}"
