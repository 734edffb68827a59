"""What the rule tests read from a report: who a rule fired on, and what it could not judge."""

from __future__ import annotations

from exconn.rules.base import Report, Severity


def fired(report: Report) -> list[tuple[str, Severity]]:
    return [(f.target.identity, f.severity) for f in report.findings]


def cannot(report: Report) -> list[str]:
    return [s.target.identity for s in report.skipped if s.target]
