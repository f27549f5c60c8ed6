"""Deploy (or upgrade) the Serve app on a running Ray cluster; prints its connection info.

    ray job submit --working-dir . -- python jobs/deploy.py --config serve_configs/local_cpu.yaml
    python jobs/deploy.py --config serve_configs/multi_model.yaml --set http.port=8001

The app outlives this job; `serve shutdown -y` (or `make down`) stops it. The job returns once
the first model answers a completion; when the app checks API keys it asks with a readiness key
it creates in the app's key store and revokes right after (both are in the audit log).
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> dict:
    from llmops_ray.serve.app import deploy_detached

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="local_cpu", help="serve YAML or a name in serve_configs/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override")
    parser.add_argument("--no-wait", action="store_true", help="return before the model answers")
    args = parser.parse_args(argv)
    info = deploy_detached(args.config, args.overrides, wait=not args.no_wait)
    print(json.dumps(info), flush=True)
    return info


if __name__ == "__main__":
    main()
