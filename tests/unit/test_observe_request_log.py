"""Request log: async LanceDB writer, PII masking, bounded queue, queries, feedback, eval export,
and the gateway hook (streamed and non-streamed identical requests cost the same)."""

import asyncio
import threading
import time

import pytest

from llmops_ray.config import UserError
from llmops_ray.evaluate.suite import QAItem
from llmops_ray.observe.request_log import (
    FeedbackError,
    RequestLogger,
    export_eval_case,
    parse_since,
    query_feedback,
    query_requests,
    submit_feedback,
)
from llmops_ray.observe.observer import Observer
from llmops_ray.safety.pii import find_pii

EMAIL, PHONE = "jane.doe@example.com", "+1 415 555 0100"


def _row(i, **kw):
    row = {
        "request_id": f"req-{i}",
        "response_id": f"chatcmpl-{i}",
        "ts": 1_000_000.0 + i,
        "tenant": "acme",
        "stack": "support",
        "model": "tiny-base",
        "variant": "stable",
        "status": 200,
        "latency_s": 0.5,
        "ttft_s": 0.1,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "request": {"messages": [{"role": "user", "content": f"question {i}"}]},
        "response": f"answer {i}",
    }
    row.update(kw)
    return row


def test_parse_since():
    now = 1_000_000.0
    assert parse_since("24h", now) == now - 86400
    assert parse_since("30m", now) == now - 1800
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2026-11-20", now) == 1795132800.0  # midnight UTC
    assert parse_since("2026-11-20T01:00:00+01:00", now) == 1795132800.0
    assert parse_since(None) is None
    with pytest.raises(UserError, match="expected a duration"):
        parse_since("yesterday", now)


def test_rows_are_written_masked_and_queryable(tmp_path):
    logger = RequestLogger(tmp_path, flush_interval_s=0.05)
    pii_row = _row(
        0,
        request={"messages": [{"role": "user", "content": f"mail {EMAIL} or call {PHONE}"}]},
        response=f"I will write to {EMAIL}",
        citations=[{"doc_id": "d1", "text": f"contact {EMAIL}"}],
        rails=[{"rail": "input.pii", "action": "mask"}],
    )
    assert logger.log(pii_row)
    for i in range(1, 6):
        assert logger.log(_row(i, tenant="beta" if i % 2 else "acme", variant="canary" if i == 5 else "stable",
                               status=500 if i == 3 else 200))
    assert logger.flush(60)
    logger.close()
    assert logger.stats["written"] == 6 and logger.stats["dropped"] == 0

    rows = query_requests(db_dir=tmp_path)
    assert [r["request_id"] for r in rows] == [f"req-{i}" for i in range(6)]
    first = rows[0]
    for field in ("request", "response", "citations"):
        assert EMAIL not in first[field] and not find_pii(first[field]), field
    assert "[EMAIL]" in first["request"] and "[PHONE]" in first["request"]
    assert first["pii"] == '{"EMAIL": 3, "PHONE": 1}'
    assert first["ts_iso"].startswith("1970-01-12T")

    assert {r["request_id"] for r in query_requests(tenant="beta", db_dir=tmp_path)} == {"req-1", "req-3", "req-5"}
    assert [r["request_id"] for r in query_requests(variant="canary", db_dir=tmp_path)] == ["req-5"]
    assert [r["request_id"] for r in query_requests(status="5xx", db_dir=tmp_path)] == ["req-3"]
    assert len(query_requests(status="ok", db_dir=tmp_path)) == 5
    assert [r["request_id"] for r in query_requests(request_id="chatcmpl-2", db_dir=tmp_path)] == ["req-2"]
    assert [r["request_id"] for r in query_requests(since=1_000_004.0, db_dir=tmp_path)] == ["req-4", "req-5"]
    assert [r["request_id"] for r in query_requests(limit=2, db_dir=tmp_path)] == ["req-4", "req-5"]
    assert query_requests(tenant="o'brien", db_dir=tmp_path) == []  # quotes are escaped
    with pytest.raises(UserError):
        query_requests(status="bad", db_dir=tmp_path)


