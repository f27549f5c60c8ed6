"""`llmops cost report`, `llmops logs query`, `llmops slo report` on a log in a fresh workspace."""

import csv
import json
import time

import pytest

from llmops_ray.cli import main
from llmops_ray.observe.request_log import USAGE, RequestLogger


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture()
def logged(tmp_path, monkeypatch):
    """A workspace whose request log holds 4 requests and one replica-hour of usage."""
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path))
    now = time.time()
    logger = RequestLogger(flush_interval_s=0.01)
    specs = [  # tenant, variant, status, prompt, completion, latency, ttft
        ("acme", "stable", 200, 1000, 2000, 0.4, 0.1),
        ("acme", "canary", 200, 1000, 2000, 0.6, 0.2),
        ("beta", "stable", 500, 0, 0, 0.1, None),
        ("beta", "stable", 200, 2000, 0, 0.2, 0.05),
    ]
    for i, (tenant, variant, status, p, c, lat, ttft) in enumerate(specs):
        logger.log({
            "request_id": f"r{i}", "response_id": f"chatcmpl-{i}", "ts": now - 60 + i, "tenant": tenant,
            "stack": "support", "model": "tiny-base", "variant": variant, "status": status,
            "prompt_tokens": p, "completion_tokens": c, "latency_s": lat, "ttft_s": ttft,
            "request": {"messages": [{"role": "user", "content": f"q{i} from jane@example.com"}]},
            "response": f"answer {i}",
        })
    logger.log({"ts_start": now - 3600, "ts_end": now, "stack": "support", "variant": "stable",
                "accelerator": "cpu", "replica_id": "x", "replica_seconds": 3600.0}, table=USAGE)
    logger.close()
    return tmp_path


def test_cost_report_prints_table_and_writes_csv(capsys, logged, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("default: {prompt_per_1m: 1.0, completion_per_1m: 2.0}\nhardware: {cpu: 0.6}\n")
    out_csv = tmp_path / "out" / "cost.csv"
    code, out, _ = _run(capsys, "cost", "report", "--since", "24h", "--prices", str(prices), "--csv", str(out_csv))
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["tenant", "stack", "variant"]
    assert "TOTAL" in out and out.strip().endswith(f"wrote {out_csv}")
    rows = {(r["tenant"], r["variant"]): r for r in csv.DictReader(out_csv.open())}
    # acme/stable: 1000*1 + 2000*2 = 5000 per 1M = 0.005 tokens; stable tokens: acme 3000, beta 2000
    # -> acme gets 3/5 of the 0.6 replica-hour = 0.36
    acme = rows[("acme", "stable")]
    assert float(acme["token_cost"]) == pytest.approx(0.005)
    assert float(acme["hardware_cost"]) == pytest.approx(0.36)
    assert float(rows[("beta", "stable")]["hardware_cost"]) == pytest.approx(0.24)
    assert float(rows[("acme", "canary")]["hardware_cost"]) == 0.0
    assert int(rows[("beta", "stable")]["requests"]) == 2 and acme["currency"] == "USD"


def test_logs_query_filters_and_eval_export(capsys, logged, tmp_path):
    code, out, _ = _run(capsys, "logs", "query", "--since", "1h", "--tenant", "beta")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["request_id"] for r in lines] == ["r2", "r3"]
    assert lines[0]["request"]["messages"][0]["content"] == "q2 from [EMAIL]"
    code, out, _ = _run(capsys, "logs", "query", "--status", "5xx")
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == ["r2"]
    code, out, _ = _run(capsys, "logs", "query", "--variant", "canary", "--stack", "support")
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == ["r1"]

    suite = tmp_path / "from_logs.jsonl"
    code, out, _ = _run(capsys, "logs", "query", "--id", "chatcmpl-1", "--eval-case", "--output", str(suite))
    assert code == 0 and json.loads(out) == {"output": str(suite), "lines": 1}
    case = json.loads(suite.read_text())
    assert case == {"type": "qa", "id": "log-r1", "question": "q1 from [EMAIL]", "answer": "answer 1"}
    from llmops_ray.evaluate.suite import load_suite

    assert len(load_suite(str(suite)).items) == 1

    code, _, err = _run(capsys, "logs", "query", "--since", "last week")
    assert code == 2 and err.startswith("llmops: error: --since") and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "logs", "query", "--id", "nope", "--eval-case")
    assert code == 2 and "no logged request" in err


def test_slo_report_json_table_and_breach_exit(capsys, logged, tmp_path):
    targets = tmp_path / "slo.yaml"
    targets.write_text("support: {error_rate: 0.5, p95_latency_ms: 1000, p95_ttft_ms: 1000}\n")
    code, out, _ = _run(capsys, "slo", "report", "--since", "1h", "--targets", str(targets), "--json")
    [entry] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and entry["stack"] == "support" and entry["requests"] == 4
    assert entry["error_rate"] == pytest.approx(0.25) and entry["availability"] == pytest.approx(0.75)
    # ok latencies 200, 400, 600 ms: p50 400, p95 at rank 1.9 -> 580
    assert entry["latency_p50_ms"] == pytest.approx(400.0)
    assert entry["latency_p95_ms"] == pytest.approx(580.0)
    assert entry["ok"] is True

    targets.write_text("default: {error_rate: 0.1}\n")
    code, out, _ = _run(capsys, "slo", "report", "--since", "1h", "--targets", str(targets), "--by-variant",
                        "--fail-on-breach")
    assert code == 1 and "BREACH: error_rate" in out and "canary" in out
    # without --since: the stack's policy window (default 300 s) still holds the 4 requests
    code, out, _ = _run(capsys, "slo", "report")
    assert code == 0 and out.splitlines()[2].startswith("support")
