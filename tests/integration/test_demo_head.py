"""The demo's Ray head on a fresh machine: `ray start --head` with token auth and no ~/.ray
(what `make demo` does first), and the process conventions `make down` relies on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(demo_job):
    return demo_job


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


def test_real_ray_processes_are_found_by_their_gcs_port(demo, ray_session):
    """The command-line conventions the stop relies on hold for a real Ray instance (this
    session's, which is only looked at, not stopped): its GCS, on a dynamic port, is found
    through the session name."""
    port = int(ray_session.get_runtime_context().gcs_address.rsplit(":", 1)[1])
    names = " ".join(" ".join(p.cmdline()) for p in demo.head_processes(port))
    assert "gcs_server" in names and "raylet" in names
