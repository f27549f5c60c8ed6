"""`make demo` / `make down`: run the pipeline job on a local Ray head, or stop everything.

    python jobs/demo.py [up] [key=value ...]   # start a head if none runs, submit jobs/pipeline.py
    python jobs/demo.py down                   # stop the Serve app and the Ray head (only that head)

``up`` starts the head with this environment's ``ray`` (``.venv/bin/ray start --head``) so the
job runs under the project's interpreter, submits ``jobs/pipeline.py`` with ``ray job
submit --working-dir .`` (the repo without .venv, .llmops and other large folders; the job
writes into this checkout's ``.llmops`` through an absolute ``LLMOPS_HOME``), streams the job's
logs and prints the job's final JSON line (endpoint, api_key, model, dashboard) as the very
last line. The app keeps serving after this script exits.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: ray, serve and python of this environment
DASHBOARD = "http://127.0.0.1:8265"
HEAD_PORT = 6379  # the demo head's GCS port; other local Ray instances (tests, notebooks) use random ones
# Not uploaded with --working-dir: environments, workspaces, caches, VCS data.
EXCLUDES = [".venv", ".llmops", ".git", "mlruns", "**/__pycache__", "*.egg-info", ".pytest_cache",
            "benchmarks/results", "*.log"]
# The demo head's Ray auth token (Ray 2.60 token auth): created by the first `make demo`, kept
# with the checkout (not in ~/.ray, which a fresh machine lacks), reused by every later `make demo`,
# `make down` and the jobs they submit, whatever LLMOPS_HOME they use.
AUTH_TOKEN = REPO / ".llmops" / "ray" / "auth_token"
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "TORCH_EXTENSIONS_DIR",
                 "MLFLOW_TRACKING_URI")


def _env() -> dict[str, str]:
    from llmops_ray.cluster import use_auth_token

    use_auth_token(AUTH_TOKEN)  # sets RAY_AUTH_TOKEN_PATH unless the user chose a token
    env = dict(os.environ)
    # This environment's bin first: the head (and the job's `python`) must be the project's
    # interpreter, not a system one without the packages (`No module named 'ray'`).
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = env.get("RAY_AUTH_MODE") or "token"  # Ray 2.60 token auth for CLI clients
    env.pop("RAY_ADDRESS", None)
    from llmops_ray.cluster import SERVE_ENV

    for key, value in SERVE_ENV.items():  # the head's Serve proxy and replicas read these at start
        env.setdefault(key, value)
    return env


def head_running(port: int = HEAD_PORT) -> bool:
    """Whether a Ray head answers on this machine (``ray status``)."""
    res = subprocess.run([str(BIN / "ray"), "status", "--address", f"127.0.0.1:{port}"], env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return res.returncode == 0


def start_head(port: int = HEAD_PORT, dashboard_port: int = 8265) -> None:
    """``ray start --head`` with 2 CPUs and this environment's ``ray`` (token auth: the token
    in :data:`AUTH_TOKEN`, created on first use)."""
    print(f"[demo] starting a local Ray head (2 CPUs, dashboard on 127.0.0.1:{dashboard_port})", flush=True)
    # The job agent's HTTP port defaults to 52365 for every Ray instance on the machine; a free
    # one keeps job submission working beside other local Ray instances (tests, notebooks).
    subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dashboard_port}", f"--dashboard-agent-listen-port={_free_port()}",
                    "--disable-usage-stats"], env=_env(), check=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_dashboard(timeout_s: float = 120.0, dashboard: str = DASHBOARD) -> None:
    """The job API lives in the dashboard, which comes up a few seconds after ``ray start``."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{dashboard}/api/version", timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 without the token is still an answer)
        except OSError:
            time.sleep(1.0)
    raise SystemExit(f"[demo] the Ray dashboard at {dashboard} did not come up within {timeout_s:.0f} s")


def runtime_env_json(gcs_port: int = HEAD_PORT) -> str:
    home = Path(os.environ.get("LLMOPS_HOME") or REPO / ".llmops").resolve()
    # RAY_OVERRIDE_JOB_RUNTIME_ENV: the job's driver calls ray.init with the same env vars
    # (llmops_ray.cluster.runtime_env); without it Ray refuses the overlap instead of merging.
    # LLMOPS_RAY_ADDRESS: the job joins this head, not whichever Ray instance started last here.
    env_vars = {"LLMOPS_HOME": str(home), "PATH": _env()["PATH"], "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1",
                "LLMOPS_RAY_ADDRESS": f"127.0.0.1:{gcs_port}"}
    for key in FORWARDED_ENV:
        if os.environ.get(key):
            env_vars[key] = os.environ[key]
    return json.dumps({"excludes": EXCLUDES, "env_vars": env_vars})


def up(overrides: list[str]) -> int:
    if not head_running():
        start_head()
    wait_dashboard()
    if not any(o.startswith("ingest.paths=") for o in overrides):
        # A stable path for the sample corpus (the job's working_dir copy moves every session).
        overrides = [f"ingest.paths=[{REPO / 'llmops_ray' / 'resources' / 'sample_corpus'}]", *overrides]
    print("[demo] ray job submit ... -- python jobs/pipeline.py " + " ".join(overrides), flush=True)
    code, final = submit_job(["jobs/pipeline.py", *overrides])
    if code != 0 or not final or not {"endpoint", "api_key"} <= set(final):
        print(f"[demo] the pipeline job failed (exit {code}); logs above, `ray job list` for the job", file=sys.stderr)
        return code or 1
    print(json.dumps(final), flush=True)  # the very last line of `make demo`
    return 0


