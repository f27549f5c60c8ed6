"""Our OpenAI-compatible gateway: Ray Serve LLM's ingress, extended (``ingress_cls_config``).

Why extend ``OpenAiIngress`` instead of writing a FastAPI ingress from scratch: the request
still takes the same two handle hops as the stock app (HTTP proxy -> gateway -> vLLM
replica), and a hand-written ingress cannot remove either of them; what costs time on
busy cores is the number of messages per token and the first-token batching delay, fixed in
:mod:`llmops_ray.serve.server`. Extending keeps Ray's handle caching, LoRA multiplexed
routing, session affinity, model cards and SSE framing, so this module only adds what is
ours: strict input checks (every bad input is a 400/404 with an OpenAI error body, never a
500), local LoRA adapters in ``/v1/models``, the embeddings route, and the hook points of
:mod:`llmops_ray.common.gateway_hooks` (keys, rails, RAG, canary, metrics, logs).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any, AsyncGenerator, Iterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from ray.serve.llm.ingress import OpenAiIngress
from starlette.responses import JSONResponse, Response, StreamingResponse

# Ray internals (listed and checked in common/ray_compat.py, with the OpenAiIngress attributes
# the gateway reads).
from llmops_ray.common.ray_compat import (
    NON_STREAMING_RESPONSE_TYPES,
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
    OpenAIHTTPException,
    get_base_model_id,
    get_lora_id,
)
from llmops_ray.common.ray_compat import apply_openai_json_format as _apply_openai_json_format
from llmops_ray.common.ray_compat import peek_at_generator as _peek_at_generator

from llmops_ray.common.gateway_hooks import GatewayError, RequestContext, load_hook, overrides
from llmops_ray.serve.server import AdapterOwners, list_local_adapters, local_adapter_path
from llmops_ray.serve.tokens import PromptCounter
from llmops_ray.serve.validate import (
    _positive_int,
    _validation_message,
    check_chat_body,
    check_common,
    check_completion_body,
    check_embeddings_body,
    parse_json_body,
    read_body_capped,
)

logger = logging.getLogger("llmops_ray.serve.gateway")


DONE = "data: [DONE]\n\n"

ENDPOINTS = {
    "models": lambda app: app.get("/v1/models"),
    "model_data": lambda app: app.get("/v1/models/{model:path}"),
    "chat": lambda app: app.post("/v1/chat/completions"),
    "completions": lambda app: app.post("/v1/completions"),
    "embeddings": lambda app: app.post("/v1/embeddings"),
    "feedback": lambda app: app.post("/v1/feedback"),
    "openapi": lambda app: app.get("/openapi.json"),
}

DEFAULT_MAX_BODY_BYTES = 1 << 20
# Exceptions of vLLM's request validation (raised in the engine replica, so they arrive
# wrapped in Ray's task error): the client's fault, a 400, never a 500.
_ENGINE_CLIENT_ERRORS = {"VLLMValidationError", "VLLMClientError", "VLLMUnprocessableEntityError", "VLLMNotFoundError"}


def error_response(exc: GatewayError, request_id: str | None = None) -> JSONResponse:
    headers = dict(exc.headers)
    if request_id:
        headers["X-Request-Id"] = request_id
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def build_fastapi_app() -> FastAPI:
    """The FastAPI app of the gateway: OpenAI error bodies for FastAPI's own errors too."""
    # The OpenAPI description is served by the gateway's own route, behind the key check.
    app = FastAPI(title="llmops-ray gateway", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        return error_response(GatewayError(400, f"invalid request: {exc.errors()[:1]}"))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException):
        return error_response(GatewayError(exc.status_code, str(exc.detail)))

    @app.exception_handler(404)
    async def _not_found(_request: Request, exc: Exception):
        return error_response(GatewayError(404, f"no such route: {_request.url.path}", code="not_found"))

    @app.exception_handler(405)
    async def _method(_request: Request, exc: Exception):
        return error_response(GatewayError(405, f"method not allowed: {_request.method}", code="method_not_allowed"))

    return app


