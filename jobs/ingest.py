"""Ingest documents into a knowledge base as a Ray job (same code as `llmops ingest`).

    ray job submit --working-dir . -- python jobs/ingest.py llmops_ray/resources/sample_corpus --kb demo
    python jobs/ingest.py PATH... --kb NAME [--tenant T] [--mode incremental|rebuild] [--sync]
        [--config ingest.yaml] [--set chunk_size=256 ...]

Prints progress lines and, as the last stdout line, the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--kb", required=True)
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--mode", default="incremental", choices=["incremental", "rebuild"])
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.config import UserError
    from llmops_ray.data.ingest import ingest, load_ingest_config

    apply_process_env()
    try:
        config = load_ingest_config(args.config, args.overrides)
        summary = ingest(args.paths, args.kb, tenant=args.tenant, mode=args.mode, sync=args.sync,
                         config=config, progress=lambda m: print(m, flush=True))
    except UserError as exc:
        print(f"llmops: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False), flush=True)
    return 0 if summary["documents_written"] + summary["documents_unchanged"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
