"""The whole lifecycle as one Ray job: ingest -> bootstrap -> fine-tune (or tune) -> register ->
evaluate -> promote -> demo key -> deploy or upgrade the Serve app (library: llmops_ray.pipeline).

    ray job submit --working-dir . -- python jobs/pipeline.py --config pipeline_demo_cpu [key=value ...]
    python jobs/pipeline.py --config pipeline_demo_cpu finetune.mode=tune force=[deploy]

One result line per stage; rerunning with unchanged inputs skips every stage. The last stdout
line is one JSON object: {"endpoint", "api_key", "model", "dashboard"}, preceded by a curl and
an ``openai`` client example.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipeline_demo_cpu", help="PipelineConfig YAML or shipped name")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (e.g. finetune.mode=tune)")
    args = parser.parse_args(argv)

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.config import UserError

    apply_process_env()
    try:
        from llmops_ray.pipeline import load_pipeline_config, run_pipeline

        result = run_pipeline(load_pipeline_config(args.config, args.overrides))
    except UserError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 2
    info = result["info"]
    if info.get("endpoint"):
        from llmops_ray.serve.app import usage_examples

        print(usage_examples(info), flush=True)
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
