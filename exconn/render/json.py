"""`--format json`: the machine contract (see README), streamed finding by finding."""

from __future__ import annotations

from typing import Any, TextIO

from exconn._version import __version__
from exconn.model import Organization
from exconn.render.common import (
    RunInfo,
    Stream,
    evidence_sections,
    finding_json,
    inventory,
    skip_json,
    summary,
    write_json,
)
from exconn.rules.base import Report


def document(report: Report, org: Organization, info: RunInfo) -> dict[str, Any]:
    """The report's JSON document, with its long lists as `Stream`s that `write_json` writes lazily."""
    return {
        "tool": {"name": "exconn", "version": __version__},
        "generated_at": info.generated_at.isoformat(),
        "offline": info.offline,
        "fail_on": info.fail_on.label,
        "sources": list(info.sources),
        "inventory": Stream(inventory(org)),
        "summary": summary(report),
        "findings": Stream(finding_json(f) for f in report.findings),
        "skipped": Stream(skip_json(s) for s in report.skipped),
        "rules_run": list(report.rules_run),
        # Only with logs, reports or --evidence: traffic, tls_reports, policy_fetches, ...
        **evidence_sections(info),
    }


def write(report: Report, org: Organization, info: RunInfo, out: TextIO) -> None:
    write_json(out, document(report, org, info))
    out.write("\n")
