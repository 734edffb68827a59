"""`--format sarif`: SARIF 2.1.0 for code scanning, results streamed one by one."""

from __future__ import annotations

from typing import Any, TextIO

from exconn._version import __version__
from exconn.model import Organization
from exconn.render.common import RunInfo, Stream, plain, write_json
from exconn.rules.base import Finding, Report, Rule, Severity

_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}


def _rule(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.title,
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": r.rationale},
        "help": {"text": r.remediation + "\n" + "\n".join(r.references)},
        "helpUri": r.references[0] if r.references else None,
        "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
    }


def _result(f: Finding) -> dict[str, Any]:
    return {
        "ruleId": f.rule.id,
        "level": _SARIF_LEVEL[f.severity],
        "message": {"text": f"{f.target.kind} {f.target.identity}: {f.message}"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.source}}}] if f.source else [],
        "properties": {
            "severity": f.severity.label,
            "property": f.property,
            "observed": plain(f.observed),
        },
    }


def write(report: Report, org: Organization, info: RunInfo, out: TextIO) -> None:
    rules = {f.rule.id: f.rule for f in report.findings}
    doc = {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "exconn",
                        "version": __version__,
                        "rules": [_rule(r) for r in sorted(rules.values(), key=lambda r: r.id)],
                    }
                },
                "results": Stream(_result(f) for f in report.findings),
            }
        ],
    }
    write_json(out, doc)
    out.write("\n")
