"""Per-stack guardrail settings: which rails run, their thresholds and their actions.

A model stack (registry) carries one :class:`RailsConfig` under ``rails:``; the gateway
builds one :class:`~llmops_ray.safety.rails.Rails` per distinct config and reuses it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmops_ray.config import StrictModel


class InputRailsConfig(StrictModel):
    """Rails on the request before it reaches the model."""

    injection: bool = True
    """Run prompt-injection / jailbreak detection on every non-system message, and on the last user
    turns joined (multi-turn set-ups)."""
    injection_threshold: float = Field(0.6, ge=0.0, le=1.0)
    """Score (max of pattern weight and classifier probability) at or above which a message is a hit.

    0.6 rather than 0.5: on out-of-domain benign text (technical docs) the classifier's
    false positives drop from ~12% to ~4% for a 0-3 point loss of recall on the held-out set;
    patterns weigh 0.8-0.95 and are not affected."""
    injection_action: Literal["block", "flag"] = "block"
    """``block``: 400 ``content_blocked``; ``flag``: let it through and record the decision."""
    scan_system: bool = False
    """Also score system/developer messages (for apps that put untrusted data, e.g. a user profile or
    retrieved text, into the system prompt); off by default: operator prompts are trusted and often
    talk about instructions and rules."""
    injection_classifier: bool = True
    """Use the trained classifier layer (False: normalisation + patterns only)."""
    pii: bool = True
    """Find PII in every message (all roles)."""
    pii_action: Literal["mask", "block", "flag"] = "mask"
    """``mask``: typed placeholders replace the values before the model (and any log) sees them."""
    moderation: bool = False
    """Also run the moderation lexicon on user messages (off by default: users may ask about harms)."""


class ContextRailsConfig(StrictModel):
    """Rail on retrieved knowledge-base chunks before they enter the prompt."""

    enabled: bool = True
    """Scan every retrieved chunk for injected instructions."""
    threshold: float = Field(0.6, ge=0.0, le=1.0)
    """Injection score at or above which a sentence of a chunk counts as an instruction."""
    action: Literal["neutralize", "drop", "flag"] = "neutralize"
    """``neutralize``: replace the offending sentences with a marker; ``drop``: remove the chunk; ``flag``: keep as is."""


class OutputRailsConfig(StrictModel):
    """Rails on the model's answer, streamed or not."""

    pii: bool = True
    """Mask PII that the model emits (a leak from training data or context)."""
    pii_action: Literal["mask", "flag"] = "mask"
    """``mask``: typed placeholders; ``flag``: pass through and record."""
    links: bool = True
    """Neutralise exfiltration links: markdown images/links (and HTML images, autolinks) to hosts off
    ``allowed_link_hosts`` or whose query carries data, and bare URLs carrying data to such hosts."""
    link_action: Literal["neutralize", "flag"] = "neutralize"
    """``neutralize``: images become ``[image removed: host]``, links keep their text and lose the URL;
    ``flag``: pass through and record."""
    allowed_link_hosts: list[str] = Field(default_factory=list)
    """Hosts the stack's answers may link to and embed images from (subdomains included), e.g.
    ``[docs.acme.com, acme.com]``; relative links are always allowed. Empty: no external host."""
    moderation: bool = True
    """Run the moderation check on the answer."""
    moderation_threshold: float = Field(0.5, ge=0.0, le=1.0)
    """Category weight at or above which the answer is a hit."""
    moderation_action: Literal["block", "flag"] = "block"
    """``block``: stop the answer (``finish_reason: content_filter``); ``flag``: record only."""
    hold_chars: int = Field(64, ge=16, le=4096)
    """Stream window: text within this many characters of the end that may start a PII value is held back (>= the longest spaced PII value, 42 for an IBAN)."""
    max_buffer_chars: int = Field(512, ge=64, le=65536)
    """Bound on held-back text: beyond it the stream is cut even inside an unbroken token."""
    context_chars: int = Field(128, ge=0, le=4096)
    """Already-emitted characters the moderation check still sees, so a phrase split across chunks is caught."""
    block_message: str = "[response stopped by content filter]"
    """Text sent in place of the rest of an answer stopped by moderation."""


#: Default of :attr:`RailsConfig.max_scan_chars` (256 Ki characters). Every rail is linear in
#: its input; the slowest measured (thousands of IP addresses or random digit groups through
#: the input or whole-answer rail) costs about 3-4 ms per KB on one core, so this caps one
#: request's input-rail work at ~0.5-0.8 s (benchmarks/rails.py measures it at the limit),
#: while it is 8x the longest prompt a 8192-token model (the largest shipped) accepts at 4
#: characters per token: no normal request reaches it.
DEFAULT_MAX_SCAN_CHARS = 262_144


class RailsConfig(StrictModel):
    """Guardrails of one model stack."""

    enabled: bool = True
    """Master switch: False skips every rail (decisions list stays empty)."""
    max_scan_chars: int = Field(DEFAULT_MAX_SCAN_CHARS, ge=1024, le=16_777_216)
    """Most characters (of text, per request) a rail scans; this bounds the time the rails spend on one request.

    Beyond it nothing is let through unscanned: the request's messages (all text parts of
    every message, or the prompts) -> HTTP 413 ``input_too_large_for_rails``; retrieved
    chunks past the limit -> dropped (``context.size``); an answer (per choice) past the
    limit -> stopped with ``finish_reason: content_filter`` (``output.size``)."""
    input: InputRailsConfig = Field(default_factory=InputRailsConfig)
    """Request rails."""
    context: ContextRailsConfig = Field(default_factory=ContextRailsConfig)
    """Retrieved-context rail."""
    output: OutputRailsConfig = Field(default_factory=OutputRailsConfig)
    """Answer rails."""
