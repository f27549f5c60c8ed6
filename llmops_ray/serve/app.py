"""Build, run and deploy the Serve app: our gateway in front of vLLM model deployments.

* :func:`build_app` -- ``ServeAppConfig`` -> ``serve.Application`` (nothing started).
* :func:`app_builder` -- the same for ``serve run llmops_ray.serve.app:app_builder config=FILE``.
* :func:`start_app` -- start it on the connected Ray (``serve.run``), wait until a completion
  answers, return the connection info.
* :func:`deploy_detached` -- for ``jobs/deploy.py``, ``llmops serve --detach`` and the demo:
  the app keeps running after the calling process exits; ``serve shutdown`` / ``ray stop``
  (``make down``) stop it.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from llmops_ray.config import UserError
from llmops_ray.serve.config import KEY_HOOK_PATHS, ServeAppConfig, load_serve_config

DASHBOARD_URL = "http://127.0.0.1:8265"


def gateway_settings(config: ServeAppConfig) -> dict[str, Any]:
    """What the gateway replica needs to know about the models (plain, picklable data)."""
    return {
        "local_lora_dirs": {
            m.model_id: m.lora.local_dir() for m in config.models if m.lora is not None and not m.lora.is_remote()
        },
        "max_model_len": {m.model_id: m.max_model_len() for m in config.models if m.max_model_len()},
        "embeddings": config.gateway.embeddings,
        "embedding_model_id": config.gateway.embedding_model_id,
        "embedding_model_source": config.gateway.embedding_model_source,
        "hooks": [h.model_dump() for h in config.gateway.hooks],
        "max_body_bytes": config.gateway.max_body_bytes,
        "auth": config.gateway.auth,
        # Tokenizers count prompts for quota reservations (the same source vLLM loads).
        "tokenizer_sources": {m.model_id: m.resolved_source() for m in config.models},
    }


def check_sources(config: ServeAppConfig) -> None:
    """Fail early (UserError) when a local model directory is missing."""
    from llmops_ray.models.base import check_model_source

    for model in config.models:
        source = model.resolved_source()
        try:
            check_model_source(source)
        except UserError as exc:
            hint = " (run `llmops model bootstrap` first)" if "tiny-base" in source else ""
            raise UserError(f"model {model.model_id!r}: {exc}{hint}") from None


def build_app(config: ServeAppConfig):
    """The Serve application: one LLM deployment per model + the gateway ingress."""
    from ray import serve
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import make_fastapi_ingress

    from llmops_ray.common.ray_compat import to_model_metadata

    from llmops_ray.serve.gateway import ENDPOINTS, Gateway, build_fastapi_app
    from llmops_ray.common.gateway_hooks import hook_deployments
    from llmops_ray.serve.llm import build_llm_config
    from llmops_ray.serve.server import GatewayLLMServer

    check_sources(config)
    deployments, cards, lora_paths = {}, {}, {}
    for spec in config.models:
        llm_config = build_llm_config(spec)
        bind = {"first_chunk_immediate": spec.first_chunk_immediate, "meter_usage": spec.meter_usage,
                "single_process_engine": spec.single_process_engine}
        if spec.lora is not None and not spec.lora.is_remote():
            bind["local_lora_dir"] = spec.lora.local_dir()
        if spec.lora is not None and spec.lora.is_remote():
            lora_paths[spec.model_id] = llm_config.lora_config.dynamic_lora_loading_path
        deployments[spec.model_id] = build_llm_deployment(
            llm_config, deployment_cls=GatewayLLMServer, bind_kwargs=bind, name_prefix="LLM:"
        )
        cards[spec.model_id] = to_model_metadata(spec.model_id, llm_config)

    ingress_cls = make_fastapi_ingress(Gateway, endpoint_map=ENDPOINTS, app=build_fastapi_app())
    gw = config.gateway
    settings = gateway_settings(config)
    # Deployments the hooks need (the RAG retriever): bound here, Serve deploys them with
    # the app; the gateway ignores this key, hooks find them by name.
    settings["hook_deployments"] = hook_deployments(settings["hooks"])
    return serve.deployment(
        ingress_cls,
        name="Gateway",
        num_replicas=gw.replicas,
        max_ongoing_requests=gw.max_ongoing_requests,
        ray_actor_options={"num_cpus": gw.num_cpus},
    ).bind(
        llm_deployments=deployments,
        model_cards=cards,
        lora_paths=lora_paths,
        settings=settings,
    )


def app_builder(args: dict[str, str]):
    """Builder for ``serve run llmops_ray.serve.app:app_builder config=serve_configs/local_cpu.yaml``."""
    args = dict(args or {})
    path = args.pop("config", "local_cpu")
    overrides = [f"{k}={v}" for k, v in args.items()]
    return build_app(load_serve_config(path, overrides))


def endpoint(config: ServeAppConfig) -> str:
    """Base URL of the OpenAI API (``https://`` when the config sets a certificate)."""
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    prefix = config.route_prefix.rstrip("/")
    return f"{config.http.scheme}://{host}:{config.http.port}{prefix}/v1"


_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def pinned_tls_context(certfile: str) -> ssl.SSLContext:
    """A client context that trusts exactly the first (leaf) certificate of ``certfile``.

    For our own probe of the proxy we just configured: it connects to ``127.0.0.1`` also when
    the certificate names a public host, so the host name is not checked; the trust anchor
    is the leaf itself (partial-chain verification), not its issuer, so no other certificate
    of the same CA passes.
    """
    try:
        text = Path(certfile).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise UserError(f"{certfile}: {exc.strerror}") from None
    leaf = _PEM_CERT_RE.search(text)
    if leaf is None:
        raise UserError(f"{certfile}: no PEM certificate in it")
    context = ssl.create_default_context(cadata=leaf.group(0))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def wait_ready(base_url: str, model: str, timeout_s: float = 600.0, api_key: str | None = None,
               route: str = "completions", certfile: str | None = None) -> float:
    """Poll until ``model`` answers a 1-token request on ``route`` (``completions``, or
    ``chat/completions`` to go through the whole gateway: keys, rails, stacks, RAG).
    ``/v1/models`` answers long before the engine does, so only an answer counts.

    An ``https://`` URL is verified against ``certfile`` (the app's ``http.ssl_certfile``,
    pinned: :func:`pinned_tls_context`) or, without it, the system's CAs and the host name.

    Returns the seconds waited; raises ``TimeoutError``, or ``UserError`` when the app is up
    and refuses the request (400/401/403) or its certificate does not verify: waiting would
    not help.
    """
    context = pinned_tls_context(certfile) if certfile and base_url.startswith("https://") else None
    start = time.monotonic()
    if route == "completions":
        body: dict[str, Any] = {"model": model, "prompt": "ready", "max_tokens": 1}
    else:
        body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "What is the warranty period?"}]}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    payload = json.dumps(body).encode()
    last = "no answer"
    while time.monotonic() - start < timeout_s:
        req = urllib.request.Request(f"{base_url}/{route}", data=payload, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60, context=context) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:500].decode(errors='replace')}"
            if exc.code in (400, 401, 403):
                raise UserError(f"{base_url} refused the readiness request for model {model!r}: {last}") from None
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
            if isinstance(getattr(exc, "reason", exc), ssl.SSLCertVerificationError):
                raise UserError(f"{base_url}: the server's certificate does not verify: {last}") from None
        time.sleep(2.0)
    raise TimeoutError(f"{base_url} did not serve {model!r} within {timeout_s:.0f} s (last: {last})")