def test_full_queue_drops_without_blocking_and_close_flushes(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def slow_mask(text):
        entered.set()
        release.wait(30)
        return text, {}

    dropped = []
    logger = RequestLogger(tmp_path, max_queue=2, flush_interval_s=0.01, mask=slow_mask,
                           on_drop=lambda table, n: dropped.append((table, n)))
    assert logger.log(_row(0))
    assert entered.wait(30)  # the writer holds row 0 and is stuck masking it
    assert logger.log(_row(1)) and logger.log(_row(2))  # queue: 2 slots
    t0 = time.perf_counter()
    assert logger.log(_row(3)) is False  # full: dropped at once, not blocked
    assert time.perf_counter() - t0 < 0.05
    assert logger.stats["dropped"] == 1 and dropped == [("requests", 1)]
    release.set()
    logger.close()  # flushes rows 1 and 2
    assert logger.stats["written"] == 3
    assert len(query_requests(db_dir=tmp_path)) == 3
    assert logger.log(_row(4)) is False  # closed


def test_failed_masking_never_writes_the_row(tmp_path):
    def broken(text):
        raise RuntimeError("boom")

    logger = RequestLogger(tmp_path, flush_interval_s=0.01, mask=broken)
    logger.log(_row(0, response=f"to {EMAIL}"))
    logger.close()
    assert logger.stats["written"] == 0 and logger.stats["write_errors"] == 1
    assert query_requests(db_dir=tmp_path) == []


def test_feedback_round_trip(tmp_path):
    logger = RequestLogger(tmp_path, flush_interval_s=0.01)
    logger.log(_row(7))
    logger.close()
    stored = submit_feedback(
        {"response_id": "chatcmpl-7", "rating": "down", "comment": f"wrong; mail me at {EMAIL}"},
        tenant="acme", key_id="key-1", db_dir=tmp_path,
    )
    assert stored["object"] == "feedback" and stored["rating"] == "down" and stored["id"].startswith("fb-")
    [fb] = query_feedback(response_id="chatcmpl-7", db_dir=tmp_path)
    assert fb["request_id"] == "req-7" and fb["tenant"] == "acme" and fb["stack"] == "support"
    assert fb["comment"] == "wrong; mail me at [EMAIL]"
    # a JSON text body works too
    submit_feedback('{"response_id": "chatcmpl-7", "rating": "up"}', db_dir=tmp_path)
    assert [f["rating"] for f in query_feedback(response_id="chatcmpl-7", db_dir=tmp_path)] == ["down", "up"]

    cases = [
        ({"response_id": "chatcmpl-7", "rating": "meh"}, 400, "invalid_value"),
        ({"response_id": "chatcmpl-7", "rating": "up", "extra": 1}, 400, "invalid_value"),
        ("{not json", 400, "invalid_json"),
        ([1, 2], 400, "invalid_body"),
        ({"response_id": "chatcmpl-404", "rating": "up"}, 404, "response_not_found"),
    ]
    for body, status, code in cases:
        with pytest.raises(FeedbackError) as info:
            submit_feedback(body, db_dir=tmp_path)
        assert (info.value.status, info.value.code) == (status, code), body
        assert set(info.value.body()["error"]) == {"message", "type", "code", "param"}
    with pytest.raises(FeedbackError) as info:  # another tenant's response is not found
        submit_feedback({"response_id": "chatcmpl-7", "rating": "up"}, tenant="beta", db_dir=tmp_path)
    assert info.value.status == 404
    assert len(query_feedback(db_dir=tmp_path)) == 2  # nothing stored by the failures


def test_export_eval_case_is_a_suite_qa_item():
    row = _row(3, request='{"messages": [{"role": "system", "content": "be brief"}, '
                          '{"role": "user", "content": "What is [EMAIL]?"}]}', response="An address.")
    case = export_eval_case(row)
    assert case == {"type": "qa", "id": "log-req-3", "question": "What is [EMAIL]?", "answer": "An address."}
    QAItem.model_validate(case)
    assert export_eval_case(_row(4, request='{"prompt": "Say hi"}', response="hi"))["question"] == "Say hi"
    with pytest.raises(UserError, match="no logged response"):
        export_eval_case(_row(5, response=""))


def test_stream_and_non_stream_cost_the_same_through_the_gateway_hook(tmp_path):
    from llmops_ray.observe.hook import ObserveHook
    from llmops_ray.common.gateway_hooks import RequestContext

    hook = ObserveHook(metrics=False, db_dir=str(tmp_path), flush_interval_s=0.01)
    messages = [{"role": "user", "content": "hello"}]
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}

    plain = RequestContext(route="chat", body={"model": "support", "messages": messages}, headers={})
    plain.requested_model, plain.model, plain.tenant = "support", "tiny-base", "acme"
    plain.extra["stack"] = {"name": "support", "version": 1, "variant": "production"}
    asyncio.run(hook.before_request(plain))
    hook.on_response(plain, {"id": "chatcmpl-a", "choices": [], "usage": usage})
    plain.usage, plain.output_text, plain.finished_at = usage, ["a b c"], time.perf_counter()
    row_plain = hook.record_context(plain)

    streamed = RequestContext(route="chat", body={"model": "support", "messages": messages, "stream": True},
                              headers={}, stream=True)
    streamed.requested_model, streamed.model, streamed.tenant = "support", "tiny-base", "acme"
    streamed.extra["stack"] = {"name": "support", "version": 1, "variant": "production"}
    asyncio.run(hook.before_request(streamed))
    # The gateway asks the engine for usage on every stream (and drops the usage chunk
    # after the hooks when the client did not ask): the hook changes neither body nor chunks.
    assert "stream_options" not in streamed.body
    streamed.first_chunk_at = time.perf_counter()
    for piece in ("a", " b", " c"):
        chunk = {"id": "chatcmpl-b", "choices": [{"index": 0, "delta": {"content": piece}}]}
        assert hook.on_chunk(streamed, chunk) == chunk
        streamed.output_text.append(piece)
    usage_chunk = {"id": "chatcmpl-b", "choices": [], "usage": usage}
    assert hook.on_chunk(streamed, usage_chunk) == usage_chunk  # the gateway's quota needs it too
    streamed.finished_at = time.perf_counter()
    row_stream = hook.record_context(streamed)

    assert row_plain["cost_usd"] > 0
    assert row_stream["cost_usd"] == row_plain["cost_usd"]
    assert (row_stream["prompt_tokens"], row_stream["completion_tokens"]) == (12, 3)
    assert row_stream["response_id"] == "chatcmpl-b" and row_stream["stream"] is True
    assert (row_stream["stack"], row_stream["model"]) == ("support", "tiny-base")
    hook.close()
    rows = {r["response_id"]: r for r in query_requests(db_dir=tmp_path)}
    assert rows["chatcmpl-a"]["cost_usd"] == rows["chatcmpl-b"]["cost_usd"]
    assert rows["chatcmpl-b"]["response"] == rows["chatcmpl-a"]["response"] == "a b c"


