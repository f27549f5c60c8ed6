"""Property-based fuzzing of the running gateway from OpenAI's published API description.

A bounded run of ``benchmarks/openapi_fuzz.py`` (the longer one lives there): schemathesis
generates bodies that fit OpenAI's schema and bodies that do not, for chat, completions,
embeddings and the model list, each sent with a valid key and without one, against one tiny
model behind the gateway with the key hook and the embeddings route. No response may be a
5xx, every error body must be OpenAI-shaped, and the app must still answer afterwards.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
APP = "openapi-fuzz-test"
MAX_EXAMPLES = 40
"""Cases per operation and generation mode (positive, negative); each is sent twice (with
and without a valid key): 4 x 2 x 40 x 2 = 640 requests, about 40 s on 2 cores (plus ~55 s of
app start)."""

pytest.importorskip("schemathesis")
_spec = importlib.util.spec_from_file_location("openapi_fuzz", REPO / "benchmarks" / "openapi_fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz  # dataclasses look their module up there
_spec.loader.exec_module(fuzz)


@pytest.fixture(scope="module")
def app(ray_session, tiny_model_dir, tmp_path_factory, serve_http_port):
    from ray import serve

    from llmops_ray.serve.app import start_app
    from llmops_ray.serve.keys import KeyStore

    assert fuzz.SPEC.is_file(), f"OpenAI's API description (subset) is missing: {fuzz.SPEC}"
    root = tmp_path_factory.mktemp("openapi-fuzz")
    key_db = root / "keys.db"
    api_key, _ = KeyStore(key_db).create("fuzz", name="openapi fuzz test")
    config = fuzz.app_config(APP, tiny_model_dir, serve_http_port, key_db)
    try:
        info = start_app(config, timeout_s=600)
    except BaseException:
        serve.delete(APP)  # a half-started app would hold the route prefix for the next module
        raise
    yield {"base_url": info["endpoint"], "api_key": api_key, "model": config.models[0].model_id,
           "embedding_model": config.gateway.embedding_model_id}
    serve.delete(APP)


def test_openai_schema_fuzz_gets_no_server_errors(app):
    report = fuzz.run_fuzz(app["base_url"], app["api_key"], app["model"], app["embedding_model"],
                           max_examples=MAX_EXAMPLES, seed=0)
    text = fuzz.format_report(report)
    print(text)
    assert report.requests >= 4 * 2 * MAX_EXAMPLES, text  # every operation was exercised
    assert report.server_errors == 0, text
    assert report.bad_error_bodies == 0, text
    assert report.still_answers, text
    statuses = report.summary()["statuses"]
    # Without a valid key nothing is served; with one, both answers and refusals happen.
    # ("unsent": a generated header the HTTP client refused to send.)
    assert all(s in (401, "unsent") for (_, auth), counts in report.counts.items() if auth == "nokey" for s in counts), text
    assert statuses.get("200") and statuses.get("400"), text