def _split_events(packet: str) -> list[str]:
    return [e for e in packet.split("\n\n") if e.strip()]


# --------------------------------------------------------------------------- the ingress


class Gateway(OpenAiIngress):
    """OpenAI routes over Ray Serve LLM deployments, with our checks and hooks.

    Extra constructor argument ``settings`` (bound by :func:`llmops_ray.serve.app.build_app`):
    ``local_lora_dirs`` {model_id: dir}, ``max_model_len`` {model_id: tokens},
    ``embeddings`` bool, ``embedding_model_id``, ``embedding_model_source``, ``hooks``
    [{path, kwargs}].
    """

    def __init__(self, llm_deployments, model_cards, *, lora_paths=None, settings: dict | None = None):
        super().__init__(llm_deployments, model_cards, lora_paths=lora_paths)
        settings = settings or {}
        self._local_lora_dirs: dict[str, str] = dict(settings.get("local_lora_dirs") or {})
        self._max_model_len: dict[str, int] = dict(settings.get("max_model_len") or {})
        self._embeddings_enabled = bool(settings.get("embeddings", False))
        self._embedding_model_id = settings.get("embedding_model_id") or "all-minilm-l6-v2"
        self._embedding_source = settings.get("embedding_model_source")
        self._embedder = None
        self._embedder_lock = asyncio.Lock()
        self._hooks = [load_hook(h["path"], h.get("kwargs")) for h in settings.get("hooks") or []]
        self._chunk_hooks = [h for h in self._hooks if overrides(h, "on_chunk") or overrides(h, "end_stream")]
        self._admit_hooks = [h for h in self._hooks if overrides(h, "admit")]
        self._max_body_bytes = int(settings.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES)
        self._tokens = PromptCounter(settings.get("tokenizer_sources") or {})
        self._owners = AdapterOwners()
        self._background: set[asyncio.Task] = set()
        if settings.get("auth") == "none":
            logger.warning("gateway.auth is 'none': every route answers without an API key, with no quotas "
                           "and no tenant; use it only on a trusted network")

    # ------------------------------------------------------------------ models

    def _card(self, model_id: str, owned_by: str = "llmops") -> ModelCard:
        return ModelCard(id=model_id, object="model", owned_by=owned_by, permission=[], metadata={})

    async def model(self, model_id: str):
        if model_id in self._model_cards:
            return self._model_cards[model_id]
        base = get_base_model_id(model_id)
        lora_dir = self._local_lora_dirs.get(base)
        if lora_dir and local_adapter_path(lora_dir, model_id):
            card = self._card(model_id, owned_by=self._model_cards[base].owned_by)
            card.metadata = {"base_model_id": base, "adapter": get_lora_id(model_id)}
            return card
        if self._embeddings_enabled and model_id == self._embedding_model_id:
            return self._card(model_id)
        for hook in self._hooks:
            if model_id in hook.extra_models():
                return self._card(model_id)
        return await super().model(model_id) if base in self._lora_paths else None

    def _visible(self, ctx: RequestContext, model_id: str) -> bool:
        """Whether the caller may see and use ``model_id``: every hook allows it (the key's
        model list) and, for a local adapter that belongs to a tenant, the caller is that tenant."""
        owner = self._owners.owner(self._local_lora_dirs, model_id)
        if owner is not None and owner != ctx.tenant:
            return False
        return all(hook.allows_model(ctx, model_id) for hook in self._hooks)

    async def _authenticate_listing(self, request: Request) -> RequestContext | Response:
        """Listing routes run the ``authenticate`` hooks too (every ``/v1`` route needs a key)."""
        ctx = RequestContext(route="models", body={}, headers={k.lower(): v for k, v in request.headers.items()})
        try:
            for hook in self._hooks:
                await hook.authenticate(ctx)
        except GatewayError as exc:
            return error_response(exc, ctx.request_id)
        return ctx

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``: the gateway's route description, for callers with a key."""
        ctx = await self._authenticate_listing(request)
        if isinstance(ctx, Response):
            return ctx
        return JSONResponse(request.app.openapi())

    async def models(self, request: Request) -> Response:
        ctx = await self._authenticate_listing(request)
        if isinstance(ctx, Response):
            return ctx
        cards = (await super().models()).data
        for base, lora_dir in self._local_lora_dirs.items():
            for adapter in list_local_adapters(lora_dir):
                card = await self.model(f"{base}:{adapter}")
                if card is not None:
                    cards.append(card)
        extra = [self._embedding_model_id] if self._embeddings_enabled else []
        for hook in self._hooks:
            extra += hook.extra_models()
        cards += [self._card(m) for m in extra]
        cards = [c for c in cards if self._visible(ctx, c.id)]
        return JSONResponse(ModelList(data=cards).model_dump())

    async def model_data(self, request: Request, model: str) -> Response:
        ctx = await self._authenticate_listing(request)
        if isinstance(ctx, Response):
            return ctx
        card = await self.model(model)
        if card is None or not self._visible(ctx, model):
            return error_response(GatewayError(404, f"The model '{model}' does not exist"))
        return JSONResponse(card.model_dump())

    def _resolve_model(self, ctx: RequestContext, model: str | None) -> str:
        resolved = self._resolve_served(model)
        # A tenant's adapter does not exist for other tenants (404, not 403: nothing to learn).
        owner = self._owners.owner(self._local_lora_dirs, resolved)
        if owner is not None and owner != ctx.tenant and resolved == (ctx.requested_model or resolved):
            raise GatewayError(404, f"The model '{resolved}' does not exist")
        return resolved

    def _resolve_served(self, model: str | None) -> str:
        if model is None:
            if len(self._model_cards) == 1:
                return next(iter(self._model_cards))
            raise GatewayError(400, f"'model' is required; available: {sorted(self._model_cards)}", param="model")
        base = get_base_model_id(model)
        if base not in self._model_cards:
            raise GatewayError(404, f"The model '{model}' does not exist")
        if model != base:
            lora_dir = self._local_lora_dirs.get(base)
            if lora_dir is not None:
                if not local_adapter_path(lora_dir, model):
                    raise GatewayError(404, f"The model '{model}' does not exist (no adapter '{get_lora_id(model)}')")
            elif base not in self._lora_paths:
                raise GatewayError(404, f"The model '{model}' does not exist ('{base}' serves no adapters)")
        return model

    # ------------------------------------------------------------------ generation routes

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completions")

    async def _start(self, request: Request, route: str) -> RequestContext:
        """Authenticate from the headers, then read the body (at most ``max_body_bytes``):
        nothing of an unauthenticated request is read or parsed."""
        ctx = RequestContext(route=route, body={}, headers={k.lower(): v for k, v in request.headers.items()})
        for hook in self._hooks:
            await hook.authenticate(ctx)
        ctx.body = parse_json_body(await read_body_capped(request, self._max_body_bytes))
        model = ctx.body.get("model")
        ctx.requested_model = model if isinstance(model, str) and model else None
        return ctx

    async def _admit(self, ctx: RequestContext, count: Any) -> None:
        """Count what the request will cost (only when a hook needs it) and run ``admit``."""
        if not self._admit_hooks:
            return
        ctx.prompt_tokens = await count()
        for hook in self._admit_hooks:
            await hook.admit(ctx)

    def _engine_body(self, ctx: RequestContext) -> dict[str, Any]:
        """The body the engine gets: a server-assigned request id (the response ``id`` is
        ``chatcmpl-<request id>``; a client cannot choose it), and usage always reported on
        streams so quotas and logs see the real token count (the usage chunk is dropped
        again when the client did not ask for it)."""
        body = {**ctx.body, "request_id": ctx.request_id}
        if ctx.stream and self._hooks:
            options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
            ctx.extra["client_wants_usage"] = bool(options.get("include_usage"))
            body["stream_options"] = {**options, "include_usage": True}
        return body

    async def _generate(self, request: Request, route: str) -> Response:
        ctx = RequestContext(route=route, body={}, headers={})
        try:
            ctx = await self._start(request, route)
            body = ctx.body
            check_common(body)
            (check_chat_body if route == "chat" else check_completion_body)(body)
            ctx.stream = bool(body.get("stream"))
            for hook in self._hooks:
                await hook.before_request(ctx)
            body = ctx.body
            model_id = self._resolve_model(ctx, body.get("model"))
            ctx.model = model_id
            limit = self._max_model_len.get(get_base_model_id(model_id))
            _positive_int(body, "max_tokens", limit)
            _positive_int(body, "max_completion_tokens", limit)
            await self._admit(ctx, lambda: self._tokens.count(get_base_model_id(model_id), route, ctx.body))
            request_cls = ChatCompletionRequest if route == "chat" else CompletionRequest
            try:
                parsed = request_cls.model_validate({**self._engine_body(ctx), "model": model_id})
            except ValidationError as exc:
                raise GatewayError(400, _validation_message(exc)) from None
            except (ValueError, TypeError) as exc:
                raise GatewayError(400, f"invalid request: {exc}") from None
            response = await self._call_engine(ctx, parsed, route, request)
        except GatewayError as exc:
            return self._fail(ctx, exc)
        except (OpenAIHTTPException, HTTPException) as exc:
            status = exc.status_code
            message = getattr(exc, "message", None) or getattr(exc, "detail", None) or str(exc)
            return self._fail(ctx, GatewayError(status, str(message), type=getattr(exc, "type", None)))
        except asyncio.CancelledError:
            ctx.status, ctx.error = 499, "client disconnected"
            self._finish(ctx)
            raise
        except Exception as exc:  # noqa: BLE001 - last resort; logged with the request id
            client_error = engine_client_error(exc)
            if client_error is not None:
                return self._fail(ctx, GatewayError(400, client_error))
            logger.exception("request %s failed", ctx.request_id)
            return self._fail(ctx, GatewayError(500, f"internal error ({type(exc).__name__}); request id {ctx.request_id}"))
        return response

    def _fail(self, ctx: RequestContext, exc: GatewayError) -> Response:
        ctx.status, ctx.error = exc.status, exc.message
        self._finish(ctx)
        # Headers hooks set before the failure (e.g. which canary variant failed) go out too.
        exc.headers = {**ctx.response_headers, **exc.headers}
        return error_response(exc, ctx.request_id)

    async def _call_engine(self, ctx: RequestContext, parsed, route: str, request: Request) -> Response:
        gen = self._get_response(body=parsed, call_method=route, raw_request=request)
        try:
            first, gen = await _peek_at_generator(gen)
        except StopAsyncIteration:
            raise GatewayError(500, "the engine returned no response") from None
        first_chunk = first[0] if isinstance(first, list) and first else first
        if isinstance(first_chunk, ErrorResponse):
            raise GatewayError(
                int(first_chunk.error.code or 400),
                first_chunk.error.message,
                code="context_length_exceeded" if "context length" in first_chunk.error.message else None,
            )
        headers = {"X-Request-Id": ctx.request_id, **ctx.response_headers}
        if isinstance(first_chunk, NON_STREAMING_RESPONSE_TYPES):
            payload = first_chunk.model_dump()
            if self._hooks:
                # Output rails scan the whole answer (linear, but ~ms per KB): off the loop.
                payload = await asyncio.to_thread(self._on_response, ctx, payload)
            ctx.usage = payload.get("usage")
            if self._hooks:
                ctx.output_text = [
                    (c.get("message") or {}).get("content") or c.get("text") or "" for c in payload.get("choices", [])
                ]
            self._finish(ctx)
            return JSONResponse(payload, headers=headers)
        ctx.first_chunk_at = time.perf_counter()
        body = self._stream_with_hooks(ctx, gen) if self._hooks else self._stream_plain(ctx, gen)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    def _on_response(self, ctx: RequestContext, payload: dict[str, Any]) -> dict[str, Any]:
        for hook in self._hooks:
            payload = hook.on_response(ctx, payload)
        return payload

    async def _stream_plain(self, ctx: RequestContext, gen: AsyncGenerator) -> AsyncGenerator[str, None]:
        """Fast path without hooks: the engine's SSE text passes through unparsed."""
        done = False
        try:
            async for item in gen:
                packet = _apply_openai_json_format(item)
                if packet.rstrip().endswith("data: [DONE]"):
                    done = True
                yield packet
            if not done:
                yield DONE
        except asyncio.CancelledError:
            ctx.status, ctx.error = 499, "client disconnected"
            raise
        finally:
            self._finish(ctx)

    async def _stream_with_hooks(self, ctx: RequestContext, gen: AsyncGenerator) -> AsyncGenerator[str, None]:
        """Parse each SSE event, run ``on_chunk`` hooks, record usage and text."""
        try:
            async for item in gen:
                out = []
                for event in _split_events(_apply_openai_json_format(item)):
                    data = event.removeprefix("data: ").strip()
                    if data == "[DONE]":
                        continue
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError:
                        out.append(event + "\n\n")
                        continue
                    for hook in self._chunk_hooks:
                        if chunk is None:
                            break
                        chunk = hook.on_chunk(ctx, chunk)
                    if chunk is None:
                        continue
                    self._record_chunk(ctx, chunk)
                    if chunk.get("usage") and not ctx.extra.get("client_wants_usage", True):
                        if not chunk.get("choices"):
                            continue  # the usage-only chunk the gateway asked for itself
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                    out.append(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n")
                if out:
                    yield "".join(out)
            tail = []
            for hook in self._chunk_hooks:
                tail += hook.end_stream(ctx)
            for chunk in tail:
                self._record_chunk(ctx, chunk)
            yield "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in tail) + DONE
        except asyncio.CancelledError:
            ctx.status, ctx.error = 499, "client disconnected"
            raise
        finally:
            self._finish(ctx)

    @staticmethod
    def _record_chunk(ctx: RequestContext, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            ctx.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            if piece:
                ctx.output_text.append(piece)

    def _finish(self, ctx: RequestContext) -> None:
        """Mark the request done and run ``after_response`` hooks in the background."""
        if ctx.finished_at is not None:
            return
        ctx.finished_at = time.perf_counter()
        if ctx.usage is None and ctx.output_text and ctx.route in ("chat", "completions"):
            # Cut off before the engine's usage chunk (client disconnect, error mid-stream):
            # one token per streamed text piece, so quotas and logs still charge what was sent.
            completion = len(ctx.output_text)
            prompt = int(ctx.prompt_tokens or 0)
            ctx.usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion, "estimated": True}
        for hook in self._hooks:
            if not overrides(hook, "after_response"):
                continue
            task = asyncio.get_running_loop().create_task(hook.after_response(ctx))
            self._background.add(task)
            task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("after_response hook failed: %r", task.exception())

    # ------------------------------------------------------------------ feedback, shutdown

    async def feedback(self, request: Request) -> Response:
        """``POST /v1/feedback``: ``{"response_id", "rating": "up"|"down", "comment", "correction"}``
        (``correction``: the wanted answer, with ``down`` only; validated by ``submit_feedback``) tied to a
        logged response (of the caller's tenant when a key hook sets one). Blocking LanceDB
        work runs off the event loop."""
        from llmops_ray.observe.request_log import FeedbackError, submit_feedback

        ctx = RequestContext(route="feedback", body={}, headers={})
        try:
            ctx = await self._start(request, "feedback")
            # The request log is written asynchronously: flush this replica's queue first so
            # that feedback on a response that just finished finds it.
            for hook in self._hooks:
                observer = getattr(hook, "observer", None)
                if observer is not None and hasattr(observer, "flush"):
                    await asyncio.to_thread(observer.flush, 10.0)
            key_id = getattr(ctx.principal, "key_id", None)
            stored = await asyncio.to_thread(submit_feedback, ctx.body, ctx.tenant, key_id)
        except GatewayError as exc:
            return error_response(exc, ctx.request_id)
        except FeedbackError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers={"X-Request-Id": ctx.request_id})
        except Exception as exc:  # noqa: BLE001
            logger.exception("feedback request %s failed", ctx.request_id)
            return error_response(GatewayError(500, f"internal error ({type(exc).__name__})"), ctx.request_id)
        return JSONResponse(stored, headers={"X-Request-Id": ctx.request_id})

    def __del__(self):
        """Replica shutdown (Serve calls it): close hooks that hold resources, so the request
        log flushes what is still queued. Idempotent (Python's GC may call it again)."""
        for hook in getattr(self, "_hooks", None) or []:
            close = getattr(hook, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - shutting down: log and go on
                    logger.exception("closing hook %r failed", hook)

    # ------------------------------------------------------------------ embeddings

    async def _get_embedder(self):
        async with self._embedder_lock:
            if self._embedder is None:
                from llmops_ray.kb.embed import load_embedder

                self._embedder = await asyncio.to_thread(load_embedder, self._embedding_source)
        return self._embedder

    async def embeddings(self, request: Request) -> Response:
        ctx = RequestContext(route="embeddings", body={}, headers={})
        try:
            ctx = await self._start(request, "embeddings")
            body = ctx.body
            check_common(body)
            texts, fmt = check_embeddings_body(body)
            for hook in self._hooks:
                await hook.before_request(ctx)
            model = ctx.body.get("model") or self._embedding_model_id
            if not self._embeddings_enabled or model != self._embedding_model_id:
                raise GatewayError(404, f"The model '{model}' does not exist or is not an embedding model")
            ctx.model = model
            embedder = await self._get_embedder()
            await self._admit(ctx, lambda: asyncio.to_thread(_count_tokens, embedder, texts))
            from llmops_ray.kb.embed import embed_texts

            vectors = await asyncio.to_thread(embed_texts, embedder, texts)
            tokens = ctx.prompt_tokens if ctx.prompt_tokens is not None else await asyncio.to_thread(
                _count_tokens, embedder, texts)
        except GatewayError as exc:
            return self._fail(ctx, exc)
        except Exception as exc:  # noqa: BLE001
            logger.exception("embeddings request %s failed", ctx.request_id)
            return self._fail(ctx, GatewayError(500, f"internal error ({type(exc).__name__}); request id {ctx.request_id}"))
        ctx.usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._finish(ctx)
        # Streamed in pieces: one JSON body of 2048 float vectors is ~15 MB, over what a Serve
        # replica may hand the proxy in one message (4 MiB); pieces of 64 vectors stay far below.
        return StreamingResponse(
            _embedding_body(vectors, fmt, ctx.model, ctx.usage),
            media_type="application/json",
            headers={"X-Request-Id": ctx.request_id, **ctx.response_headers},
        )


def _embedding_body(vectors: Any, fmt: str, model: str, usage: dict, per_piece: int = 64) -> Iterator[str]:
    """The OpenAI embeddings response as JSON text in pieces of ``per_piece`` vectors."""
    yield '{"object": "list", "data": ['
    for start in range(0, len(vectors), per_piece):
        items = []
        for i in range(start, min(start + per_piece, len(vectors))):
            vec = vectors[i].astype("<f4")
            emb = base64.b64encode(vec.tobytes()).decode() if fmt == "base64" else vec.tolist()
            items.append(json.dumps({"object": "embedding", "index": i, "embedding": emb}))
        yield ("," if start else "") + ",".join(items)
    yield "], " + json.dumps({"model": model, "usage": usage})[1:]


def _count_tokens(embedder: Any, texts: list[str]) -> int:
    tokenizer = getattr(embedder, "tokenizer", None)
    if tokenizer is None:
        return sum(len(t.split()) for t in texts)
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"])


def engine_client_error(exc: BaseException) -> str | None:
    """The message of a vLLM request-validation error (the client's fault), looking through
    Ray's wrapping (``RayTaskError.cause``) and exception chaining; None for anything else."""
    seen = 0
    while exc is not None and seen < 8:
        if type(exc).__name__ in _ENGINE_CLIENT_ERRORS:
            return str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else "invalid request"
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
        seen += 1
    return None

