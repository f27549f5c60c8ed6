"""Property-based fuzzing of the gateway from OpenAI's own API description (schemathesis).

Generates requests for ``POST /chat/completions``, ``POST /completions``,
``POST /embeddings`` and ``GET /models`` from OpenAI's published OpenAPI document (MIT; the
subset of it these operations use is ``tests/data/openai-openapi-subset.yaml``, made by
``tests/tools/openapi_subset.py``; ``--spec`` takes the full document), both bodies that fit the schema (``positive``) and bodies
that do not (``negative``: wrong types, missing fields, raw bytes), and sends each one twice
as often as asked: with a valid API key, and with whatever ``Authorization`` header
schemathesis made up (none or a random bearer: never a valid key). Checks:

- no response has a status >= 500 (nor a streamed error event of a server error);
- every 4xx/5xx body has OpenAI's error shape ``{"error": {"message": str, "type": str, ...}}``;
- after the run the app still answers a normal chat request.

Only statuses and error shapes are checked, not schemathesis's response-schema conformance:
vLLM's answers carry fields OpenAI's schema does not list.

    .venv/bin/python benchmarks/openapi_fuzz.py                       # starts its own app
    .venv/bin/python benchmarks/openapi_fuzz.py --base-url http://127.0.0.1:8000/v1 \\
        --api-key sk-llmops-... --model demo [--max-examples 200]

Prints the status counts per operation and the failures; the last stdout line is one JSON
object with ``requests``, ``server_errors`` and ``bad_error_bodies``.
``tests/integration/test_openapi_fuzz.py`` runs a bounded version of the same in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "tests" / "data" / "openai-openapi-subset.yaml"
OPERATIONS = (("POST", "/chat/completions"), ("POST", "/completions"), ("POST", "/embeddings"), ("GET", "/models"))
AUTH_MODES = ("key", "nokey")
"""``key``: the valid key replaces any generated ``Authorization``; ``nokey``: the generated
header as is (absent or a random bearer)."""
# Generated requests that fit the schema reach vLLM: keep their work small without turning a
# malformed value into a valid one. Integers above these caps but below the HUGE bound become
# the cap; larger ones (and every non-integer) go out as generated, for the gateway's bounds.
MAX_TOKENS_CAP = 8
N_CAP = 2
HUGE = 1 << 16
TOKEN_KEYS = ("max_tokens", "max_completion_tokens")
MODEL_KEEP_FRACTION = 0.2
"""Share of generated string ``model`` values sent as generated (mostly unknown models: 404);
the rest name the served model, so that the rest of the body reaches the checks behind
model resolution and the engine."""


@dataclass
class Failure:
    operation: str
    auth: str
    status: int
    reason: str
    request: str
    """The request as a curl command line (headers and body; the key is filtered out)."""
    response: str
    """The start of the response body."""


@dataclass
class Report:
    counts: dict[tuple[str, str], Counter] = field(default_factory=dict)
    """Status counts per (operation, auth mode)."""
    failures: list[Failure] = field(default_factory=list)
    requests: int = 0
    server_errors: int = 0
    bad_error_bodies: int = 0
    client_errors: int = 0
    """Requests the fuzzer could not send (e.g. a body requests cannot serialise); not the app's fault."""
    still_answers: bool | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "server_errors": self.server_errors,
            "bad_error_bodies": self.bad_error_bodies,
            "unsent": self.client_errors,
            "still_answers": self.still_answers,
            "seconds": round(self.seconds, 1),
            "statuses": {str(k): v for k, v in sorted(sum(self.counts.values(), Counter()).items(), key=str)},
        }


def load_schema(spec: Path = SPEC):
    """OpenAI's schema (its paths lack the ``/v1`` prefix: requests go to a base URL ending in
    ``/v1``)."""
    import schemathesis

    return schemathesis.openapi.from_path(str(spec))


def error_shape_problem(status: int, text: str) -> str | None:
    """Why an error response's body is not of OpenAI's error shape (None when it is)."""
    try:
        body = json.loads(text)
    except ValueError:
        return "error body is not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "error body has no 'error' object"
    for key in ("message", "type"):
        if not isinstance(error.get(key), str):
            return f"error.{key} is not a string"
    return None


