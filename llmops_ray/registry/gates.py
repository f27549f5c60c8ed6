"""Eval-gated promotion: a candidate replaces production only when it is not worse.

For every gate metric of the candidate's policy: the candidate must have a stored
value, meet the absolute ``threshold`` (floor or ceiling by ``direction``), and not be
worse than current production by more than ``tolerance``. ``--force --reason`` lets a
refused promotion through and records the failed checks in the audit trail.

``win_rate`` (pairwise evaluation) is already measured against production: it is not compared
with production's own stored value (that one was measured against an older version), and a
candidate with no production to compare with passes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmops_ray.config import UserError
from llmops_ray.registry.manifest import GateMetric

# Metrics that are measured against the current production version (candidate vs production).
RELATIVE_TO_PRODUCTION = {"win_rate"}


@dataclass
class GateCheck:
    """The outcome of one gate metric."""

    metric: str
    direction: str
    candidate: float | None
    production: float | None
    threshold: float | None
    tolerance: float
    passed: bool
    reason: str


@dataclass
class GateReport:
    """All gate checks for one candidate against one production version."""

    checks: list[GateCheck] = field(default_factory=list)
    production_version: int | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.metric}: {c.reason}" for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "production_version": self.production_version,
            "checks": [c.__dict__ for c in self.checks],
        }


def check_gate(gate: GateMetric, candidate: float | None, production: float | None,
               has_production: bool = True) -> GateCheck:
    """One gate: presence, absolute threshold, then regression against production.

    ``has_production``: whether a production version exists (a relative metric such as
    ``win_rate`` cannot be measured without one, so it passes then)."""
    higher = gate.direction == "higher"
    relative = gate.metric.rsplit("/", 1)[-1] in RELATIVE_TO_PRODUCTION

    def done(passed: bool, reason: str) -> GateCheck:
        return GateCheck(gate.metric, gate.direction, candidate, production, gate.threshold,
                         gate.tolerance, passed, reason)

    if candidate is None and relative and not has_production:
        return done(True, "no production version to compare with")
    if candidate is None:
        return done(False, "candidate has no evaluation result for this metric (run `llmops eval` first)")
    if relative:
        production = None  # measured against production already
    if gate.threshold is not None:
        if higher and candidate < gate.threshold:
            return done(False, f"{candidate:.4g} is below the threshold {gate.threshold:.4g}")
        if not higher and candidate > gate.threshold:
            return done(False, f"{candidate:.4g} is above the threshold {gate.threshold:.4g}")
    if production is not None:
        regression = (production - candidate) if higher else (candidate - production)
        if regression > gate.tolerance + 1e-12:
            return done(False, f"{candidate:.4g} is worse than production's {production:.4g}"
                               f" (tolerance {gate.tolerance:.4g})")
        return done(True, f"{candidate:.4g} vs production {production:.4g}")
    return done(True, f"{candidate:.4g} (no production value to compare)")


def evaluate_gates(gates: list[GateMetric], candidate: dict[str, float],
                   production: dict[str, float] | None, production_version: int | None = None) -> GateReport:
    """Check every gate of a policy; ``candidate``/``production`` are flat metric maps."""
    report = GateReport(production_version=production_version)
    for gate in gates:
        report.checks.append(check_gate(gate, candidate.get(gate.metric),
                                        (production or {}).get(gate.metric), has_production=production is not None))
    return report


def promote(name: str, version: int, to: str = "production", force: bool = False,
            reason: str = "") -> tuple[Any, GateReport]:
    """Move alias ``to`` to ``name@version`` when the gates pass (or when forced with a reason).

    Returns ``(StackVersion, GateReport)``; raises :class:`UserError` when refused.
    """
    import llmops_ray.registry.store as store

    if force and not reason.strip():
        raise UserError("--force needs --reason \"...\" (it is recorded in the audit trail)")
    candidate = store.get_version(name, version)
    try:
        current = store.resolve_stack(f"{name}@{to}")
    except UserError:
        current = None
    if current is not None and current.version == candidate.version:
        raise UserError(f"{name}@{version} already is {to}")
    report = evaluate_gates(candidate.manifest.policy.gates, candidate.metrics(),
                            current.metrics() if current else None,
                            current.version if current else None)
    if not report.passed and not force:
        store._audit("registry.promote_refused", stack=name, version=version, alias=to,
                     failures=report.failures())
        raise UserError(f"promotion of {name}@{version} to {to} refused: " + "; ".join(report.failures()))
    # One audit record per promotion; a forced one carries the failed checks beside the reason.
    stack = store.set_alias(name, to, version, reason=reason or "gates passed", _event="registry.promoted",
                            _audit_fields={"forced": not report.passed, "failures": report.failures()})
    return stack, report
