"""`make down` stops the demo head's processes only, never another Ray instance on the machine."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(demo_job):
    return demo_job


def _sleeper(*args: str, spawn_child: bool = False) -> subprocess.Popen:
    """A process whose command line carries Ray-style GCS arguments (and optionally a child)."""
    code = "import subprocess, sys, time\n"
    if spawn_child:
        code += "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    code += "time.sleep(120)\n"
    return subprocess.Popen([sys.executable, "-c", code, *args])


def _wait_children(proc: subprocess.Popen, n: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = psutil.Process(proc.pid).children(recursive=True)
        if len(children) >= n:
            return children
        time.sleep(0.05)
    raise AssertionError("child process did not start")


def test_stop_head_stops_that_gcs_port_and_descendants_only(demo):
    port, other_port = 61234, 61235
    session = "session_2026-01-02_03-04-05_123456_789"
    gcs = _sleeper(f"--gcs_server_port={port}", f"--log_dir=/tmp/ray/{session}/logs")
    # Not a Ray program, though it names the session (like `tail` on its logs): left alone.
    reader = _sleeper(f"/tmp/ray/{session}/logs/raylet.out")
    raylet = _sleeper("--gcs-address", f"127.0.0.1:{port}", f"--session-name={session}", spawn_child=True)
    worker = _wait_children(raylet, 1)[0]  # a worker below it
    client_proxy = _sleeper("-m", "ray.util.client.server", f"--address=192.0.2.2:{port}", "--port=10001")
    other = _sleeper(f"--gcs-address=127.0.0.1:{other_port}", "--session-name=session_2026-01-02_03-04-05_1_2")
    other_proxy = _sleeper("-m", "ray.util.client.server", f"--address=192.0.2.2:{other_port}")
    similar = _sleeper(f"--gcs-address=127.0.0.1:{port}1")  # a port that merely starts alike
    try:
        found = {p.pid for p in demo.head_processes(port)}
        assert {gcs.pid, raylet.pid, worker.pid, client_proxy.pid} <= found
        assert other.pid not in found and similar.pid not in found and reader.pid not in found
        assert other_proxy.pid not in found

        assert demo.stop_head(port, grace_s=5) >= 4
        for proc in (gcs, raylet, client_proxy):
            assert proc.wait(timeout=10) is not None
        assert not psutil.pid_exists(worker.pid) or psutil.Process(worker.pid).status() == psutil.STATUS_ZOMBIE
        assert other.poll() is None and similar.poll() is None  # the other instances keep running
        assert other_proxy.poll() is None
        assert reader.poll() is None
    finally:
        for proc in (gcs, raylet, other, similar, reader, client_proxy, other_proxy):
            proc.kill()
            proc.wait(timeout=10)
        if psutil.pid_exists(worker.pid):
            psutil.Process(worker.pid).kill()
