"""Ray's auth token lives in the workspace: created once (0600), reused, never overwritten, and a
token the user chose wins. A fresh machine has no ``~/.ray/auth_token``; nothing may need it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

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


def test_head_starts_with_an_empty_home(tmp_path):
    """`ray start --head` with token auth and no ~/.ray: what `make demo` does on a fresh machine."""
    repo = Path(__file__).resolve().parents[2]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), LLMOPS_HOME=str(tmp_path / "ws"), RAY_AUTH_MODE="token")
    code = (
        "import sys; sys.path.insert(0, 'jobs'); import demo\n"
        "demo.AUTH_TOKEN = demo.Path(sys.argv[1])\n"
        "port = demo._free_port()\n"
        "demo.start_head(port=port, dashboard_port=demo._free_port())\n"
        "try:\n"
        "    assert demo.head_running(port), 'ray status failed against the new head'\n"
        "finally:\n"
        "    print('stopped', demo.stop_head(port))\n"
    )
    token = tmp_path / "ws" / "ray" / "auth_token"
    proc = subprocess.run([sys.executable, "-c", code, str(token)], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert token.is_file(), "the head's token is written where demo.py keeps it"
    assert not (home / ".ray").exists(), "nothing is written to the home directory's .ray"
