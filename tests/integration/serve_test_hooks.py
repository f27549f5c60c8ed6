"""A gateway hook used by the serving tests (loaded in the gateway replica by file path).

It exercises every hook point: authentication (401), a pre-processor that blocks (400
``content_blocked``) and rewrites the model (an alias), a per-chunk post-processor, a
non-stream response post-processor, and an after-response callback that writes one JSON
line per request to ``log_path``.
"""

from __future__ import annotations

import json

from llmops_ray.common.gateway_hooks import GatewayError, GatewayHook


class RecordingHook(GatewayHook):
    def __init__(self, log_path: str, alias: str, target: str):
        self.log_path = log_path
        self.alias = alias
        self.target = target

    async def authenticate(self, ctx):
        if ctx.headers.get("x-test-auth") == "deny":
            raise GatewayError(401, "invalid test credentials")
        ctx.tenant = ctx.headers.get("x-test-tenant")

    async def before_request(self, ctx):
        for message in ctx.body.get("messages") or []:
            if "FORBIDDEN" in str(message.get("content")):
                raise GatewayError(400, "blocked by rail 'test_rail'", code="content_blocked")
        if ctx.body.get("model") == self.alias:
            ctx.body["model"] = self.target
            ctx.variant = "alias"
            ctx.response_headers["X-LLMOps-Variant"] = "alias"

    def on_chunk(self, ctx, chunk):
        chunk["hooked"] = True
        return chunk

    def on_response(self, ctx, response):
        response["hooked"] = True
        return response

    async def after_response(self, ctx):
        ttft = None if ctx.first_chunk_at is None else ctx.first_chunk_at - ctx.started
        record = {
            "request_id": ctx.request_id,
            "route": ctx.route,
            "model": ctx.model,
            "status": ctx.status,
            "stream": ctx.stream,
            "usage": ctx.usage,
            "tenant": ctx.tenant,
            "text": "".join(ctx.output_text),
            "ttft": ttft,
        }
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def extra_models(self):
        return [self.alias]
