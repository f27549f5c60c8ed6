"""Model stacks on the gateway: ``model = <stack>`` -> canary variant -> RAG -> the LLM.

One gateway hook, :class:`StackHook`, placed after the key and rail hooks and before the
observe hook (``keys -> rails -> stacks -> observe``)::

    gateway:
      hooks:
        - path: llmops_ray.serve.keys:ApiKeyHook
        - path: llmops_ray.safety.hook:RailsHook
        - path: llmops_ray.serve.stacks:StackHook
          kwargs:
            stacks: {demo: {variants: {production: 90, canary: 10}}}
            models: {tiny-base: ${LLMOPS_HOME}/models/tiny-base}
        - path: llmops_ray.observe.hook:ObserveHook

Per request whose ``model`` names a configured stack (``before_request``):

1. **Variant**: the registry aliases of the stack (``production``, ``canary``; resolved
   with a short cache, so ``llmops registry rollback`` / ``promote`` take effect within
   ``refresh_s``) are weighted and the caller sticks to one (:mod:`.canary`). A canary
   alias that points at the production version counts as production. ``ctx.variant``,
   the ``x-llmops-variant`` / ``x-llmops-stack-version`` response headers and the
   request log say which one served.
2. **Model**: the variant's manifest names a base model (and adapter); they map to a
   served ``model_id`` (or ``model_id:adapter`` for an adapter in that model's adapter
   directory). A version this gateway cannot serve is a 503 (and counts against the
   variant's SLO: that is how a broken canary gets rolled back).
3. **Generation defaults** of the manifest fill what the client did not set.
4. **RAG** (stacks with a KB, chat route): the ``retrieval: {k, mode, filters}``
   extension field (defaults from the manifest), the Retriever deployment (handle call)
   searches the stack's KB version filtered by the caller's tenant, the context rail
   neutralises instructions in the chunks, the stack's versioned prompt template wraps
   them, and the answer carries ``citations`` (``on_response``; in the first streamed
   chunk via ``on_chunk``).

``after_response`` feeds each outcome to an in-replica SLO window; a periodic task in the
replica compares the canary's window with the stack's ``policy.slo`` and rolls the canary
back (registry rollback + ``registry.auto_rollback`` audit event) on a breach.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Optional

from pydantic import Field

from llmops_ray.config import StrictModel
from llmops_ray.kb.rerank import RerankConfig
from llmops_ray.serve.canary import (
    CANARY,
    PRODUCTION,
    SloWindow,
    auto_rollback,
    canary_breaches,
    hash_point,
    pick_variant,
    stickiness_key,
)
from llmops_ray.common.gateway_hooks import GatewayError, GatewayHook, RequestContext
from llmops_ray.serve.rag import (
    RETRIEVER_DEPLOYMENT,
    build_messages,
    context_block,
    last_user_index,
    make_citations,
    message_text,
    prompt_texts,
    retrieval_settings,
)

logger = logging.getLogger("llmops_ray.serve.stacks")

VARIANT_HEADER = "x-llmops-variant"
VERSION_HEADER = "x-llmops-stack-version"


class StackSpec(StrictModel):
    """How one stack is served."""

    variants: dict[str, float] = Field(default_factory=lambda: {PRODUCTION: 90.0, CANARY: 10.0})
    """Registry alias -> traffic weight (normalised over the aliases that exist)."""


class RetrieverSpec(StrictModel):
    """Where the Retriever Serve deployment is."""

    deployment: str = RETRIEVER_DEPLOYMENT
    """Deployment name."""
    app: str | None = None
    """Serve application it belongs to (None = the gateway's own application)."""
    num_cpus: float = Field(0.1, ge=0)
    """CPU share of each Retriever replica (used when the app is built with it)."""
    replicas: int = Field(1, ge=1)
    """Retriever replicas."""
    embedder: str | None = None
    """Embedder each replica preloads (None = all-MiniLM-L6-v2); queries always use the one
    their KB records (``llmops kb show``)."""
    reranker: Optional[RerankConfig] = None
    """Cross-encoder the retriever reranks every KB with (``{model, top_n, batch_size,
    device}``); None = each KB's own default reranker, where it has one. Loaded at deploy
    time: a model that cannot be loaded fails the deploy, not a query."""
    num_gpus: float = Field(0.0, ge=0)
    """GPU share of each Retriever replica (for a reranker with ``device: cuda``)."""


class WatchSpec(StrictModel):
    """The automatic canary rollback."""

    enabled: bool = True
    """Watch the canary and roll it back on an SLO breach."""
    alias: str = CANARY
    """Alias that is watched and rolled back."""
    interval_s: float = Field(10.0, gt=0)
    """How often the canary's window is checked, seconds."""
    min_requests: int = Field(20, ge=1)
    """Fewest canary requests in the window before a breach counts."""
    window_s: float | None = Field(None, gt=0)
    """Window, seconds (None = the stack's ``policy.slo.window_s``)."""


class StackHookConfig(StrictModel):
    """Keyword arguments of :class:`StackHook` (``gateway.hooks[].kwargs``)."""

    stacks: dict[str, StackSpec] = Field(default_factory=dict)
    """Stacks served under their name as ``model``."""
    models: dict[str, str] = Field(default_factory=dict)
    """Served ``model_id`` -> its source directory, to map a manifest's ``base_model`` to a
    deployment (by default a base model directory maps to the model_id of its basename)."""
    adapters_dirs: dict[str, str] = Field(default_factory=dict)
    """Served ``model_id`` -> its LoRA adapter directory (default ``${LLMOPS_HOME}/models``)."""
    refresh_s: float = Field(5.0, ge=0)
    """How long resolved aliases are cached, seconds (a manual rollback shows up after this)."""
    retriever: RetrieverSpec = Field(default_factory=RetrieverSpec)
    """The Retriever deployment of RAG stacks."""
    watch: WatchSpec = Field(default_factory=WatchSpec)
    """Automatic canary rollback."""
    rails: dict[str, Any] = Field(default_factory=dict)
    """Rails config for the context rail when no RailsHook runs before this hook."""


def _real(path: str) -> str:
    from llmops_ray.serve.config import expand_path

    return os.path.realpath(expand_path(path))


class StackHook(GatewayHook):
    """Stacks as models: canary routing, RAG with citations, automatic rollback."""

    Config = StackHookConfig

    def __init__(self, **kwargs: Any):
        from llmops_ray.config import build_config

        self.config = build_config(StackHookConfig, kwargs, "StackHook kwargs")
        self.stacks = self.config.stacks
        self._served = {_real(src): model_id for model_id, src in self.config.models.items()}
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._prompts: dict[str, Any] = {}
        self._retriever = None
        self.window = SloWindow()
        self._watcher: asyncio.Task | None = None

    @classmethod
    def deployments(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Serve deployments this hook needs in the gateway's app (the Retriever)."""
        from llmops_ray.config import build_config
        from llmops_ray.serve.rag import retriever_app

        spec = build_config(StackHookConfig, dict(kwargs or {}), "StackHook kwargs").retriever
        if spec.app is not None:
            return {}
        return {spec.deployment: retriever_app(spec.num_cpus, spec.embedder, spec.replicas, spec.deployment,
                                               reranker=spec.reranker.model_dump() if spec.reranker else None,
                                               num_gpus=spec.num_gpus)}

    def extra_models(self) -> list[str]:
        return list(self.stacks)

    # ------------------------------------------------------------------ registry

    async def variants(self, stack: str, refresh: bool = False) -> dict[str, Any]:
        """``{alias: StackVersion}`` of the stack's configured aliases that exist (cached)."""
        now = time.monotonic()
        cached = self._cache.get(stack)
        if cached and not refresh and now - cached[0] < self.config.refresh_s:
            return cached[1]
        lock = self._locks.setdefault(stack, asyncio.Lock())
        async with lock:
            cached = self._cache.get(stack)
            if cached and not refresh and time.monotonic() - cached[0] < self.config.refresh_s:
                return cached[1]
            try:
                found = await asyncio.to_thread(self._resolve_all, stack)
            except Exception as exc:  # noqa: BLE001 - registry down: serve the last known state
                if cached:
                    logger.warning("registry lookup of %s failed, using cached aliases: %r", stack, exc)
                    return cached[1]
                logger.warning("registry lookup of %s failed: %r", stack, exc)
                raise GatewayError(503, f"stack {stack!r} cannot be resolved in the registry now",
                                   headers={"Retry-After": "5"}) from None
            self._cache[stack] = (time.monotonic(), found)
            return found

    def _resolve_all(self, stack: str) -> dict[str, Any]:
        from llmops_ray.config import UserError
        from llmops_ray.registry import resolve_stack

        found = {}
        for alias in self.stacks[stack].variants:
            try:
                found[alias] = resolve_stack(f"{stack}@{alias}")
            except UserError:
                continue  # alias not set (e.g. no canary right now)
        return found

    async def _prompt(self, ref: str):
        # A prompt version is immutable: cache it for the replica's life.
        if ref not in self._prompts:
            from llmops_ray.registry import get_prompt

            self._prompts[ref] = await asyncio.to_thread(get_prompt, ref)
        return self._prompts[ref]

    # ------------------------------------------------------------------ routing

    def choose(self, stack: str, found: dict[str, Any], key: str) -> str:
        """The alias that serves ``key``; a canary on the production version is production."""
        weights: dict[str, float] = {}
        prod = found.get(PRODUCTION)
        for alias, weight in self.stacks[stack].variants.items():
            if alias not in found:
                continue
            if prod is not None and alias != PRODUCTION and found[alias].version == prod.version:
                alias = PRODUCTION
            weights[alias] = weights.get(alias, 0.0) + weight
        if not any(w > 0 for w in weights.values()):
            raise GatewayError(503, f"stack {stack!r} has none of the aliases {sorted(self.stacks[stack].variants)}")
        return pick_variant(weights, hash_point(stack, key))

    def served_model(self, version: Any) -> str:
        """The served model id (``model_id`` or ``model_id:adapter``) of a stack version."""
        manifest = version.manifest
        base_real = _real(manifest.base_model)
        model_id = self._served.get(base_real)
        if model_id is None:
            name = os.path.basename(base_real.rstrip("/"))
            if self.config.models and name not in self.config.models:
                raise GatewayError(503, f"stack {version.ref}: base model {manifest.base_model!r} is not served by "
                                        f"this gateway (served: {sorted(self.config.models)})", code="variant_unavailable")
            model_id = name
        if not manifest.adapter:
            return model_id
        adapters_dir = _real(self.config.adapters_dirs.get(model_id, "${LLMOPS_HOME}/models"))
        adapter_real = _real(manifest.adapter)
        name = os.path.basename(adapter_real)
        if os.path.dirname(adapter_real) != adapters_dir or not os.path.isfile(os.path.join(adapter_real, "adapter_config.json")):
            raise GatewayError(503, f"stack {version.ref}: adapter {manifest.adapter!r} is not servable (adapters of "
                                    f"{model_id!r} live in {adapters_dir})", code="variant_unavailable")
        return f"{model_id}:{name}"

    @staticmethod
    def apply_generation(body: dict[str, Any], gen: Any) -> None:
        """Fill the manifest's generation settings where the client set nothing."""
        body.setdefault("temperature", gen.temperature)
        body.setdefault("top_p", gen.top_p)
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = gen.max_tokens
        if gen.stop and body.get("stop") is None:
            body["stop"] = list(gen.stop)

    async def before_request(self, ctx: RequestContext) -> None:
        stack = ctx.body.get("model")
        if ctx.route not in ("chat", "completions") or stack not in self.stacks:
            return
        self._start_watcher()
        retrieval = ctx.body.pop("retrieval", None)
        found = await self.variants(stack)
        alias = self.choose(stack, found, stickiness_key(ctx.body, ctx.principal, ctx.request_id))
        version = found[alias]
        ctx.variant = alias
        ctx.extra["stack"] = {"name": stack, "version": version.version, "variant": alias}
        ctx.response_headers[VARIANT_HEADER] = alias
        ctx.response_headers[VERSION_HEADER] = version.ref
        ctx.body["model"] = self.served_model(version)
        gen = version.manifest.generation
        self.apply_generation(ctx.body, gen)
        if version.kb and ctx.route == "chat":
            try:
                settings = retrieval_settings(retrieval, gen.retrieval_k, gen.retrieval_mode)
            except ValueError as exc:
                raise GatewayError(400, str(exc), param="retrieval") from None
            await self._rag(ctx, version, settings)

    # ------------------------------------------------------------------ RAG

    def _retriever_handle(self):
        if self._retriever is None:
            from ray import serve

            spec = self.config.retriever
            app = spec.app or serve.get_replica_context().app_name
            self._retriever = serve.get_deployment_handle(spec.deployment, app_name=app)
        return self._retriever

    def _context_rails(self, ctx: RequestContext):
        rails = ctx.__dict__.get("_rails_state", {}).get("rails")  # the RailsHook's per-stack choice
        if rails is None:
            from llmops_ray.safety.rails import get_rails

            rails = get_rails(self.config.rails)
        return rails

    async def _rag(self, ctx: RequestContext, version: Any, settings: dict[str, Any]) -> None:
        messages = ctx.body.get("messages") or []
        index = last_user_index(messages)
        if index is None:
            raise GatewayError(400, f"stack {version.name!r} answers from a knowledge base: send a user message",
                               param="messages")
        query = message_text(messages[index].get("content"))
        tenant = ctx.tenant or "default"
        started = time.perf_counter()
        try:
            hits = await self._retriever_handle().search.remote(
                version.kb, query, settings["k"], settings["mode"], tenant, settings["filters"], settings.get("rerank"),
                settings.get("include_flagged", False))
        except Exception as exc:  # noqa: BLE001 - a missing KB version or a dead replica
            # The cause goes to the log under the request id, not to the client: its text can
            # name other tenants' knowledge bases and the store's paths.
            logger.warning("request %s: retrieval from %s failed: %r", ctx.request_id, version.kb, exc)
            raise GatewayError(503, f"retrieval failed for model {ctx.requested_model!r}; request id {ctx.request_id}",
                               code="retrieval_failed") from None
        ctx.extra["retrieval_s"] = time.perf_counter() - started
        rails = self._context_rails(ctx)
        # Parent-child KBs: the prompt reads each hit's enclosing section (citations stay the chunk).
        checked = await asyncio.to_thread(rails.check_context, prompt_texts(hits))
        ctx.extra.setdefault("rails", []).extend(d.to_log() for d in checked.decisions)
        citations = make_citations(hits, checked.chunks, checked.kept)
        template = await self._prompt(version.prompt_ref)
        ctx.body["messages"] = build_messages(template, messages, context_block(citations, checked.chunks))
        ctx.extra["citations"] = citations
        ctx.extra["retrieval"] = {"kb": version.kb, **settings, "tenant": tenant}

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if "citations" in ctx.extra and not ctx.extra.get("_citations_sent"):
            ctx.extra["_citations_sent"] = True
            chunk["citations"] = ctx.extra["citations"]
        return chunk

    def on_response(self, ctx: RequestContext, response: dict[str, Any]) -> dict[str, Any]:
        if "citations" in ctx.extra:
            response["citations"] = ctx.extra["citations"]
        return response

    # ------------------------------------------------------------------ SLO watch

    async def after_response(self, ctx: RequestContext) -> None:
        info = ctx.extra.get("stack")
        if not info or ctx.variant is None:
            return
        latency = (ctx.finished_at or time.perf_counter()) - ctx.started
        self.window.add(info["name"], ctx.variant, info["version"], ctx.status, latency)

    def _start_watcher(self) -> None:
        if self._watcher is None and self.config.watch.enabled:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.watch.interval_s)
            for stack in list(self.stacks):
                try:
                    await self.check_canary(stack)
                except Exception:  # noqa: BLE001 - the watcher must survive a registry hiccup
                    logger.exception("canary check of %s failed", stack)

    async def check_canary(self, stack: str) -> dict[str, Any] | None:
        """Roll the canary back when its window breaches the SLO; returns the audit record."""
        watch = self.config.watch
        cached = self._cache.get(stack)
        if not cached:
            return None
        found = cached[1]
        canary, prod = found.get(watch.alias), found.get(PRODUCTION)
        if canary is None or (prod is not None and prod.version == canary.version):
            return None
        slo = canary.manifest.policy.slo
        window = watch.window_s or slo.window_s
        rows = self.window.rows(stack, watch.alias, window, version=canary.version)
        breaches, figures = canary_breaches(rows, slo, watch.min_requests)
        if not breaches:
            return None
        logger.warning("canary %s@%s breached %s: %s", stack, canary.version, breaches, figures)
        record = await asyncio.to_thread(auto_rollback, stack, canary.version, breaches, figures, watch.alias)
        self.window.clear(stack, watch.alias)
        await self.variants(stack, refresh=True)
        return record
