"""The newcomer's first requests, with the official `openai` client, against what `make demo` printed.

    python .ci/demo_client.py '<the last line of make demo>'

Checks: the model list, a chat answer with citations, a streamed chat, an unknown model (404) and
a wrong key (401). Prints one line per check; exits 1 on the first that fails.
"""

from __future__ import annotations

import json
import sys

import openai
from openai import OpenAI

QUESTION = "How long is the warranty period?"


def check(name: str, ok: bool, detail: object = "") -> None:
    print(f"[smoke] {'ok  ' if ok else 'FAIL'} {name} {detail}".rstrip(), flush=True)
    if not ok:
        sys.exit(1)


def main(line: str) -> None:
    info = json.loads(line)
    for key in ("endpoint", "api_key", "model", "dashboard"):
        check(f"demo line has {key}", bool(info.get(key)), info.get(key) if key != "api_key" else "")
    client = OpenAI(base_url=info["endpoint"], api_key=info["api_key"], timeout=120, max_retries=0)
    model = info["model"]
    messages = [{"role": "user", "content": QUESTION}]

    ids = [m.id for m in client.models.list().data]
    check("models.list names the demo model", model in ids, ids)

    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=32)
    citations = (chat.model_extra or {}).get("citations") or []
    check("chat answers", bool(chat.choices) and chat.choices[0].message.content is not None,
          repr((chat.choices[0].message.content or "")[:80]))
    check("chat answer has citations", len(citations) > 0 and all(c.get("source") for c in citations),
          [c.get("source") for c in citations])

    chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=16, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finished = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check("streamed chat", len(chunks) > 1 and bool(finished), f"{len(chunks)} chunks, finish={finished}, {text[:60]!r}")

    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
        check("unknown model -> 404", False, "answered")
    except openai.NotFoundError as exc:
        # The client hands over the body's "error" object: OpenAI's shape has a message and a type.
        body = exc.body if isinstance(exc.body, dict) else {}
        check("unknown model -> 404", exc.status_code == 404 and "message" in body and "type" in body, body)

    bad = OpenAI(base_url=info["endpoint"], api_key="sk-llmops-000000000000-wrong-key-wrong-key-wrong", max_retries=0)
    try:
        bad.chat.completions.create(model=model, messages=messages, max_tokens=4)
        check("wrong key -> 401", False, "answered")
    except openai.AuthenticationError as exc:
        check("wrong key -> 401", exc.status_code == 401)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