def stream_server_error(text: str) -> str | None:
    """A server error sent inside a 200 SSE stream (``data: {"error": {...}}`` of code >= 500)."""
    for line in text.splitlines():
        if not line.startswith("data: {"):
            continue
        try:
            event = json.loads(line[len("data: "):])
        except ValueError:
            continue
        error = event.get("error") if isinstance(event, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            if (isinstance(code, int) and code >= 500) or error.get("type") in ("server_error", "InternalServerError"):
                return f"stream error event: {json.dumps(error)[:300]}"
    return None


def adapt_body(body: Any, path: str, model: str, embedding_model: str, rng: random.Random) -> Any:
    """Keep a generated body cheap to serve: see :data:`MAX_TOKENS_CAP`, :data:`N_CAP` and
    :data:`MODEL_KEEP_FRACTION`. Malformed values are never repaired."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if isinstance(body.get("model"), str) and rng.random() >= MODEL_KEEP_FRACTION:
        body["model"] = embedding_model if path == "/embeddings" else model
    for key, cap in [(k, MAX_TOKENS_CAP) for k in TOKEN_KEYS] + [("n", N_CAP), ("best_of", N_CAP)]:
        value = body.get(key)
        if type(value) is int and cap < value <= HUGE:
            body[key] = cap
    return body


def check_response(report: Report, operation: str, auth: str, status: int, text: str, content_type: str,
                   request: str) -> None:
    """Count one response and record why it fails the checks, if it does."""
    report.requests += 1
    report.counts.setdefault((operation, auth), Counter())[status] += 1
    reason = None
    if status >= 500:
        report.server_errors += 1
        reason = "server error"
        problem = error_shape_problem(status, text)
        if problem:
            report.bad_error_bodies += 1
            reason += f"; {problem}"
    elif status >= 400:
        reason = error_shape_problem(status, text)
        if reason:
            report.bad_error_bodies += 1
    elif "text/event-stream" in content_type:
        reason = stream_server_error(text)
        if reason:
            report.server_errors += 1
    if reason:
        report.failures.append(Failure(operation, auth, status, reason, request, text[:2000]))


def fuzz_operation(schema, method: str, path: str, report: Report, *, base_url: str, api_key: str | None,
                   model: str, embedding_model: str, max_examples: int, seed: int, timeout_s: float = 120.0) -> None:
    """Generate ``max_examples`` cases per generation mode for one operation and send each with
    every auth mode (see :data:`AUTH_MODES`)."""
    import requests
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from schemathesis import GenerationMode

    operation = schema[path][method]
    name = f"{method} {path}"
    rng = random.Random(seed)
    session = requests.Session()

    def send(case) -> None:
        case.body = adapt_body(case.body, path, model, embedding_model, rng)
        generated = dict(case.headers or {})
        for auth in AUTH_MODES:
            headers = dict(generated)
            if auth == "key":
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if api_key:
                    headers["Authorization"] = f"Bearer {api_key}"
            # Overriding, not merging: the "key" mode must not keep a generated Authorization.
            case.headers = headers
            try:
                curl = case.as_curl_command(base_url=base_url)
            except Exception:  # noqa: BLE001 - only for the report
                curl = f"{method} {path} {case.body!r}"
            try:
                response = case.call(base_url=base_url, session=session, timeout=timeout_s)
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
                # No answer, or the connection dropped: the app's fault, counted as a server error.
                label = "timeout" if isinstance(exc, requests.exceptions.Timeout) else "no connection"
                report.requests += 1
                report.server_errors += 1
                report.counts.setdefault((name, auth), Counter())[label] += 1
                report.failures.append(Failure(name, auth, 0, f"{label}: {exc}"[:300], curl, ""))
                continue
            except (TypeError, ValueError, UnicodeError, requests.exceptions.InvalidHeader,
                    requests.exceptions.InvalidJSONError, requests.exceptions.InvalidURL):
                # The client could not build the request (e.g. NaN in a body, a header value
                # requests refuses): nothing reached the app.
                report.client_errors += 1
                report.counts.setdefault((name, auth), Counter())["unsent"] += 1
                continue
            check_response(report, name, auth, response.status_code, response.text,
                           response.headers.get("content-type", ""), curl)

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        # No shrinking and no example database: every response is counted, none raises.
        @hypothesis_seed(seed)
        @settings(max_examples=max_examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            send(case)

        run()


def chat_answers(base_url: str, api_key: str | None, model: str, timeout_s: float = 120.0) -> bool:
    """Whether a normal chat request still gets a 200 with a choice."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hello there"}]}
    try:
        response = httpx.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and bool(response.json().get("choices"))


def run_fuzz(base_url: str, api_key: str | None, model: str, embedding_model: str = "all-minilm-l6-v2",
             max_examples: int = 200, seed: int = 0, operations=OPERATIONS, spec: Path = SPEC) -> Report:
    """Fuzz every operation of ``operations`` against ``base_url`` (ending in ``/v1``)."""
    report = Report()
    start = time.monotonic()
    schema = load_schema(spec)
    for method, path in operations:
        fuzz_operation(schema, method, path, report, base_url=base_url, api_key=api_key, model=model,
                       embedding_model=embedding_model, max_examples=max_examples, seed=seed)
    report.still_answers = chat_answers(base_url, api_key, model)
    report.seconds = time.monotonic() - start
    return report


