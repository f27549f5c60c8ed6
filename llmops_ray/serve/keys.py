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
import logging
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

# Columns added after the first release: created on open when an older store lacks them.
_LIMIT_COLUMNS = ("tokens_per_day", "tokens_per_month", "max_concurrent", "max_tokens")


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
    tokens_per_day: int | None = None
    """Token budget per UTC day (None = unlimited)."""
    tokens_per_month: int | None = None
    """Token budget per UTC calendar month (None = unlimited)."""
    max_concurrent: int | None = None
    """Requests of this key in flight at once (None = the hook's default)."""
    max_tokens: int | None = None
    """Ceiling on ``max_tokens`` per request (None = the hook's default ceiling)."""

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
            have = {r[1] for r in conn.execute("PRAGMA table_info(api_keys)")}
            for column in _LIMIT_COLUMNS:
                if column not in have:
                    conn.execute(f"ALTER TABLE api_keys ADD COLUMN {column} INTEGER")

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
                       row["created_at"], row["revoked_at"], row["name"] or "",
                       *(row[c] for c in _LIMIT_COLUMNS))

    # ------------------------------------------------------------------ admin

    def create(self, tenant: str, rpm: int | None = None, tpm: int | None = None,
               models: Iterable[str] | None = None, name: str = "", tokens_per_day: int | None = None,
               tokens_per_month: int | None = None, max_concurrent: int | None = None,
               max_tokens: int | None = None) -> tuple[str, KeyInfo]:
        """Create a key; returns ``(plaintext, info)``. The plaintext is not recoverable later."""
        if not tenant or not _TENANT_RE.match(tenant):
            raise UserError(f"tenant {tenant!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
        limits = {"tokens_per_day": tokens_per_day, "tokens_per_month": tokens_per_month,
                  "max_concurrent": max_concurrent, "max_tokens": max_tokens}
        for label, value in (("rpm", rpm), ("tpm", tpm), *limits.items()):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise UserError(f"--{label.replace('_', '-')} must be a positive integer, got {value!r}")
        models_text = _models_text(models)
        conn = self._conn()
        for _ in range(5):  # key_id collision (2^-48 per pair) is retried, not fatal
            key_id = secrets.token_hex(6)
            plaintext = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
            try:
                with conn:
                    conn.execute(
                        "INSERT INTO api_keys (key_id, key_hash, tenant, rpm, tpm, models, name, created_at, "
                        + ", ".join(_LIMIT_COLUMNS) + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key_id, hash_key(plaintext), tenant, rpm, tpm, models_text, name, _now(),
                         *(limits[c] for c in _LIMIT_COLUMNS)),
                    )
            except sqlite3.IntegrityError:
                continue
            info = self.get(key_id)
            assert info is not None
            _audit("key.created", key_id=key_id, tenant=tenant, rpm=rpm, tpm=tpm, models=list(info.models), name=name,
                   **{k: v for k, v in limits.items() if v is not None})
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

    def usage(self, key_id: str) -> dict[str, dict[str, int]]:
        """Settled usage of a key per budget period (``d:YYYY-MM-DD``, ``m:YYYY-MM``):
        ``{"tokens", "requests"}``, as the rate limiter recorded it."""
        from llmops_ray.serve.ratelimit import UsageLedger

        return UsageLedger(self.path).usage(key_id)

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



from llmops_ray.common.gateway_hooks import GatewayError, GatewayHook  # noqa: E402  (stdlib-only module)


