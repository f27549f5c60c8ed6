"""Fine-tune a retriever on a knowledge base (same function as `llmops kb tune-retriever`).

ray job submit --working-dir . -- python jobs/tune_retriever.py --kb NAME [--kind bi-encoder|cross-encoder] [--apply] [key=value ...]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", required=True, help="knowledge base NAME (NAME@VERSION without --apply)")
    parser.add_argument("--kind", choices=["bi-encoder", "cross-encoder"], default=None)
    parser.add_argument("--apply", action="store_true", help="put the tuned model to work on the KB")
    parser.add_argument("--heldout", default=None, help="evaluation-suite YAML for recall@5/MRR before and after")
    parser.add_argument("--config", default=None, help="TuneRetrieverConfig YAML")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args()

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.common.cli_output import print_progress
    from llmops_ray.config import load_config
    from llmops_ray.train.retriever import TuneRetrieverConfig, tune_retriever

    apply_process_env()
    config = load_config(TuneRetrieverConfig, args.config, args.overrides)
    if args.kind:
        config = config.model_copy(update={"kind": args.kind})
    result = tune_retriever(args.kb, config, apply=args.apply, heldout=args.heldout, progress=print_progress)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
