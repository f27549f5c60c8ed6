"""The injection dataset shipped in the package is exactly what its generator (a tool kept out of
the installed package, tests/tools/make_injection_dataset.py) builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generator_rebuilds_the_shipped_dataset(tmp_path):
    out = tmp_path / "injection_dataset.jsonl"
    subprocess.run([sys.executable, str(REPO / "tests" / "tools" / "make_injection_dataset.py"), str(out)],
                   check=True, capture_output=True, timeout=120)
    shipped = REPO / "llmops_ray" / "resources" / "safety" / "injection_dataset.jsonl"
    assert out.read_bytes() == shipped.read_bytes()
    assert not list((REPO / "llmops_ray").rglob("make_injection_dataset.py")), "the tool is not package data"
