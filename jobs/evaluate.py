"""Evaluate a registered stack on a suite and store the results with the stack version.

    ray job submit --working-dir . -- python jobs/evaluate.py --stack support@production --suite smoke

Same library call as ``llmops eval``; prints the result summary as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="NAME@ALIAS_OR_VERSION")
    parser.add_argument("--suite", required=True, help="suite file (YAML/JSONL) or shipped suite name")
    parser.add_argument("--engine-cpus", type=float, default=1.0)
    parser.add_argument("--engine-gpus", type=float, default=0.0)
    args = parser.parse_args(argv)

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.config import UserError

    apply_process_env()
    try:
        from llmops_ray.evaluate.run import evaluate_stack

        result = evaluate_stack(args.stack, args.suite, engine_cpus=args.engine_cpus, engine_gpus=args.engine_gpus)
    except UserError as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: result.get(k) for k in ("stack", "version", "suite", "metrics", "counts", "report")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
