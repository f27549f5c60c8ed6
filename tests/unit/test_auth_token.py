"""Ray's auth token lives in the workspace: created once (0600), reused, never overwritten, and a
token the user chose wins. A fresh machine has no ``~/.ray/auth_token``; nothing may need it."""

from __future__ import annotations

import os
import stat
import pytest

from llmops_ray.cluster import use_auth_token


@pytest.fixture
def no_token_env(monkeypatch):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)


def test_creates_a_private_token_once_and_reuses_it(tmp_path, no_token_env):
    path = tmp_path / "ray" / "auth_token"
    assert use_auth_token(path) == path
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(path.resolve())
    del os.environ["RAY_AUTH_TOKEN_PATH"]
    use_auth_token(path)
    assert path.read_text() == token, "a second call must reuse the token, not replace it"
    assert not [p for p in path.parent.iterdir() if p.name != "auth_token"], "no temporary file is left"


def test_create_false_only_points_at_an_existing_token(tmp_path, no_token_env):
    path = tmp_path / "auth_token"
    assert use_auth_token(path, create=False) is None
    assert not path.exists() and "RAY_AUTH_TOKEN_PATH" not in os.environ


def test_a_token_the_user_chose_wins(tmp_path, no_token_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "a" * 64)
    assert use_auth_token(tmp_path / "auth_token") is None
    assert not (tmp_path / "auth_token").exists() and "RAY_AUTH_TOKEN_PATH" not in os.environ
