"""The terminal annotation queue: answers read line by line from a stream (as a terminal
or a pipe gives them), decisions saved as they are made, quit and resume, skip, pairs files
as input (answers shown in a hash-fixed order), and the ``llmops annotate`` command."""

import io
import json
import os
import subprocess
import sys

import pytest

from llmops_ray.common.pairs import pairs_sha256, read_lineage, read_pairs
from llmops_ray.config import UserError
from llmops_ray.data.annotate import annotate, load_queue, progress_path

ROWS = [
    {"id": "r1", "prompt": "What does E12 mean?", "answers": ["A pump fault [1].", "Bananas."]},
    {"id": "r2", "prompt": [{"role": "user", "content": "Warranty?"}], "answers": ["Forever.", "Two years [2]."]},
    {"id": "r3", "prompt": "Reset?", "answers": ["Hold 5 s [3].", "Unplug it forever."], "metadata": {"from": "test"}},
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(in_path, out, keys):
    shown = io.StringIO()
    summary = annotate(in_path, out, stdin=io.StringIO(keys), stdout=shown)
    return summary, shown.getvalue()


def test_quit_and_resume_where_stopped(tmp_path):
    queue = _write(tmp_path / "queue.jsonl", ROWS)
    out = tmp_path / "labelled.jsonl"
    summary, shown = _run(queue, out, "a\nq\n")
    assert "[1/3] id r1" in shown and "What does E12 mean?" in shown and "--- B ---\nBananas." in shown
    assert "[2/3] id r2" in shown and "id r3" not in shown  # quit at the second row
    assert summary["finished"] is False and summary["pairs"] == 1
    assert summary["counts"]["remaining"] == 2 and progress_path(out).is_file()
    [first] = read_pairs(out)
    assert (first.chosen, first.rejected) == ("A pump fault [1].", "Bananas.")

    # Resume: starts at row 2; an unknown key is asked again; 'b' picks the second answer.
    summary, shown = _run(queue, out, "x\nb\ns\n")
    assert "resuming: 1 of 3" in shown and "[2/3] id r2" in shown and "id r1" not in shown
    assert "unknown key 'x'" in shown
    assert summary["finished"] is True
    assert summary["counts"] == {"rows": 3, "annotated": 2, "skipped": 1, "remaining": 0,
                                 "agreed_with_input": 0, "disagreed_with_input": 0}
    pairs = read_pairs(out)
    assert [p.id for p in pairs] == ["r1", "r2"]
    assert (pairs[1].chosen, pairs[1].rejected) == ("Two years [2].", "Forever.")
    assert pairs[1].prompt == [{"role": "user", "content": "Warranty?"}]
    lineage = read_lineage(out)
    assert lineage["sha256"] == pairs_sha256(out) == summary["sha256"]
    assert lineage["sources"][0] == {"kind": "annotation", "in": str(queue.resolve()), "in_sha256": pairs_sha256(queue)}

    # Nothing left: a third run shows no row and changes nothing.
    summary, shown = _run(queue, out, "")
    assert "PROMPT" not in shown and summary["finished"] is True and summary["pairs"] == 2


def test_end_of_input_quits_and_keeps_decisions(tmp_path):
    queue = _write(tmp_path / "queue.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    summary, _ = _run(queue, out, "b\n")  # then EOF, as when a pipe ends
    assert summary["finished"] is False and summary["pairs"] == 1
    saved = json.loads(progress_path(out).read_text())
    assert saved["decisions"]["id:r1"]["choice"] == "b"


def test_pairs_input_hides_which_answer_was_chosen(tmp_path):
    pairs_in = [{"id": f"p{i}", "prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(12)]
    queue = _write(tmp_path / "pairs.jsonl", pairs_in)
    rows = load_queue(queue)
    firsts = [row["answers"][0].split()[0] for row in rows]
    assert 0 < firsts.count("good") < len(rows)  # "chosen" is shown as A for some rows only
    assert all(row["answers"][row["given"]].startswith("good") for row in rows)
    # Always pick the answer shown as A: agreement with the input is then the rows where A was chosen.
    summary, _ = _run(queue, tmp_path / "out.jsonl", "a\n" * 12)
    assert summary["counts"]["agreed_with_input"] == firsts.count("good")
    assert summary["counts"]["disagreed_with_input"] == firsts.count("bad")
    out_pairs = read_pairs(tmp_path / "out.jsonl")
    assert all(p.metadata["annotation"]["agreed_with_input"] == p.chosen.startswith("good") for p in out_pairs)


def test_rows_without_id_resume_by_content(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS]
    queue = _write(tmp_path / "queue.jsonl", rows)
    out = tmp_path / "out.jsonl"
    _run(queue, out, "a\nq\n")
    _write(queue, list(reversed(rows)))  # reordered input: the decided row is still recognised
    summary, shown = _run(queue, out, "a\na\n")
    assert summary["finished"] is True and summary["pairs"] == 3 and "What does E12 mean?" not in shown


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "answers": ["only one"]}, "two non-empty strings"),
    ({"prompt": "q", "answers": ["same", "same"]}, "identical"),
    ({"prompt": "q", "answers": ["a", "b"], "extra": 1}, "unknown keys"),
    ({"prompt": "", "answers": ["a", "b"]}, "prompt is empty"),
    ({"prompt": "q", "chosen": "a"}, "rejected"),
])
def test_bad_input_names_the_line(tmp_path, row, message):
    queue = _write(tmp_path / "queue.jsonl", [ROWS[0], row])
    with pytest.raises(UserError, match=rf"queue.jsonl:2: .*{message}"):
        load_queue(queue)


def test_bad_progress_file_and_same_in_out(tmp_path):
    queue = _write(tmp_path / "queue.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    progress_path(out).write_text("not json")
    with pytest.raises(UserError, match="progress file"):
        _run(queue, out, "a\n")
    with pytest.raises(UserError, match="must differ"):
        _run(queue, queue, "a\n")


def test_cli_annotate_from_piped_stdin(tmp_path):
    queue = _write(tmp_path / "queue.jsonl", ROWS)
    out = tmp_path / "cli.jsonl"
    cmd = [sys.executable, "-c", "from llmops_ray.cli import main; main()", "annotate", "--in", str(queue), "--out", str(out)]
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home")}
    first = subprocess.run(cmd, input="a\nq\n", capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1])["pairs"] == 1
    second = subprocess.run(cmd, input="a\nb\n", capture_output=True, text=True, timeout=120, env=env)
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["finished"] is True and summary["pairs"] == 3
    missing = subprocess.run(cmd[:-4] + ["--in", str(tmp_path / "nope.jsonl"), "--out", str(out)],
                             input="", capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode == 2 and "not found" in missing.stderr