class ApiKeyHookConfig(StrictModel):
    """Keyword arguments of :class:`ApiKeyHook` (``gateway.hooks[].kwargs``), checked at load time."""

    limiter: Literal["actor", "local", "none"] = "actor"
    """``actor``: one shared limiter actor, exact across gateway replicas and restarts of a
    replica; ``local``: per-replica quotas of ``limit / replicas`` (one replica or tests);
    ``none``: keys and model permissions only, no quotas."""
    replicas: int = Field(1, ge=1)
    """Gateway replicas the ``local`` limiter splits each per-minute limit over."""
    db_path: str | None = None
    """Key store (SQLite) path; None = ``<workspace>/keys/keys.db``. Budgets spent per
    day/month are kept in the same file (table ``key_usage``)."""
    on_limiter_error: Literal["closed", "open"] = "closed"
    """When the limiter actor cannot be reached (actor lost, its node gone, a call slower
    than ``limiter_timeout_s``): ``closed`` refuses the request with 503 and
    ``Retry-After`` (no request goes unmetered); ``open`` serves it unmetered and logs a
    warning."""
    limiter_timeout_s: float = Field(2.0, gt=0)
    """Longest wait for one limiter call, seconds."""
    default_max_tokens: int = Field(512, ge=1)
    """``max_tokens`` of a request that sets none (and the amount reserved for it): without
    a bound the engine may generate up to the whole context, which no quota could reserve."""
    max_tokens_ceiling: int = Field(4096, ge=1)
    """Largest ``max_tokens`` a request may ask for (400 above it) unless the key sets its own."""
    max_concurrent: int | None = Field(16, ge=1)
    """Requests of one key in flight at once when the key sets no ``max_concurrent``
    (None = no cap); further requests get 429 until one finishes."""


def generation_slots(body: dict[str, Any], route: str) -> int:
    """How many completions a request asks for: ``n`` x the number of prompts (a
    completions request may carry a batch of prompts)."""
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    prompt = body.get("prompt") if route == "completions" else None
    prompts = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
    return n * prompts


