"""Cut OpenAI's published API description down to the operations the gateway serves.

    .venv/bin/python tests/tools/openapi_subset.py [../shared/openai-openapi.yaml]

Writes ``tests/data/openai-openapi-subset.yaml``: ``POST /chat/completions``, ``POST
/completions``, ``POST /embeddings`` and ``GET /models`` with every component they reference
(transitively), unchanged. The full document (3 MB) is not in the repository; this subset
is, so the schema fuzz test runs wherever the suite runs. OpenAI's document is under the MIT
licence (``tests/data/openai-openapi.LICENSE``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "data" / "openai-openapi-subset.yaml"
KEEP = {"/chat/completions": ["post"], "/completions": ["post"], "/embeddings": ["post"], "/models": ["get"]}


def refs(node, found: set[str]) -> None:
    """Add every ``#/components/<kind>/<name>`` reference inside ``node`` to ``found``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                found.add(value)
            else:
                refs(value, found)
    elif isinstance(node, list):
        for item in node:
            refs(item, found)


def subset(doc: dict) -> dict:
    paths = {p: {m: doc["paths"][p][m] for m in methods} for p, methods in KEEP.items()}
    seen: set[str] = set()
    todo: set[str] = set()
    refs(paths, todo)
    components: dict[str, dict] = {}
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = doc["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        refs(node, todo)
    if "securitySchemes" in doc.get("components", {}):
        components["securitySchemes"] = doc["components"]["securitySchemes"]
    out = {k: doc[k] for k in ("openapi", "info", "servers", "security") if k in doc}
    out["paths"] = paths
    out["components"] = {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())}
    return out


def main(source: str) -> None:
    doc = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    header = ("# Subset of OpenAI's published OpenAPI description (MIT licence: openai-openapi.LICENSE):\n"
              "# the four operations the gateway serves and the components they reference, unchanged.\n"
              "# Used by tests/integration/test_openapi_fuzz.py and benchmarks/openapi_fuzz.py.\n"
              "# Regenerate: .venv/bin/python tests/tools/openapi_subset.py ../shared/openai-openapi.yaml\n")
    OUT.write_text(header + yaml.safe_dump(subset(doc), sort_keys=False, allow_unicode=True), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(REPO.parent / "shared" / "openai-openapi.yaml"))
