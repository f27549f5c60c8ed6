"""One improvement round on the cluster (same function as `llmops improve`): feedback since the
last round -> pairs -> DPO from production -> register -> evaluate -> canary when the gates pass.

ray job submit --working-dir . -- python jobs/improve.py --stack demo [--suite sample_kb --suite pairwise_demo] [key=value ...]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack NAME whose production version is improved")
    parser.add_argument("--suite", action="append", help="evaluation suite (repeatable; default sample_kb)")
    parser.add_argument("--config", default="dpo_lora_tiny_cpu", help="FinetuneConfig with objective: dpo")
    parser.add_argument("--since", default=None, help="feedback window start (default: end of the last round)")
    parser.add_argument("--engine-cpus", type=float, default=1.0, help="CPU share of the evaluation's vLLM engine")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the DPO config")
    args = parser.parse_args()

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.common.cli_output import print_progress
    from llmops_ray.pipeline.improve import improve

    apply_process_env()
    result = improve(args.stack, suites=args.suite or ["sample_kb"], finetune_config=args.config, overrides=args.overrides,
                     since=args.since, engine_cpus=args.engine_cpus, progress=print_progress)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
