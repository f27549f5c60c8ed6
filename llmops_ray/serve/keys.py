"""API keys and tenants: create, list, revoke, verify (401) and per-model permission (403).

Keys look like ``sk-llmops-<key_id>-<secret>``: ``key_id`` (12 hex characters) is public
and names the key in lists, logs and the audit trail; ``secret`` (43 URL-safe characters,
256 bits) is shown once, at creation, and never stored. The store keeps
``sha256("llmops-key-v1:" + key)``: a key is 256 random bits, so a fast hash is as safe as
a slow KDF against guessing and keeps ``verify`` at tens of microseconds on every request.
Verification looks the row up by ``key_id`` and compares hashes in constant time.

Storage: SQLite at ``<workspace>/keys/keys.db`` (rollback journal, not WAL, so it also
works on a shared filesystem; ``busy_timeout`` serialises concurrent writers from several
processes). ``verify`` reads the row on every call (no cache), so a revocation takes
effect on the next request in every gateway replica.

Errors are :class:`AuthError` (``status`` 401/403, OpenAI ``code``), which the gateway
turns into its own error response.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import Field

from llmops_ray.config import StrictModel, UserError, workspace_path

KEY_PREFIX = "sk-llmops-"
_KEY_RE = re.compile(r"^sk-llmops-([0-9a-f]{12})-([A-Za-z0-9_-]{20,128})$")
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HASH_DOMAIN = b"llmops-key-v1:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    rpm        INTEGER,
    tpm        INTEGER,
    models     TEXT NOT NULL DEFAULT '',
    name       TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys(tenant);
"""


class AuthError(Exception):
    """401 (missing/invalid/revoked key) or 403 (model not allowed), with an OpenAI error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = "authentication_error" if status == 401 else "permission_error"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


@dataclass(frozen=True)
class KeyInfo:
    """A key's public record (never the secret nor its hash)."""

    key_id: str
    tenant: str
    rpm: int | None
    """Requests per minute (None = unlimited)."""
    tpm: int | None
    """Tokens (prompt + completion) per minute (None = unlimited)."""
    models: tuple[str, ...]
    """Models/stacks this key may call; empty = all."""
    created_at: str
    revoked_at: str | None = None
    name: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["models"] = list(self.models)
        return out


def hash_key(plaintext: str) -> str:
    """Stored form of a key (hex SHA-256 with a domain prefix)."""
    return hashlib.sha256(_HASH_DOMAIN + plaintext.encode("utf-8")).hexdigest()


def parse_bearer(authorization: str | None) -> str | None:
    """The key in an ``Authorization`` header value (``Bearer <key>``); a bare key is accepted too."""
    if not authorization:
        return None
    value = authorization.strip()
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() == "bearer":
        return rest.strip() or None
    return value if value.startswith(KEY_PREFIX) else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _models_text(models: Iterable[str] | None) -> str:
    names = []
    for item in models or ():
        for name in str(item).split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return ",".join(names)


