"""Serve configs: the three shipped YAMLs load and build Ray Serve LLM ``LLMConfig``s."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_ray.config import UserError, build_config, read_yaml
from llmops_ray.serve.config import SERVE_CONFIGS_DIR, ServeAppConfig, expand_path, load_serve_config

SHIPPED = ["local_cpu", "gpu_vllm", "multi_model"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_yaml_starts_with_purpose_and_command(name):
    text = (SERVE_CONFIGS_DIR / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert f"serve run llmops_ray.serve.app:app_builder config=serve_configs/{name}.yaml" in header
    assert f"llmops serve --config serve_configs/{name}.yaml" in header


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_yaml_builds_llm_configs(name, workspace_dir):
    from ray.serve.llm import LLMConfig

    from llmops_ray.serve.llm import build_llm_config

    config = load_serve_config(name)
    for spec in config.models:
        llm = build_llm_config(spec)
        assert isinstance(llm, LLMConfig)
        assert llm.model_id == spec.model_id
        auto = llm.deployment_config["autoscaling_config"]
        assert auto["min_replicas"] == spec.autoscaling.min_replicas
        assert auto["max_replicas"] == spec.autoscaling.max_replicas
        assert auto["target_ongoing_requests"] == spec.autoscaling.target_ongoing_requests
        assert llm.deployment_config["ray_actor_options"]["num_cpus"] == spec.num_cpus
        assert llm.accelerator_config.kind == spec.accelerator
        if spec.lora is not None:
            assert llm.engine_kwargs["enable_lora"] is True
            assert llm.lora_config.max_num_adapters_per_replica == spec.lora.max_adapters_per_replica
            assert llm.lora_config.dynamic_lora_loading_path is None  # local dir: our loader
        source = llm.model_loading_config.model_source
        if spec.source.startswith("${LLMOPS_HOME}"):
            assert source == str(workspace_dir / "models" / "tiny-base")


def test_cpu_and_gpu_defaults_come_from_yaml():
    cpu = load_serve_config("local_cpu").models[0]
    assert cpu.accelerator == "cpu" and cpu.num_cpus == 0
    assert cpu.engine_kwargs["gpu_memory_utilization"] <= 0.2
    assert cpu.engine_kwargs["enforce_eager"] is True
    assert cpu.engine_kwargs["max_model_len"] == 1024
    gpu = load_serve_config("gpu_vllm").models[0]
    assert gpu.accelerator == "gpu"
    assert gpu.engine_kwargs["tensor_parallel_size"] == 1
    assert gpu.engine_kwargs["gpu_memory_utilization"] >= 0.8
    multi = load_serve_config("multi_model")
    assert [m.model_id for m in multi.models] == ["tiny-base", "tiny-chat"]
    assert multi.models[1].autoscaling.min_replicas == 0


def test_gpu_placement_and_accelerator_type():
    from llmops_ray.serve.llm import llm_config_dict

    data = read_yaml(SERVE_CONFIGS_DIR / "gpu_vllm.yaml")
    data["models"][0]["placement_group_config"] = {"bundles": [{"GPU": 1}, {"GPU": 1}], "strategy": "PACK"}
    spec = build_config(ServeAppConfig, data).models[0]
    d = llm_config_dict(spec)
    assert d["accelerator_type"] == "L40S"
    assert d["placement_group_config"]["strategy"] == "PACK"
    assert d["accelerator_config"] == {"kind": "gpu"}


def test_overrides_and_unknown_keys():
    config = load_serve_config("local_cpu", ["http.port=8123", "gateway.num_cpus=0.5"])
    assert config.http.port == 8123 and config.gateway.num_cpus == 0.5
    with pytest.raises(UserError, match="unknown key 'gateway.nmu_cpus'"):
        load_serve_config("local_cpu", ["gateway.nmu_cpus=1"])
    with pytest.raises(UserError):
        load_serve_config("no_such_config")


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"model_id": "a:b"}, "no ':'"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "max_replicas"),
        ({"autoscaling": {"min_replicas": -1}}, "min_replicas"),
        ({"accelerator": "tpu"}, "accelerator"),
    ],
)
def test_bad_model_specs_are_user_errors(patch, message):
    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"][0].update(patch)
    with pytest.raises(UserError, match=message):
        build_config(ServeAppConfig, data)


def test_duplicate_models_rejected():
    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(UserError, match="duplicate model_id"):
        build_config(ServeAppConfig, data)


def test_scale_to_zero_allowed():
    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"][0]["autoscaling"] = {"min_replicas": 0, "max_replicas": 2}
    assert build_config(ServeAppConfig, data).models[0].autoscaling.to_serve()["min_replicas"] == 0


def test_expand_path(workspace_dir, monkeypatch, tmp_path):
    assert expand_path("${LLMOPS_HOME}/models/x") == f"{workspace_dir}/models/x"
    (workspace_dir / "models" / "rel-model").mkdir(parents=True, exist_ok=True)
    assert expand_path("models/rel-model") == str(workspace_dir / "models" / "rel-model")
    assert expand_path("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    monkeypatch.setenv("MY_MODELS", str(tmp_path))
    assert expand_path("$MY_MODELS/m") == f"{tmp_path}/m"


def test_build_app_reports_missing_model_dir(tmp_path):
    from llmops_ray.serve.app import build_app

    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["models"][0]["source"] = str(tmp_path / "nope")
    with pytest.raises(UserError, match="does not exist"):
        build_app(build_config(ServeAppConfig, data))


def test_cli_serve_bad_input_exits_2(tmp_path):
    import subprocess
    import sys


    repo = Path(__file__).resolve().parents[2]
    env = {"LLMOPS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for args, needle in [
        (["serve", "--config", "no_such_config"], "no_such_config"),
        (["serve", "--config", "local_cpu"], "tiny-base"),  # empty workspace: no bootstrapped model
        (["serve", "--set", "gateway.bogus=1"], "unknown key"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "llmops_ray.cli", *args], capture_output=True, text=True,
                              env=env, cwd=repo, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("llmops: error:") and needle in lines[0], proc.stderr


# --------------------------------------------------------------------------- TLS (http.ssl_*)


def write_self_signed(directory: Path, name: str = "server", password: bytes | None = None,
                      hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts`` and its key (encrypted when ``password`` is set)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    sans = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / f"{name}.pem", directory / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return certfile, keyfile


def tls_config(**http) -> ServeAppConfig:
    data = read_yaml(SERVE_CONFIGS_DIR / "local_cpu.yaml")
    data["http"] = {"host": "127.0.0.1", "port": 8443, **http}
    return build_config(ServeAppConfig, data)


def test_tls_files_are_expanded_made_absolute_and_give_https(workspace_dir, monkeypatch):
    from ray.serve.config import HTTPOptions

    from llmops_ray.serve.app import endpoint

    certfile, keyfile = write_self_signed(workspace_dir / "tls")
    monkeypatch.setenv("MY_TLS", str(workspace_dir / "tls"))
    config = tls_config(ssl_certfile="${LLMOPS_HOME}/tls/server.pem", ssl_keyfile="$MY_TLS/server.key")
    assert config.http.ssl_certfile == str(certfile) and config.http.ssl_keyfile == str(keyfile)
    assert config.http.tls and endpoint(config) == "https://127.0.0.1:8443/v1"
    # A path relative to the workspace, as model paths are.
    assert tls_config(ssl_certfile="tls/server.pem", ssl_keyfile="tls/server.key").http.ssl_certfile == str(certfile)
    # The options are Ray's own field names (a Ray upgrade that renames them fails here).
    options = HTTPOptions.model_validate(config.http.to_serve())
    assert (options.ssl_certfile, options.ssl_keyfile, options.ssl_keyfile_password) == (str(certfile), str(keyfile),
                                                                                          None)
    plain = tls_config()
    assert not plain.http.tls and endpoint(plain) == "http://127.0.0.1:8443/v1"
    assert plain.http.to_serve() == {"host": "127.0.0.1", "port": 8443}


def test_tls_overrides_on_the_command_line(workspace_dir):
    certfile, keyfile = write_self_signed(workspace_dir / "tls-cli")
    config = load_serve_config("local_cpu", [f"http.ssl_certfile={certfile}", f"http.ssl_keyfile={keyfile}"])
    assert config.http.scheme == "https"


@pytest.mark.parametrize(
    "http, message",
    [
        ({"ssl_certfile": "CERT"}, "set both ssl_certfile and ssl_keyfile"),
        ({"ssl_keyfile": "KEY"}, "set both ssl_certfile and ssl_keyfile"),
        ({"ssl_certfile": "MISSING", "ssl_keyfile": "KEY"}, "'http.ssl_certfile': Value error, no such file: "),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "MISSING"}, "'http.ssl_keyfile': Value error, no such file: "),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "OTHER_KEY"}, "do not load as a PEM certificate and its key"),
        ({"ssl_certfile": "KEY", "ssl_keyfile": "KEY"}, "do not load as a PEM certificate and its key"),
        ({"ssl_keyfile_password": "pw"}, "ssl_keyfile_password needs ssl_keyfile"),
    ],
)
def test_tls_config_errors_are_one_line(tmp_path, http, message):
    certfile, keyfile = write_self_signed(tmp_path)
    _, other_key = write_self_signed(tmp_path, "other")
    paths = {"CERT": str(certfile), "KEY": str(keyfile), "OTHER_KEY": str(other_key),
             "MISSING": str(tmp_path / "missing.pem")}
    with pytest.raises(UserError) as info:
        tls_config(**{k: paths.get(v, v) for k, v in http.items()})
    text = str(info.value)
    assert message in text and "\n" not in text, text
    if "MISSING" in http.values():
        assert text.rstrip().endswith(str(tmp_path / "missing.pem"))


def test_encrypted_key_password_from_the_environment(tmp_path, monkeypatch):
    certfile, keyfile = write_self_signed(tmp_path, password=b"s3cret")
    files = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    with pytest.raises(UserError, match="do not load"):
        tls_config(**files)  # encrypted, no password
    with pytest.raises(UserError, match="do not load"):
        tls_config(**files, ssl_keyfile_password="wrong")
    with pytest.raises(UserError, match="environment variable LLMOPS_TEST_KEY_PW is not set"):
        tls_config(**files, ssl_keyfile_password="${LLMOPS_TEST_KEY_PW}")
    monkeypatch.setenv("LLMOPS_TEST_KEY_PW", "s3cret")
    config = tls_config(**files, ssl_keyfile_password="${LLMOPS_TEST_KEY_PW}")
    assert config.http.to_serve()["ssl_keyfile_password"] == "s3cret"
    # Never shown in dumps (pipeline fingerprints, printed configs) or reprs.
    assert "s3cret" not in config.model_dump_json() and "s3cret" not in repr(config)


@pytest.fixture
def https_server(tmp_path):
    """A one-thread HTTPS server answering every POST with 200, on a self-signed certificate."""
    import http.server
    import ssl
    import threading

    certfile, keyfile = write_self_signed(tmp_path / "server-tls")

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"https://127.0.0.1:{server.server_address[1]}/v1", "certfile": certfile}
    server.shutdown()
    server.server_close()


def test_wait_ready_verifies_https_against_the_configured_certificate(https_server, tmp_path):
    import time

    from llmops_ray.serve.app import wait_ready

    url = https_server["url"]
    assert wait_ready(url, "m", timeout_s=10, certfile=str(https_server["certfile"])) < 5
    # Another certificate, also for 127.0.0.1: refused at once (no waiting out the timeout).
    other, _ = write_self_signed(tmp_path / "other-tls")
    for certfile in (str(other), None):  # None: the system's CAs, which do not know a self-signed one
        start = time.monotonic()
        with pytest.raises(UserError, match="certificate does not verify"):
            wait_ready(url, "m", timeout_s=30, certfile=certfile)
        assert time.monotonic() - start < 10


def test_pinned_context_trusts_the_leaf_not_its_issuer(tmp_path):
    """A certificate chain file (leaf + CA): the probe pins the leaf; another leaf of the same
    CA does not pass even though the host name is not checked."""
    import contextlib
    import datetime
    import socket
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from llmops_ray.serve.app import pinned_tls_context

    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(cn, issuer_name=None, issuer_key=None, ca=False):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(issuer_key or key, hashes.SHA256()))
        return key, cert

    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    ca_key, ca = issue("test-ca", ca=True)
    files = {}
    for name in ("ours", "theirs"):
        key, cert = issue(f"{name}.example.com", ca.subject, ca_key)
        (tmp_path / f"{name}.pem").write_bytes(pem(cert) + pem(ca))
        (tmp_path / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        files[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")

    def handshake(server_name: str) -> None:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(*files[server_name])
        with socket.create_server(("127.0.0.1", 0)) as listener:
            def accept():
                conn, _ = listener.accept()
                with contextlib.suppress(ssl.SSLError, OSError):
                    server_ctx.wrap_socket(conn, server_side=True).close()
                conn.close()

            thread = threading.Thread(target=accept, daemon=True)
            thread.start()
            client_ctx = pinned_tls_context(str(files["ours"][0]))
            try:
                with socket.create_connection(listener.getsockname()) as sock, client_ctx.wrap_socket(sock):
                    pass
            finally:
                thread.join(5)

    handshake("ours")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("theirs")


def test_usage_examples_over_https_name_the_certificate():
    from llmops_ray.serve.app import usage_examples

    info = {"endpoint": "https://127.0.0.1:8443/v1", "model": "m", "api_key": "k", "ssl_certfile": "/etc/tls/c.pem"}
    text = usage_examples(info)
    assert "curl -N --cacert /etc/tls/c.pem https://127.0.0.1:8443/v1/chat/completions" in text
    assert 'http_client=httpx.Client(verify="/etc/tls/c.pem")' in text and "import httpx" in text
    plain = usage_examples({"endpoint": "http://127.0.0.1:8000/v1", "model": "m", "api_key": None})
    assert "--cacert" not in plain and "httpx" not in plain