def key_hook(config: ServeAppConfig):
    """The app's API-key hook spec, or None when the app checks no keys."""
    return next((h for h in config.gateway.hooks if h.path in KEY_HOOK_PATHS), None)


@contextlib.contextmanager
def readiness_key(config: ServeAppConfig, model: str):
    """A key for the readiness probe of an app that checks keys: created in the app's key
    store for ``model`` only, revoked on exit (the audit log records both). Yields None when
    the app checks no keys."""
    hook = key_hook(config)
    if hook is None:
        yield None
        return
    from llmops_ray.serve.keys import get_store

    store = get_store(hook.kwargs.get("db_path"))
    plaintext, info = store.create("llmops-deploy", models=[model], name=f"readiness probe of app {config.name}")
    try:
        yield plaintext
    finally:
        store.revoke(info.key_id)


def start_app(config: ServeAppConfig, wait: bool = True, timeout_s: float = 900.0) -> dict[str, Any]:
    """Start (or upgrade) the app on the connected Ray and return its connection info.

    Ray must already be initialised (``init_ray``); Serve starts on ``config.http``.
    """
    from ray import serve

    from llmops_ray.common.ray_compat import serve_http_certfile

    app = build_app(config)
    serve.start(http_options=config.http.to_serve())
    # A running Serve keeps the HTTP options it started with (serve.start only warns), so an
    # app configured for HTTPS would be served in clear text, or with another certificate.
    running = serve_http_certfile()
    if running != config.http.ssl_certfile:
        now = f"HTTPS with {running}" if running else "plain HTTP"
        want = f"HTTPS with {config.http.ssl_certfile}" if config.http.tls else "plain HTTP"
        raise UserError(f"Serve already runs with {now}, this config asks for {want}; the HTTP options apply "
                        "only when Serve starts: stop it first (`serve shutdown -y`)")
    serve.run(app, name=config.name, route_prefix=config.route_prefix, blocking=False)
    info = {
        "endpoint": endpoint(config),
        "api_key": None,
        "model": config.models[0].model_id,
        "dashboard": DASHBOARD_URL,
    }
    if config.http.tls:
        info["ssl_certfile"] = config.http.ssl_certfile  # what clients of a self-signed certificate verify with
    if wait:
        with readiness_key(config, info["model"]) as key:
            info["ready_after_s"] = round(wait_ready(info["endpoint"], info["model"], timeout_s, api_key=key,
                                                     certfile=config.http.ssl_certfile), 1)
    return info