class KeyStore:
    """The SQLite key store; cheap to create, one connection per thread."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else workspace_path("keys") / "keys.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # timeout = busy_timeout: writers in other processes hold the lock for microseconds.
            conn = sqlite3.connect(self.path, timeout=30.0)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @staticmethod
    def _info(row: sqlite3.Row) -> KeyInfo:
        models = tuple(m for m in (row["models"] or "").split(",") if m)
        return KeyInfo(row["key_id"], row["tenant"], row["rpm"], row["tpm"], models,
                       row["created_at"], row["revoked_at"], row["name"] or "")

    # ------------------------------------------------------------------ admin

    def create(self, tenant: str, rpm: int | None = None, tpm: int | None = None,
               models: Iterable[str] | None = None, name: str = "") -> tuple[str, KeyInfo]:
        """Create a key; returns ``(plaintext, info)``. The plaintext is not recoverable later."""
        if not tenant or not _TENANT_RE.match(tenant):
            raise UserError(f"tenant {tenant!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise UserError(f"--{label} must be a positive integer, got {value!r}")
        models_text = _models_text(models)
        conn = self._conn()
        for _ in range(5):  # key_id collision (2^-48 per pair) is retried, not fatal
            key_id = secrets.token_hex(6)
            plaintext = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
            try:
                with conn:
                    conn.execute(
                        "INSERT INTO api_keys (key_id, key_hash, tenant, rpm, tpm, models, name, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key_id, hash_key(plaintext), tenant, rpm, tpm, models_text, name, _now()),
                    )
            except sqlite3.IntegrityError:
                continue
            info = self.get(key_id)
            assert info is not None
            _audit("key.created", key_id=key_id, tenant=tenant, rpm=rpm, tpm=tpm, models=list(info.models), name=name)
            return plaintext, info
        raise RuntimeError("could not allocate a unique key id")

    def get(self, key_id: str) -> KeyInfo | None:
        row = self._conn().execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return self._info(row) if row is not None else None

    def list(self, tenant: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        sql = "SELECT * FROM api_keys"
        clauses, args = [], []
        if tenant:
            clauses.append("tenant = ?")
            args.append(tenant)
        if not include_revoked:
            clauses.append("revoked_at IS NULL")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at, key_id"
        return [self._info(r) for r in self._conn().execute(sql, args).fetchall()]

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key (effective on the next request everywhere). Unknown or revoked: UserError."""
        conn = self._conn()
        with conn:
            cur = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                               (_now(), key_id))
        info = self.get(key_id)
        if info is None:
            raise UserError(f"no API key with id {key_id!r} (see `llmops keys list`)")
        if cur.rowcount == 0:
            raise UserError(f"API key {key_id!r} was already revoked at {info.revoked_at}")
        _audit("key.revoked", key_id=key_id, tenant=info.tenant)
        return info

    # ------------------------------------------------------------------ request path

    def verify(self, bearer: str | None) -> KeyInfo:
        """The key record for an ``Authorization`` header value or bare key, else :class:`AuthError` 401."""
        key = parse_bearer(bearer)
        if key is None:
            raise AuthError(401, "missing_api_key",
                            "missing API key: send 'Authorization: Bearer <key>' (create one with `llmops keys create`)")
        m = _KEY_RE.match(key)
        row = None
        if m is not None:
            row = self._conn().execute("SELECT * FROM api_keys WHERE key_id = ?", (m.group(1),)).fetchone()
        if row is None or not hmac.compare_digest(row["key_hash"], hash_key(key)):
            raise AuthError(401, "invalid_api_key", "invalid API key")
        info = self._info(row)
        if info.revoked:
            raise AuthError(401, "invalid_api_key", f"API key {info.key_id} has been revoked")
        return info

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def model_allowed(key: KeyInfo, model: str) -> bool:
    """Whether ``key`` may call ``model``: empty list = all; ``base`` allows ``base:adapter``;
    ``stack@alias`` / ``stack:variant`` are allowed by their stack name; ``*`` suffix wildcards."""
    if not key.models:
        return True
    base = re.split(r"[:@]", model, maxsplit=1)[0]
    for allowed in key.models:
        if allowed in (model, base) or (allowed.endswith("*") and model.startswith(allowed[:-1])):
            return True
    return False


def check_model(key: KeyInfo, model: str) -> None:
    """Raise :class:`AuthError` 403 when ``key`` may not call ``model``."""
    if not model_allowed(key, model):
        raise AuthError(403, "model_not_allowed",
                        f"API key {key.key_id} (tenant {key.tenant}) may not use model {model!r}")


_STORES: dict[Path, KeyStore] = {}
_STORES_LOCK = threading.Lock()


def get_store(path: str | Path | None = None) -> KeyStore:
    """A process-wide :class:`KeyStore` for the workspace's (or the given) database."""
    resolved = Path(path) if path is not None else workspace_path("keys") / "keys.db"
    with _STORES_LOCK:
        store = _STORES.get(resolved)
        if store is None:
            store = _STORES[resolved] = KeyStore(resolved)
        return store


def verify(bearer: str | None) -> KeyInfo:
    """:meth:`KeyStore.verify` on the workspace store."""
    return get_store().verify(bearer)


def _audit(event: str, **fields: Any) -> None:
    from llmops_ray.common.audit import audit

    audit(event, **fields)