def submit_job(script_args: list[str], dashboard: str = DASHBOARD, gcs_port: int = HEAD_PORT,
               attempts: int = 30) -> tuple[int, dict | None]:
    """``ray job submit --working-dir <repo> -- python SCRIPT ARGS...`` with this checkout's
    runtime env, streaming the job's output; returns (exit code, the last JSON object line)."""
    cmd = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--working-dir", str(REPO),
           "--runtime-env-json", runtime_env_json(gcs_port), "--", "python", *script_args]
    for _ in range(attempts):
        code, final, no_agent = _submit(cmd)
        # Right after `ray start` the dashboard answers before its job agent does.
        if not no_agent:
            break
        print("[demo] the job agent is not ready yet; retrying in 5 s", flush=True)
        time.sleep(5.0)
    return code, final


def _submit(cmd: list[str]) -> tuple[int, dict | None, bool]:
    """Run ``ray job submit`` streaming its output; (exit code, last JSON object line, agent-not-ready)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, cwd=REPO)
    final, no_agent = None, False
    held: list[str] | None = []  # output before the job exists (dropped when the agent is not up yet)
    assert proc.stdout is not None
    for line in proc.stdout:
        text = line.strip()
        no_agent = no_agent or "No available agent to submit job" in text
        if held is not None:
            held.append(line)
            if "submitted successfully" not in text:
                continue
            line, held = "".join(held), None
        sys.stdout.write(line)
        sys.stdout.flush()
        if text.startswith("{") and text.endswith("}"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                final = parsed
    code = proc.wait()
    if held and not (no_agent and code != 0):
        sys.stdout.write("".join(held))
    return code, final, no_agent and code != 0


CLIENT_SERVER = "ray.util.client.server"
_SESSION = re.compile(r"session_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+_\d+")


def _is_ray_program(cmdline: list[str]) -> bool:
    """A Ray binary (gcs_server, raylet), a Python script of the ray package, or a process
    that renamed itself the Ray way (``ray::<actor>``, ``ray-dashboard-<module>``)."""
    if not cmdline:
        return False
    if cmdline[0].startswith(("ray::", "ray-dashboard")):
        return True
    return any(f"{os.sep}ray{os.sep}" in arg and "site-packages" in arg for arg in cmdline[:3])


def head_processes(port: int = HEAD_PORT) -> list:
    """The processes of the Ray instance whose GCS listens on ``port``, and all they spawned.

    Ray's processes name their GCS in their command line (``--gcs-address=IP:PORT`` for the
    raylet, dashboard, agents and workers; ``--gcs_server_port=PORT`` for a GCS started with
    an explicit port) and all carry the instance's session name (``session_<date>_<pid>``,
    in their log and socket paths), which finds the rest, e.g. a GCS on a dynamic port.
    Ray Client's proxy names it as ``--address=IP:PORT``. Replicas' vLLM engine processes are
    descendants. Other Ray instances on the machine (a
    test session, a benchmark) have other ports and sessions and are left alone, unlike with
    ``ray stop``, which stops every Ray process of the user.
    """
    import psutil

    def names_port(cmdline: list[str]) -> bool:
        for i, arg in enumerate(cmdline):
            key, sep, value = arg.partition("=")
            if not sep and i + 1 < len(cmdline):
                value = cmdline[i + 1]
            if key in ("--gcs-address", "--gcs_address") and value.rsplit(":", 1)[-1] == str(port):
                return True
            if key == "--gcs_server_port" and value == str(port):
                return True
            # Ray Client's proxy (`ray start --head` launches it on 10001) names the GCS as
            # --address=NODE_IP:PORT and outlives the `ray start` that spawned it (parent: init).
            if key == "--address" and value.rsplit(":", 1)[-1] == str(port) and CLIENT_SERVER in cmdline:
                return True
        return False

    cmdlines: dict[int, tuple] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid != os.getpid():
            cmdlines[proc.pid] = (proc, proc.info["cmdline"] or [])
    roots = {pid: proc for pid, (proc, cmd) in cmdlines.items() if names_port(cmd)}
    sessions = {m for pid in roots for m in _SESSION.findall(" ".join(cmdlines[pid][1]))}
    if sessions:
        for pid, (proc, cmd) in cmdlines.items():
            # Only Ray's own programs: an editor or `tail` on the session's log files is not one.
            if _is_ray_program(cmd) and set(_SESSION.findall(" ".join(cmd))) & sessions:
                roots.setdefault(pid, proc)
    found = dict(roots)
    for proc in roots.values():
        try:
            for child in proc.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def stop_head(port: int = HEAD_PORT, grace_s: float = 15.0) -> int:
    """SIGTERM the head's processes, SIGKILL what is left after ``grace_s``; returns how many."""
    import psutil

    procs = head_processes(port)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    from llmops_ray.common.ray_compat import forget_ray_address

    forget_ray_address(port)
    return len(procs)


def down() -> int:
    """Stop the Serve apps (graceful: replicas flush their logs), then the demo's Ray head."""
    env = _env()
    if head_running():
        subprocess.run([str(BIN / "serve"), "shutdown", "-y", "--address", DASHBOARD], env=env)
    stopped = stop_head()
    print(f"[demo] stopped {stopped} process(es) of the Ray head on port {HEAD_PORT}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "down":
        return down()
    if argv and argv[0] == "up":
        argv = argv[1:]
    return up(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
