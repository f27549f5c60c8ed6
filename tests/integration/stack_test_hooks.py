"""Test hook for the stack/RAG/rails tests: records the body the engine is about to get.

Placed after the rails and stack hooks (and before the observe hook), so what it writes is
exactly what the gateway sends to vLLM: one JSON line per request, keyed by request id.
"""

from __future__ import annotations

import json

from llmops_ray.common.gateway_hooks import GatewayHook


class EngineBodyRecorder(GatewayHook):
    def __init__(self, log_path: str):
        self.log_path = log_path

    async def before_request(self, ctx):
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"request_id": ctx.request_id, "body": ctx.body}, ensure_ascii=False) + "\n")