def test_observer_trace_records_once(tmp_path):
    observer = Observer(metrics=False, db_dir=str(tmp_path), flush_interval_s=0.01)
    trace = observer.start("support", "tiny-base", "canary", "acme", stream=True, request={"prompt": "hi"})
    trace.chunk()
    trace.chunk(tokens=2)
    trace.rail("input.injection", "allow")
    trace.retrieval(0.01)
    first = trace.finish(status=200, prompt_tokens=4)
    assert first["completion_tokens"] == 3  # counted from the chunks
    assert 0 <= first["ttft_s"] <= first["latency_s"]
    assert trace.finish(status=500) is first  # idempotent
    failed = observer.start("support").finish(status=503, error="engine down")
    assert failed["ttft_s"] is None and failed["cost_usd"] == 0.0
    observer.close()
    assert len(query_requests(db_dir=tmp_path)) == 2


def _lookup_plan(db_dir, response_id, tenant=None):
    from llmops_ray.observe.request_log import REQUESTS, _open_table, response_query

    return response_query(_open_table(db_dir, REQUESTS, create=False), response_id, tenant).explain_plan()


def test_feedback_lookup_goes_through_the_response_id_index(tmp_path):
    from llmops_ray.observe.request_log import REQUESTS, _open_table, find_response

    logger = RequestLogger(tmp_path, flush_interval_s=0.01, index_every_rows=5, index_interval_s=3600)
    for i in range(3):
        logger.log(_row(i))
    assert logger.flush(60)
    # The writer created the index with the table: lookups use it, not a scan of the log.
    assert "ScalarIndexQuery" in _lookup_plan(tmp_path, "chatcmpl-1", "acme")
    tbl = _open_table(tmp_path, REQUESTS, create=False)
    assert [i.columns for i in tbl.list_indices()] == [["response_id"]]
    # Rows appended after the index are found too (scanned until folded in) ...
    for i in range(3, 9):
        logger.log(_row(i))
    assert logger.flush(60)
    assert find_response("chatcmpl-8", "acme", tmp_path)["request_id"] == "req-8"
    # ... and folded in once the writer has written index_every_rows new rows.
    tbl.checkout_latest()
    stats = tbl.index_stats("response_id_idx")
    assert stats.num_unindexed_rows == 0 and stats.num_indexed_rows == 9
    logger.close()
    assert logger.stats["index_errors"] == 0


