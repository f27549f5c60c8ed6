"""A non-editable install works: the wheel carries the shipped configs, resources and serve
configs, and `llmops` run from another directory resolves a shipped pipeline config down to
the serve config it names (``pipeline_demo_cpu`` -> ``serve_configs/local_cpu.yaml``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(".venv", ".llmops", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                 ".pytest_cache", "mlruns")


def test_wheel_ships_serve_configs_and_llmops_resolves_them_elsewhere(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=IGNORED)  # a build never writes into the checkout
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, timeout=600)
    wheel = next(dist.glob("llmops_ray-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in sorted((REPO / "serve_configs").glob("*.yaml")):
        assert f"llmops_ray/serve_configs/{shipped.name}" in names
    assert "llmops_ray/configs/pipeline_demo_cpu.yaml" in names
    assert any(n.startswith("llmops_ray/resources/sample_corpus/") for n in names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import json, llmops_ray; print(json.dumps({'file': llmops_ray.__file__}))\n"
            "from llmops_ray.cli import main; main(['pipeline', '--check'])\n")
    env = dict(os.environ, PYTHONPATH=str(site), LLMOPS_HOME=str(tmp_path / "ws"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert Path(json.loads(lines[0])["file"]).is_relative_to(site), "the installed copy, not the checkout, was imported"
    resolved = json.loads(lines[-1])["resolved"]
    assert Path(resolved["serve"]) == site / "llmops_ray" / "serve_configs" / "local_cpu.yaml"
    assert Path(resolved["finetune"]).is_relative_to(site)