def deploy_detached(
    config: ServeAppConfig | str = "local_cpu", overrides=(), address: str | None = None, wait: bool = True
) -> dict[str, Any]:
    """Deploy to a running Ray cluster (``RAY_ADDRESS`` or the local head) and return
    ``{"endpoint", "api_key", "model", "dashboard"}`` (and ``ssl_certfile`` over HTTPS); the
    app outlives this process."""
    import ray

    from llmops_ray.cluster import apply_process_env, cluster_address, runtime_env

    if not isinstance(config, ServeAppConfig):
        config = load_serve_config(config, overrides)
    apply_process_env()
    if not ray.is_initialized():
        target = address or cluster_address() or "auto"
        try:
            ray.init(address=target, runtime_env=runtime_env(), namespace="serve", log_to_driver=False)
        except ConnectionError as exc:
            raise UserError(f"no running Ray cluster at {target!r} (start one with `ray start --head`): {exc}") from None
    info = start_app(config, wait=wait)
    info.pop("ready_after_s", None)
    return info


def usage_examples(info: dict[str, Any]) -> str:
    """A curl and an ``openai`` client example for the running app (printed by the demo)."""
    url, model = info["endpoint"], info["model"]
    key = info.get("api_key") or "none"
    auth = f' -H "Authorization: Bearer {key}"' if info.get("api_key") else ""
    # A self-signed certificate: clients verify the server against the certificate file itself
    # (with one from a public CA the system's trust store suffices and the flags can go).
    cert = info.get("ssl_certfile") if url.startswith("https://") else None
    cacert = f" --cacert {cert}" if cert else ""
    http_client = f", http_client=httpx.Client(verify=\"{cert}\")" if cert else ""
    return (
        "# curl (streaming chat):\n"
        f"curl -N{cacert} {url}/chat/completions -H 'Content-Type: application/json'{auth} \\\n"
        f"  -d '{{\"model\": \"{model}\", \"stream\": true, \"max_tokens\": 32, "
        "\"messages\": [{\"role\": \"user\", \"content\": \"What is Ray Serve?\"}]}'\n"
        "# openai client:\n"
        "python - <<'PY'\n"
        + ("import httpx\n" if cert else "")
        + "from openai import OpenAI\n"
        f"client = OpenAI(base_url=\"{url}\", api_key=\"{key}\"{http_client})\n"
        f"r = client.chat.completions.create(model=\"{model}\", max_tokens=32,\n"
        "    messages=[{\"role\": \"user\", \"content\": \"What is Ray Serve?\"}])\n"
        "print(r.choices[0].message.content)\n"
        "PY"
    )