class ApiKeyHook(GatewayHook):
    """Gateway hook: 401 without a valid key (checked from the header, before the body is
    read), 403 for a model the key may not use (the model as resolved, on every route),
    429 with ``Retry-After`` beyond the key's quotas (reserve-then-reconcile, see
    :mod:`llmops_ray.serve.ratelimit`). Sets ``ctx.principal`` (the :class:`KeyInfo`) and
    ``ctx.tenant``. A serve config gets it by default (``gateway.auth: keys``); listing it
    sets its options::

        gateway:
          hooks:
            - path: llmops_ray.serve.keys:ApiKeyHook
              kwargs: {limiter: actor, on_limiter_error: closed, default_max_tokens: 512}
    """

    Config = ApiKeyHookConfig

    def __init__(self, **kwargs: Any):
        self.config = ApiKeyHookConfig(**kwargs)
        self.store = get_store(self.config.db_path)
        self._local = None
        self._actor = None
        if self.config.limiter == "local":
            from llmops_ray.serve.ratelimit import RateLimiter

            self._local = RateLimiter(split=self.config.replicas, usage_db=str(self.store.path))

    # ------------------------------------------------------------------ limits of a key

    def limits(self, key: KeyInfo):
        from llmops_ray.serve.ratelimit import KeyLimits

        return KeyLimits(rpm=key.rpm, tpm=key.tpm, tokens_per_day=key.tokens_per_day,
                         tokens_per_month=key.tokens_per_month,
                         max_concurrent=key.max_concurrent or self.config.max_concurrent)

    def _max_tokens(self, ctx, key: KeyInfo) -> int:
        """The request's ``max_tokens`` after the key's default and ceiling (sets it in the body)."""
        ceiling = key.max_tokens or self.config.max_tokens_ceiling
        body = ctx.body
        field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        asked = body.get(field)
        if asked is None:
            body["max_tokens"] = min(self.config.default_max_tokens, ceiling)
            return body["max_tokens"]
        if isinstance(asked, int) and asked > ceiling:
            raise GatewayError(400, f"'{field}' = {asked} is above the largest this API key may ask for ({ceiling})",
                               param=field)
        return int(asked) if isinstance(asked, int) else min(self.config.default_max_tokens, ceiling)

    # ------------------------------------------------------------------ limiter calls

    async def _limiter_call(self, method: str, *args: Any):
        import asyncio

        if self.config.limiter == "local":
            return getattr(self._local, method)(*args)
        try:
            if self._actor is None:
                from llmops_ray.serve.ratelimit import shared_limiter

                self._actor = await asyncio.to_thread(shared_limiter, str(self.store.path))
            ref = getattr(self._actor, method).remote(*args)
            return await asyncio.wait_for(ref, timeout=self.config.limiter_timeout_s)
        except Exception as exc:  # noqa: BLE001 - RayActorError, ActorDiedError, timeouts, ...
            self._actor = None  # look the actor up again next time (Ray may have restarted it)
            if self.config.on_limiter_error == "open":
                _log.warning("rate limiter unavailable (%r): serving unmetered (on_limiter_error: open)", exc)
                return None
            raise GatewayError(503, "rate limiter unavailable: retry shortly", code="limiter_unavailable",
                               type="server_error", headers={"Retry-After": "1"}) from None

    # ------------------------------------------------------------------ hook points

    async def authenticate(self, ctx) -> None:
        import asyncio

        try:
            # SQLite read off the event loop (a writer elsewhere may hold the lock briefly).
            key = await asyncio.to_thread(self.store.verify, ctx.headers.get("authorization"))
        except AuthError as exc:
            raise GatewayError(exc.status, exc.message, code=exc.code, type=exc.type, headers=exc.headers) from None
        except sqlite3.OperationalError as exc:
            _log.warning("key store unavailable: %s", exc)
            raise GatewayError(503, "key store busy: retry shortly", code="service_unavailable",
                               headers={"Retry-After": "1"}) from None
        ctx.principal = key
        ctx.tenant = key.tenant

    def allows_model(self, ctx, model_id: str) -> bool:
        return isinstance(ctx.principal, KeyInfo) and model_allowed(ctx.principal, model_id)

    async def admit(self, ctx) -> None:
        key = ctx.principal
        if not isinstance(key, KeyInfo):
            raise GatewayError(401, "missing API key", code="missing_api_key", type="authentication_error")
        # The name the client used, or the model the request resolved to when it named none.
        try:
            check_model(key, ctx.requested_model or ctx.model or "")
        except AuthError as exc:
            raise GatewayError(exc.status, exc.message, code=exc.code, type=exc.type) from None
        if ctx.route in ("chat", "completions"):
            ctx.max_output_tokens = self._max_tokens(ctx, key) * generation_slots(ctx.body, ctx.route)
        limits = self.limits(key)
        if self.config.limiter == "none" or not limits.any():
            return
        reserve = int(ctx.prompt_tokens or 0) + int(ctx.max_output_tokens)
        decision = await self._limiter_call("admit", key.key_id, limits, reserve)
        if decision is None:  # limiter unavailable, on_limiter_error: open
            return
        ctx.response_headers.update(decision.headers())
        if not decision.allowed:
            raise GatewayError(429, decision.message(key.key_id), code="rate_limit_exceeded",
                               type="rate_limit_error", headers=decision.headers())
        # The lease is settled on the limiter that granted it (this replica may look the
        # actor up again in the meantime).
        ctx.extra["quota_lease"] = (decision.lease, self._local if self.config.limiter == "local" else self._actor)
        ctx.extra["quota_reserved"] = decision.reserved

    async def after_response(self, ctx) -> None:
        granted = ctx.extra.pop("quota_lease", None)
        if granted is None:
            return
        lease, limiter = granted
        used = tokens_used(ctx)
        ctx.extra["quota_used"] = used
        if self.config.limiter == "local":
            limiter.settle(lease, used)
            return
        try:
            limiter.settle.remote(lease, used)  # fire and forget; a lost call expires with the lease
        except Exception as exc:  # noqa: BLE001 - the actor is gone: its reservations went with it
            _log.warning("settling quota lease %s failed: %r", lease, exc)


def tokens_used(ctx) -> int:
    """Tokens a finished request consumed: the engine's usage when it reported one; else
    (a stream cut off by the client, an error mid-stream) the counted prompt plus one token
    per streamed text piece; 0 for a request the engine refused."""
    usage = ctx.usage or {}
    if usage.get("total_tokens"):
        return int(usage["total_tokens"])
    if ctx.output_text:
        return int(ctx.prompt_tokens or 0) + len(ctx.output_text)
    return 0


_log = logging.getLogger("llmops_ray.serve.keys")