# --------------------------------------------------------------------------- gateway hook


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Rough prompt size before the engine tokenises it: 1 token per 4 characters (min 1).

    Only used to admit a request against tokens/min; the real usage reported by the engine
    replaces the estimate in ``after_response``.
    """
    chars = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        chars += len(prompt)
    elif isinstance(prompt, list):
        chars += sum(len(p) for p in prompt if isinstance(p, str))
    return max(1, chars // 4)


from llmops_ray.common.gateway_hooks import GatewayError, GatewayHook  # noqa: E402  (stdlib-only module)


class ApiKeyHookConfig(StrictModel):
    """Keyword arguments of :class:`ApiKeyHook` (``gateway.hooks[].kwargs``), checked at load time."""

    limiter: Literal["actor", "local", "none"] = "actor"
    """``actor``: one shared limiter actor (exact across replicas); ``local``: per-replica
    buckets of ``limit / replicas``; ``none``: keys only, no rate limits."""
    replicas: int = Field(1, ge=1)
    """Gateway replicas the ``local`` limiter splits each limit over."""
    db_path: str | None = None
    """Key store (SQLite) path; None = ``<workspace>/keys/keys.db``."""


class ApiKeyHook(GatewayHook):
    """Gateway hook: 401 without a valid key, 403 for a model the key may not use, 429 with
    ``Retry-After`` beyond its rpm/tpm. Sets ``ctx.principal`` (the :class:`KeyInfo`) and
    ``ctx.tenant``. Serve YAML::

        gateway:
          hooks:
            - path: llmops_ray.serve.keys:ApiKeyHook
              kwargs: {limiter: actor}     # actor (shared, exact) | local (per replica) | none

    ``limiter: local`` takes ``replicas: N`` and enforces ``limit / N`` per replica.
    """

    Config = ApiKeyHookConfig

    def __init__(self, limiter: str = "actor", replicas: int = 1, db_path: str | None = None):
        ApiKeyHookConfig(limiter=limiter, replicas=replicas, db_path=db_path)
        self.store = get_store(db_path)
        self.mode = limiter
        self._local = None
        self._actor = None
        if limiter == "local":
            from llmops_ray.serve.ratelimit import RateLimiter

            self._local = RateLimiter(split=replicas)

    async def _acquire(self, key: KeyInfo, tokens: int):
        if self.mode == "local":
            return self._local.acquire(key.key_id, key.rpm, key.tpm, tokens)
        if self._actor is None:
            from llmops_ray.serve.ratelimit import shared_limiter

            self._actor = shared_limiter()
        return await self._actor.acquire.remote(key.key_id, key.rpm, key.tpm, tokens)

    def _commit(self, key: KeyInfo, tokens: int) -> None:
        if self.mode == "local":
            self._local.commit(key.key_id, key.tpm, tokens)
        elif self._actor is not None:
            self._actor.commit.remote(key.key_id, key.tpm, tokens)  # fire and forget

    async def authenticate(self, ctx) -> None:
        try:
            key = self.store.verify(ctx.headers.get("authorization"))
            if ctx.requested_model:
                check_model(key, ctx.requested_model)
        except AuthError as exc:
            raise GatewayError(exc.status, exc.message, code=exc.code, type=exc.type, headers=exc.headers) from None
        ctx.principal = key
        ctx.tenant = key.tenant
        if self.mode == "none" or not (key.rpm or key.tpm):
            return
        tokens = estimate_prompt_tokens(ctx.body if isinstance(ctx.body, dict) else {})
        decision = await self._acquire(key, tokens)
        if not decision.allowed:
            raise GatewayError(429, decision.message(key.key_id), code="rate_limit_exceeded",
                               type="rate_limit_error", headers=decision.headers())
        ctx.extra["ratelimit_tokens_taken"] = tokens

    async def after_response(self, ctx) -> None:
        key = ctx.principal
        taken = ctx.extra.get("ratelimit_tokens_taken")
        if not isinstance(key, KeyInfo) or not key.tpm or taken is None:
            return
        used = int((ctx.usage or {}).get("total_tokens") or 0)
        if used:
            self._commit(key, used - int(taken))