def format_report(report: Report) -> str:
    statuses = sorted({str(s) for c in report.counts.values() for s in c})
    rows = [(op, auth, *(counts.get(int(s) if s.isdigit() else s, 0) for s in statuses), sum(counts.values()))
            for (op, auth), counts in sorted(report.counts.items())]
    headers = ("operation", "auth", *statuses, "total")
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    lines = [fmt.format(*headers)] + [fmt.format(*r) for r in rows]
    # One line per distinct failure (operation, status, reason), with its first request.
    seen: dict[tuple, int] = Counter()
    firsts: dict[tuple, Failure] = {}
    for f in report.failures:
        key = (f.operation, f.status, f.reason)
        seen[key] += 1
        firsts.setdefault(key, f)
    if firsts:
        lines.append(f"\n{len(report.failures)} failures, {len(firsts)} distinct:")
    for key, f in firsts.items():
        lines.append(f"- {f.operation} [{f.auth}] {f.status}: {f.reason} (x{seen[key]})\n    request: {f.request[:600]}"
                     f"\n    response: {f.response[:400]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- an app of our own


def app_config(name: str, model_dir: Path, port: int, key_db: Path):
    """A one-model app behind the gateway with the key hook and the embeddings route: what the
    fuzzer runs against when no ``--base-url`` is given (and the suite's bounded run)."""
    from llmops_ray.config import build_config
    from llmops_ray.serve.config import ServeAppConfig

    engine = {"max_model_len": 512, "kv_cache_memory_bytes": 128 * 2**20, "enforce_eager": True, "dtype": "bfloat16"}
    return build_config(ServeAppConfig, {
        "name": name,
        "http": {"host": "127.0.0.1", "port": port},
        "gateway": {
            "num_cpus": 0.1,
            "embeddings": True,
            "hooks": [{"path": "llmops_ray.serve.keys:ApiKeyHook", "kwargs": {"limiter": "local", "db_path": str(key_db)}}],
        },
        "models": [{
            "model_id": "tiny", "source": str(model_dir), "num_cpus": 0,
            # vLLM-CPU reserves 1 CPU per engine by default: the gateway would not fit 2 CPUs.
            "placement_group_config": {"bundles": [{"CPU": 0.25}], "strategy": "PACK"},
            "engine_kwargs": engine,
        }],
    })


def build_tiny_model(out: Path) -> Path:
    """The suite's tiny random Llama (2 layers, vocab 1024): seconds to build, fast to serve."""
    from llmops_ray.models.base import TinyModelConfig, build_random_model_dir

    if (out / "config.json").exists():
        return out
    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "llmops_ray").rglob("*.py"))]
    return build_random_model_dir(texts, out, TinyModelConfig(vocab_size=1024, num_hidden_layers=2, intermediate_size=512))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="a running gateway, ending in /v1 (default: start an app here)")
    parser.add_argument("--api-key", help="a valid key of that gateway (omit when it checks none)")
    parser.add_argument("--model", default="tiny", help="a served chat/completions model")
    parser.add_argument("--embedding-model", default="all-minilm-l6-v2")
    parser.add_argument("--max-examples", type=int, default=200, help="cases per operation and generation mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", type=Path, default=SPEC,
                        help="OpenAI's OpenAPI document (default: the subset in tests/data; the full one works too)")
    args = parser.parse_args()

    if args.base_url:
        report = run_fuzz(args.base_url.rstrip("/"), args.api_key, args.model, args.embedding_model,
                          args.max_examples, args.seed, spec=args.spec)
    else:
        report = run_own_app(args)
    print(format_report(report))
    print(json.dumps(report.summary()))


def run_own_app(args) -> Report:
    """Start a Ray of its own, the :func:`app_config` app on it, fuzz, and stop both."""
    import ray
    from ray import serve

    from llmops_ray.cluster import init_ray
    from llmops_ray.serve.app import start_app
    from llmops_ray.serve.keys import KeyStore

    work = Path(os.environ.get("LLMOPS_BENCH_DIR") or tempfile.mkdtemp(prefix="openapi-fuzz-"))
    os.environ.setdefault("LLMOPS_HOME", str(work / "home"))
    model_dir = build_tiny_model(work / "tiny-llama")
    key_db = work / "keys.db"
    api_key, _ = KeyStore(key_db).create("fuzz", name="openapi fuzz")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    init_ray(num_cpus=os.cpu_count() or 2, log_to_driver=False)
    config = app_config("openapi-fuzz", model_dir, port, key_db)
    try:
        info = start_app(config, timeout_s=900)
        return run_fuzz(info["endpoint"], api_key, "tiny", config.gateway.embedding_model_id,
                        args.max_examples, args.seed, spec=args.spec)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
