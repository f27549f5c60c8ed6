"""What every rail returns, and the OpenAI error body of a blocked request.

A :class:`RailDecision` is small, immutable and JSON-friendly so that the gateway can count
it (metrics labelled by ``rail`` and ``action``) and log it (``to_log()`` carries no user
text: reasons name the pattern or category, never the matched content).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["allow", "block", "mask", "flag"]
ACTIONS: tuple[str, ...] = ("allow", "block", "mask", "flag")

#: HTTP status and OpenAI error code of a request stopped by a rail.
BLOCKED_STATUS = 400
BLOCKED_CODE = "content_blocked"
#: HTTP status and OpenAI error code of a request with more text than the rails scan
#: (``RailsConfig.max_scan_chars``): refused, never let through unscanned.
TOO_LARGE_STATUS = 413
TOO_LARGE_CODE = "input_too_large_for_rails"


@dataclass(frozen=True)
class RailDecision:
    """The outcome of one rail on one request (or one stream).

    ``name`` is the rail (``input.injection``, ``input.pii``, ``context.injection``,
    ``output.pii``, ``output.moderation``); ``score`` is in [0, 1] (a probability or a
    pattern weight; for masking rails the fraction of inputs touched is not meaningful,
    so they report 1.0 when they acted); ``details`` holds counts (e.g. PII per type).
    """

    name: str
    action: Action
    reason: str = ""
    score: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    def to_log(self) -> dict[str, Any]:
        """A JSON-ready dict for request logs, metrics labels and the audit log."""
        out: dict[str, Any] = {"rail": self.name, "action": self.action, "reason": self.reason,
                               "score": round(float(self.score), 4)}
        if self.details:
            out["details"] = dict(self.details)
        return out


class ContentBlocked(Exception):
    """Raised (optionally) by callers that prefer exceptions; carries the blocking decision."""

    status_code = BLOCKED_STATUS

    def __init__(self, decision: RailDecision):
        super().__init__(blocked_message(decision))
        self.decision = decision

    def to_body(self) -> dict[str, Any]:
        return blocked_error_body(self.decision)


class InputTooLarge(Exception):
    """The request holds more text than the rails may scan: HTTP 413 ``input_too_large_for_rails``."""

    status_code = TOO_LARGE_STATUS

    def __init__(self, chars: int, limit: int, param: str = "messages"):
        self.chars = chars
        self.limit = limit
        self.param = param
        """The request field that holds the text (``messages`` or ``prompt``)."""
        super().__init__(f"the request holds {chars} characters of text, more than the {limit} the guardrails "
                         f"scan per request; send less text")

    @property
    def decision(self) -> RailDecision:
        """The decision to log and count (sizes only, no user text)."""
        return RailDecision("input.size", "block", f"{self.chars} characters > limit {self.limit}", 1.0,
                            {"chars": self.chars, "limit": self.limit})

    def to_body(self) -> dict[str, Any]:
        """OpenAI error body for HTTP 413."""
        return {"error": {"message": str(self), "type": "invalid_request_error", "param": self.param,
                          "code": TOO_LARGE_CODE}}


def blocked_message(decision: RailDecision) -> str:
    """Human-readable message naming the rail, e.g. ``request blocked by rail 'input.injection': ...``."""
    reason = f": {decision.reason}" if decision.reason else ""
    return f"request blocked by rail '{decision.name}'{reason}"


def blocked_error_body(decision: RailDecision) -> dict[str, Any]:
    """OpenAI error body for HTTP 400 ``content_blocked``."""
    return {
        "error": {
            "message": blocked_message(decision),
            "type": "invalid_request_error",
            "param": None,
            "code": BLOCKED_CODE,
        }
    }
