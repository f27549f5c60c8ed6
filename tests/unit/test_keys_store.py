"""API keys: hashed storage, verify (401), revoke, model permission (403), CLI, concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3

import pytest

from llmops_ray.config import UserError
from llmops_ray.serve.keys import AuthError, KeyStore, check_model, hash_key, model_allowed, parse_bearer


@pytest.fixture()
def store(tmp_path) -> KeyStore:
    return KeyStore(tmp_path / "keys.db")


def test_create_stores_only_the_hash(store):
    plaintext, info = store.create("acme", rpm=60, tpm=1000, models=["tiny", "a,b"])
    assert plaintext.startswith("sk-llmops-" + info.key_id + "-")
    assert info.tenant == "acme" and info.rpm == 60 and info.tpm == 1000 and info.models == ("tiny", "a", "b")
    raw = store.path.read_bytes()
    # The secret is URL-safe base64, which may itself contain "-": cut at the known prefix.
    secret = plaintext[len("sk-llmops-" + info.key_id + "-"):]
    assert plaintext.encode() not in raw and secret.encode() not in raw
    rows = sqlite3.connect(store.path).execute("SELECT key_hash FROM api_keys").fetchall()
    assert rows == [(hash_key(plaintext),)]


def test_verify_valid_missing_invalid_revoked(store):
    plaintext, info = store.create("acme")
    assert store.verify(f"Bearer {plaintext}") == info
    assert store.verify(plaintext).key_id == info.key_id
    for bad in (None, "", "Bearer ", "Basic abc"):
        with pytest.raises(AuthError) as exc:
            store.verify(bad)
        assert exc.value.status == 401
    for bad in (plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"), "Bearer sk-llmops-000000000000-" + "x" * 43,
                "Bearer not-a-key"):
        with pytest.raises(AuthError) as exc:
            store.verify(bad)
        assert exc.value.status == 401 and exc.value.code == "invalid_api_key"
    store.revoke(info.key_id)
    with pytest.raises(AuthError) as exc:
        store.verify(f"Bearer {plaintext}")
    assert exc.value.status == 401 and "revoked" in exc.value.message
    assert exc.value.to_body()["error"]["type"] == "authentication_error"
    assert exc.value.headers == {"WWW-Authenticate": "Bearer"}


def test_revoke_errors_and_list(store):
    _, a = store.create("acme")
    _, b = store.create("globex", models=["m1"])
    with pytest.raises(UserError):
        store.revoke("ffffffffffff")
    store.revoke(a.key_id)
    with pytest.raises(UserError, match="already revoked"):
        store.revoke(a.key_id)
    assert {k.key_id for k in store.list()} == {a.key_id, b.key_id}
    assert [k.key_id for k in store.list(include_revoked=False)] == [b.key_id]
    assert [k.key_id for k in store.list(tenant="globex")] == [b.key_id]


@pytest.mark.parametrize("tenant,rpm", [("", None), ("bad tenant", None), ("ok", 0), ("ok", -5)])
def test_create_rejects_bad_input(store, tenant, rpm):
    with pytest.raises(UserError):
        store.create(tenant, rpm=rpm)
    assert store.list() == []


def test_model_permission(store):
    _, limited = store.create("acme", models=["tiny", "stack-a", "qwen*"])
    _, anything = store.create("acme")
    assert model_allowed(anything, "whatever")
    for ok in ("tiny", "tiny:adapter-1", "stack-a@production", "qwen2.5-0.5b"):
        check_model(limited, ok)
    with pytest.raises(AuthError) as exc:
        check_model(limited, "other-model")
    assert exc.value.status == 403 and exc.value.code == "model_not_allowed"
    assert exc.value.to_body()["error"]["type"] == "permission_error"


def test_parse_bearer():
    assert parse_bearer("Bearer sk-llmops-x") == "sk-llmops-x"
    assert parse_bearer("bearer   sk-llmops-x ") == "sk-llmops-x"
    assert parse_bearer("Token abc") is None


def _create_many(path: str, tenant: str, n: int, queue) -> None:
    store = KeyStore(path)
    queue.put([store.create(tenant)[1].key_id for _ in range(n)])


def test_concurrent_processes_create_keys(tmp_path):
    path = str(tmp_path / "keys.db")
    KeyStore(path)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_create_many, args=(path, f"t{i}", 15, queue)) for i in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in queue.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(ids)) == 60
    assert {k.key_id for k in KeyStore(path).list()} == set(ids)


def test_cli_create_list_revoke_and_audit(workspace_dir, capsys):
    from llmops_ray.cli import main
    from llmops_ray.common.audit import read_audit
    from llmops_ray.serve.keys import verify

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
        out, err = capsys.readouterr()
        return exc.value.code, out, err

    rc, out, err = run("keys", "create", "--tenant", "cli-tenant", "--rpm", "5", "--tpm", "500", "--models", "tiny", "--models", "x,y")
    assert rc == 0 and "shown only once" in err
    created = json.loads(out.strip().splitlines()[-1])
    assert created["tenant"] == "cli-tenant" and created["models"] == ["tiny", "x", "y"]
    assert verify(f"Bearer {created['api_key']}").key_id == created["key_id"]
    rc, out, _ = run("keys", "list", "--tenant", "cli-tenant")
    listed = [json.loads(line) for line in out.strip().splitlines()]
    assert rc == 0 and [k["key_id"] for k in listed] == [created["key_id"]]
    assert all("api_key" not in k and "key_hash" not in k for k in listed)
    rc, out, _ = run("keys", "revoke", created["key_id"])
    assert rc == 0 and json.loads(out)["revoked_at"]
    rc, _, err = run("keys", "revoke", created["key_id"])
    assert rc == 2 and err.startswith("llmops: error:")
    rc, _, err = run("keys", "create", "--tenant", "x", "--rpm", "0")
    assert rc == 2
    events = [r["event"] for r in read_audit(event="key", key_id=created["key_id"])]
    assert events == ["key.created", "key.revoked"]
    assert created["api_key"] not in (workspace_dir / "audit" / "audit.jsonl").read_text()


def test_store_of_an_older_release_gains_the_limit_columns(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, tenant TEXT NOT NULL,"
        " rpm INTEGER, tpm INTEGER, models TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',"
        " created_at TEXT NOT NULL, revoked_at TEXT);"
        "INSERT INTO api_keys VALUES ('0123456789ab', 'h', 'acme', 5, NULL, '', '', '2026-01-01', NULL);"
    )
    conn.commit()
    conn.close()
    store = KeyStore(db)
    old = store.get("0123456789ab")
    assert old.rpm == 5 and old.tokens_per_day is None and old.max_concurrent is None
    _, new = store.create("acme", tokens_per_day=1000, tokens_per_month=20_000, max_concurrent=2, max_tokens=64)
    assert (new.tokens_per_day, new.tokens_per_month, new.max_concurrent, new.max_tokens) == (1000, 20_000, 2, 64)
    with pytest.raises(UserError, match="--max-concurrent"):
        store.create("acme", max_concurrent=0)
