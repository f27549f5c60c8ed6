"""Bootstrap the tiny base model on the cluster (same function as `llmops model bootstrap`).

ray job submit --working-dir . -- python jobs/bootstrap.py --config bootstrap_tiny_cpu \
    --corpus llmops_ray/resources/sample_corpus [--out DIR] [key=value ...]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="bootstrap_tiny_cpu", help="BootstrapConfig YAML or shipped name")
    parser.add_argument("--corpus", nargs="*", default=[], help="corpus files/directories")
    parser.add_argument("--out", default=None, help="output model directory")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args()

    from llmops_ray.cluster import apply_process_env
    from llmops_ray.config import load_config
    from llmops_ray.train.bootstrap import BootstrapConfig, bootstrap

    apply_process_env()
    cfg = load_config(BootstrapConfig, args.config, args.overrides)
    updates = {k: v for k, v in {"corpus": args.corpus, "out": args.out}.items() if v}
    result = bootstrap(cfg.model_copy(update=updates) if updates else cfg)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, default=str))


if __name__ == "__main__":
    main()
