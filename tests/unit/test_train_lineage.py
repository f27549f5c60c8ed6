"""Lineage helpers: Ray job id from the job-submission environment, git commit, loss-curve PNG."""

from __future__ import annotations

import json

from llmops_ray.models.base import file_hash, write_lineage
from llmops_ray.common.artifacts import git_commit, publish_dir, ray_job_id, staging_dir
from llmops_ray.train.runner import plot_loss_curve


def test_ray_job_id_comes_from_the_submission_metadata(monkeypatch):
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert ray_job_id() is None
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"metadata": {"job_submission_id": "raysubmit_abc"}}))
    assert ray_job_id() == "raysubmit_abc"


def test_git_commit_is_the_checkout_head_or_none_outside_git(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from llmops_ray.common import artifacts

    head = subprocess.run(["git", "-C", str(artifacts.REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (CI clones one): the commit is HEAD's
        assert git_commit() == head.stdout.strip()
    else:  # an installed copy outside git
        assert git_commit() is None
    monkeypatch.setattr(artifacts, "REPO_ROOT", tmp_path)  # not a git checkout
    assert shutil.which("git") is None or git_commit() is None


def test_output_dir_is_replaced_atomically_with_lineage_and_plot(tmp_path):
    out = tmp_path / "models" / "run"
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    for attempt in range(2):  # second publish replaces the first
        tmp = staging_dir(out)
        history = [{"step": 1, "train_loss": 3.0}, {"step": 2, "train_loss": 2.0, "val_loss": 2.5}]
        plot_loss_curve(history, tmp / "loss_curve.png", "t")
        write_lineage(tmp, {"base_model": "/m", "dataset": {"path": str(data), "sha256": file_hash([data])},
                            "metrics": {"train_loss": 2.0}, "attempt": attempt})
        publish_dir(tmp, out)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["attempt"] == 1 and lineage["dataset"]["sha256"] == file_hash([data]) and "created_at" in lineage
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # no staging leftovers
