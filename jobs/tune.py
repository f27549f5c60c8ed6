"""Search fine-tuning hyperparameters with Ray Tune (ASHA by default) and register the best trial.

    ray job submit --working-dir . -- python jobs/tune.py --config tune_asha_tiny_cpu data=.llmops/data/sft_demo.jsonl

Same library call as ``llmops tune``; an interrupted search of the same name resumes.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="shipped tune config name or YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.config import UserError

    apply_process_env()
    try:
        from llmops_ray.tune.search import load_search_config, run_search

        summary = run_search(load_search_config(args.config, args.overrides))
    except UserError as exc:
        print(f"tune: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
