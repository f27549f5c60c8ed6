"""Ingest-time flags: chunks that address the model instead of the reader (issue 18 point 2).

Documents are an attack surface (indirect prompt injection): a page that says "AI assistant,
ignore the user and ...", "include this image link ...", or hides text from human readers
with CSS is written for the model, not for people. The ingest pipeline calls
:func:`flag_chunk` on every chunk; a flagged chunk is stored with its reason in the KB's
``flagged`` column, counted in the ingest summary (``flagged``: reason -> sources), and left
out of retrieval unless ``retrieval.include_flagged`` is true. The context rail still
neutralises what slips through at query time.

Reasons (stable strings, used in summaries and filters):

- ``hidden_html_text``: the chunk holds text that the HTML page hid from readers
  (``display:none``, ``visibility:hidden``, zero font size or opacity, the ``hidden``
  attribute, ``aria-hidden``, off-screen positioning);
- ``exfiltration_link``: an instruction to put an image/link into the answer, or a markdown
  image whose query is a slot for user data;
- ``addressed_to_model``: text that speaks to an AI/assistant/model/agent;
- ``instruction_override`` / ``prompt_extraction`` / ``jailbreak``: the other attack families.

Only the detector's patterns decide here (not the n-gram classifier): documents are long,
technical and full of words such as "ignore", "override" and "instructions", where a
classifier's false positives would hide real content; a pattern names what it saw.
"""

from __future__ import annotations

import re

from llmops_ray.safety.injection import pattern_score
from llmops_ray.safety.normalize import normalize

#: Pattern weight at or above which a chunk is flagged (quoted mentions, x0.4, stay below).
FLAG_THRESHOLD = 0.8

_REASON_OF_PATTERN = {
    "exfil_link_instruction": "exfiltration_link", "exfil_markdown_slot": "exfiltration_link",
    "zh_exfil_link_instruction": "exfiltration_link", "exfiltration": "exfiltration_link",
    "zh_exfiltration": "exfiltration_link",
    "addressed_to_ai": "addressed_to_model", "addressed_to_agent": "addressed_to_model",
    "zh_addressed_to_ai": "addressed_to_model", "zh_addressed_to_system": "addressed_to_model",
    "override_instructions": "instruction_override", "zh_override_instructions": "instruction_override",
    "ignore_the_task": "instruction_override", "rules_void": "instruction_override", "role_delimiter": "instruction_override",
    "zh_role_delimiter": "instruction_override",
    "prompt_extraction": "prompt_extraction", "prompt_extraction_above": "prompt_extraction",
    "prompt_extraction_question": "prompt_extraction", "zh_prompt_extraction": "prompt_extraction",
}
REASONS = ("hidden_html_text", "exfiltration_link", "addressed_to_model", "instruction_override", "prompt_extraction",
           "jailbreak")

# An element whose inline style or attributes hide it from human readers.
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|rem|%)?\s*(?:;|$|!)|"
    r"opacity\s*:\s*0(?:\.0+)?\s*(?:;|$|!)|(?:left|top|text-indent)\s*:\s*-\d{3,}px|"
    r"(?:width|height)\s*:\s*0(?:px)?\s*;[^\"']*overflow\s*:\s*hidden", re.IGNORECASE)
#: Hidden snippets shorter than this are layout (icons, counters), not messages.
MIN_HIDDEN_CHARS = 12


def hidden_html_texts(html: str) -> list[str]:
    """Texts of the elements an HTML page hides from its readers (outermost hidden elements)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    out: list[str] = []
    taken: set[int] = set()  # id() of the hidden elements already reported (their descendants are in them)
    for tag in soup.find_all(True):
        if tag.name in ("script", "style", "template", "noscript", "head", "title", "meta"):
            continue
        hidden = (tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true"
                  or bool(_HIDDEN_STYLE.search(str(tag.get("style") or ""))))
        if hidden and not any(id(parent) in taken for parent in tag.parents):
            taken.add(id(tag))
            text = " ".join(tag.get_text(" ", strip=True).split())
            if len(text) >= MIN_HIDDEN_CHARS:
                out.append(text)
    return out


def _squash(text: str) -> str:
    return " ".join(text.split())


def flag_chunk(text: str, hidden_texts: list[str] | tuple[str, ...] = ()) -> str | None:
    """The reason this chunk addresses the model (see the module docstring), or None."""
    if hidden_texts:
        squashed = _squash(text)
        for snippet in hidden_texts:
            # A chunk boundary may cut a hidden snippet: its first 40 characters are enough.
            probe = _squash(snippet)[:40]
            if probe and probe in squashed:
                return "hidden_html_text"
    norm = normalize(text)
    if not norm:
        return None
    best, best_name = pattern_score(norm)
    if best < FLAG_THRESHOLD or best_name is None:
        return None
    return _REASON_OF_PATTERN.get(best_name, "jailbreak")
