"""Fine-tune on the cluster (same function as `llmops finetune`); rerun the same run_name to resume.

ray job submit --working-dir . -- python jobs/finetune.py --config sft_lora_tiny_cpu data.path=DATA.jsonl [key=value ...]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="FinetuneConfig YAML or shipped name")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args()

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.config import load_config
    from llmops_ray.train import FinetuneConfig, finetune

    apply_process_env()
    result = finetune(load_config(FinetuneConfig, args.config, args.overrides))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, default=str))


if __name__ == "__main__":
    main()