def test_feedback_of_another_tenant_is_404_even_when_ids_collide(tmp_path):
    logger = RequestLogger(tmp_path, flush_interval_s=0.01)
    logger.log(_row(1, tenant="acme", request_id="req-acme", response_id="chatcmpl-same"))
    logger.log(_row(2, tenant="beta", request_id="req-beta", response_id="chatcmpl-same"))
    logger.log(_row(3, tenant="beta", request_id="req-beta-only", response_id="chatcmpl-beta"))
    logger.close()
    submit_feedback({"response_id": "chatcmpl-same", "rating": "up"}, tenant="acme", db_dir=tmp_path)
    [fb] = query_feedback(response_id="chatcmpl-same", db_dir=tmp_path)
    assert (fb["request_id"], fb["tenant"]) == ("req-acme", "acme")  # its own row, not beta's newer one
    with pytest.raises(FeedbackError) as info:
        submit_feedback({"response_id": "chatcmpl-beta", "rating": "up"}, tenant="acme", db_dir=tmp_path)
    assert info.value.status == 404 and info.value.body()["error"]["param"] == "response_id"


def test_two_writers_share_the_table_and_the_index(tmp_path):
    # Two replicas' writers open the same table at once (each creates the missing index);
    # every row of both is found by its response id.
    from llmops_ray.observe.request_log import find_response

    a = RequestLogger(tmp_path, flush_interval_s=0.01, index_every_rows=10)
    b = RequestLogger(tmp_path, flush_interval_s=0.01, index_every_rows=10)
    for i in range(40):
        (a if i % 2 else b).log(_row(i))
    a.close()
    b.close()
    assert a.stats["written"] + b.stats["written"] == 40
    missing = [i for i in range(40) if (find_response(f"chatcmpl-{i}", "acme", tmp_path) or {}).get("request_id")
               != f"req-{i}"]
    assert missing == []
    assert "ScalarIndexQuery" in _lookup_plan(tmp_path, "chatcmpl-3")
