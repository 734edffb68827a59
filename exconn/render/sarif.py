"""`--format sarif`: SARIF 2.1.0 that GitHub code scanning accepts and shows, streamed result by result.

Code scanning's own rules on top of the schema: every result has a physical location with a
region and a stable fingerprint, and its rule carries `security-severity` and the `security` tag.
What could not be judged goes into the invocation's notifications, so nothing disappears.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote

from exconn._version import __version__
from exconn.model import Organization, Source, identity_of, kind_of
from exconn.render.common import RISK, RunInfo, Stream, fingerprint, plain, write_json
from exconn.rules.base import Finding, Report, Rule, Severity, Skip, Target

_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
FINGERPRINT = "exconnFinding/v1"


def artifact_uri(path: str) -> str:
    """A path as a SARIF `uri`: relative paths stay relative (to the directory exconn ran in),
    absolute ones become `file:` URIs; every character a URI cannot hold is percent-encoded, so a
    space, `#`, `%` or `?` in a file name stays part of the path."""
    if _SCHEME.match(path):
        return path  # psrp://host/cmdlet: a live source, already a URI
    if _DRIVE.match(path) or path.startswith("\\\\"):
        unc = path.startswith("\\\\")
        slashed = path.replace("\\", "/").lstrip("/")
        if unc:  # \\server\share\file -> file://server/share/file
            return "file://" + quote(slashed, safe="/")
        return "file:///" + slashed[:2] + quote(slashed[2:], safe="/")
    if path.startswith("/"):
        return "file://" + quote(path, safe="/")
    return quote(path, safe="/")


class _Locations:
    """Where each target was read: its object's source, a domain's accepted-domain entry, or the
    saved posture file."""

    def __init__(self, org: Organization, info: RunInfo) -> None:
        self.by_target: dict[Target, Source] = {}
        for o in reversed(org.objects()):
            self.by_target[Target(kind_of(o), identity_of(o))] = o.source
        # Skipped objects (a duplicate, a kind not read) point at their own copy, not the kept one.
        self.exact: dict[tuple[str, str, str], Source] = {
            (k.source.path, k.type_name, k.identity): k.source for k in org.skipped
        }
        self.domains: dict[str, Source] = {}
        for d in reversed(org.accepted_domains):
            self.domains[str(d.domain_name).lower().rstrip(".")] = d.source
            self.domains[identity_of(d).lower().rstrip(".")] = d.source
        fallback = info.posture_file
        if fallback is None and org.accepted_domains:
            fallback = org.accepted_domains[0].source.path
        self.fallback = Source(fallback, 0, "file", 1) if fallback else None

    def of(self, target: Target | None, path: str | None) -> Source | None:
        if target is not None:
            found = None if path is None else self.exact.get((path, target.kind, target.identity))
            found = found or self.by_target.get(target)
            if found is None and target.kind == "Domain":
                found = self.domains.get(target.identity.lower().rstrip("."))
            if found is not None:
                return found
        if path is not None:
            return Source(path, 0, "file", None)
        return self.fallback


def _physical(source: Source) -> dict[str, Any]:
    # The line where the object starts; 1 (the file) when the reader could not tell.
    return {
        "physicalLocation": {
            "artifactLocation": {"uri": artifact_uri(source.path)},
            "region": {"startLine": source.line or 1},
        }
    }


def _logical(target: Target) -> dict[str, Any]:
    return {
        "name": target.identity,
        "fullyQualifiedName": f"{target.kind}/{target.identity}",
        "kind": "resource" if target.kind == "Domain" else "object",
    }


def _rule(r: Rule) -> dict[str, Any]:
    # security-severity: GitHub's bands are > 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low.
    doc: dict[str, Any] = {
        "id": r.id,
        "name": r.title,
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": r.rationale},
        "help": {"text": r.remediation + "\n" + "\n".join(r.references)},
    }
    if r.references:
        doc["helpUri"] = r.references[0]
    doc["defaultConfiguration"] = {"level": _SARIF_LEVEL[r.severity]}
    doc["properties"] = {"security-severity": f"{RISK[r.severity]:.1f}", "tags": ["security"]}
    return doc


def _result(f: Finding, where: _Locations) -> dict[str, Any]:
    source = where.of(f.target, f.source)
    location: dict[str, Any] = _physical(source) if source is not None else {}
    location["logicalLocations"] = [_logical(f.target)]
    return {
        "ruleId": f.rule.id,
        "level": _SARIF_LEVEL[f.severity],
        "message": {"text": f"{f.target.kind} {f.target.identity}: {f.message}"},
        "locations": [location],
        "partialFingerprints": {FINGERPRINT: fingerprint(f)},
        "properties": {
            "severity": f.severity.label,
            "property": f.property,
            "observed": plain(f.observed),
            "fix_note": f.fix_note,
        },
    }


def _notification(s: Skip, where: _Locations, rule_ids: set[str]) -> dict[str, Any]:
    what = f"{s.what} {s.target.kind} {s.target.identity}" if s.target else s.what
    doc: dict[str, Any] = {"level": "warning", "message": {"text": f"not judged: {what}: {s.reason}"}}
    source = where.of(s.target, s.source) if (s.target or s.source) else None
    if source is not None or s.target is not None:
        location: dict[str, Any] = _physical(source) if source is not None else {}
        if s.target is not None:
            location["logicalLocations"] = [_logical(s.target)]
        doc["locations"] = [location]
    if s.what in rule_ids:
        doc["associatedRule"] = {"id": s.what}
    return doc


def _notifications(report: Report, where: _Locations) -> Iterator[dict[str, Any]]:
    rule_ids = set(report.rules_run)
    return (_notification(s, where, rule_ids) for s in report.skipped)


def _with_baseline(result: dict[str, Any], f: Finding, info: RunInfo) -> dict[str, Any]:
    if info.baseline is not None:
        result["baselineState"] = info.baseline.state(f)  # SARIF 2.1.0 §3.27.24
    return result


def _baseline_properties(info: RunInfo) -> dict[str, Any]:
    if info.baseline is None:
        return {}
    resolved = [
        {k: e.get(k) for k in ("rule", "target", "property", "severity")} for e in info.baseline.resolved
    ]
    return {"properties": {"baseline": info.baseline.path, "resolved": resolved}}


def write(report: Report, org: Organization, info: RunInfo, out: TextIO) -> None:
    rules = {f.rule.id: f.rule for f in report.findings}
    where = _Locations(org, info)
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
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "toolExecutionNotifications": Stream(_notifications(report, where)),
                    }
                ],
                "results": Stream(_with_baseline(_result(f, where), f, info) for f in report.findings),
                **_baseline_properties(info),
            }
        ],
    }
    write_json(out, doc)
    out.write("\n")
