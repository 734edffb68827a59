"""Renderers: read a Report (and the inventory), never anything upstream.

One function per format behind `render()`, chosen by the `Format` enum (pip-audit's `_format/`).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from exconn._version import __version__
from exconn.model import (
    UNKNOWN,
    AddressSpace,
    AuthMechanism,
    Binding,
    CertificateName,
    IPRange,
    Organization,
    PermissionGroups,
    flag_names,
    identity_of,
    kind_of,
)
from exconn.rules.base import Finding, Report, Rule, Severity, Skip


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    SARIF = "sarif"


@dataclass(frozen=True, slots=True)
class RunInfo:
    generated_at: dt.datetime
    sources: tuple[str, ...]
    fail_on: Severity
    offline: bool


def plain(value: Any) -> Any:
    """A JSON-ready form of an observed value, spelled the way Exchange prints it."""
    if value is UNKNOWN:
        return "unknown"
    if isinstance(value, AuthMechanism | PermissionGroups):
        return ", ".join(flag_names(value)) or "None"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, AddressSpace | Binding | IPRange | CertificateName):
        return value.raw
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, tuple | list | frozenset | set):
        items = [plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, frozenset | set) else items
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _finding_json(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule.id,
        "title": f.rule.title,
        "severity": f.severity.label,
        "target": {"kind": f.target.kind, "identity": f.target.identity},
        "property": f.property,
        "observed": plain(f.observed),
        "message": f.message,
        "references": list(f.rule.references),
        "fix": [c.render() for c in f.commands],  # PowerShell command strings
        "dns": [d.render() for d in f.dns],  # the DNS side: what --fix-out writes under dns/<domain>/
        "source": f.source,
    }


def _skip_json(s: Skip) -> dict[str, Any]:
    return {
        "what": s.what,
        "target": None if s.target is None else {"kind": s.target.kind, "identity": s.target.identity},
        "reason": s.reason,
        "source": s.source,
    }


def inventory(org: Organization) -> list[dict[str, str]]:
    return [{"kind": kind_of(o), "identity": identity_of(o), "source": o.source.path} for o in org.objects()]


def summary(report: Report) -> dict[str, int]:
    counts = Counter(f.severity.label for f in report.findings)
    return {s.label: counts.get(s.label, 0) for s in sorted(Severity, reverse=True)}


def to_json(report: Report, org: Organization, info: RunInfo) -> dict[str, Any]:
    return {
        "tool": {"name": "exconn", "version": __version__},
        "generated_at": info.generated_at.isoformat(),
        "offline": info.offline,
        "fail_on": info.fail_on.label,
        "sources": list(info.sources),
        "inventory": inventory(org),
        "summary": summary(report),
        "findings": [_finding_json(f) for f in report.findings],
        "skipped": [_skip_json(s) for s in report.skipped],
        "rules_run": list(report.rules_run),
    }


def _short(value: Any, width: int = 40) -> str:
    shown = plain(value)
    if isinstance(shown, list):
        text = ", ".join(str(v) for v in shown)  # as Exchange prints a multi-valued property
    else:
        text = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(report: Report, org: Organization, info: RunInfo) -> str:
    kinds = Counter(kind_of(o) for o in org.objects())
    lines = [
        f"exconn {__version__}: {len(info.sources)} file(s) read; "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    ]
    if report.findings:
        rows = [
            [
                f.severity.label.upper(),
                f.rule.id,
                f"{f.target.kind}\n{f.target.identity}",
                f"{f.property or ''}\n{_short(f.observed)}" if f.property else "",
                f.message,
            ]
            for f in report.findings
        ]
        lines.append(
            tabulate(
                rows,
                headers=["Severity", "Rule", "Target", "Property / observed", "Finding"],
                tablefmt="simple_grid",
                maxcolwidths=[None, None, 34, 30, 64],
            )
        )
    else:
        lines.append("No findings.")
    counts = summary(report)
    lines.append("Findings: " + ", ".join(f"{n} {label}" for label, n in counts.items() if n) or "none")
    fixes = sum(len(f.commands) for f in report.findings)
    if fixes:
        lines.append(f"{fixes} fix command(s) proposed: write them with --fix-out DIR, or see --format json.")
    domains = sorted({d.domain.lower() for f in report.findings for d in f.dns})
    if domains:
        lines.append(
            f"MTA-STS/TLS-RPT to publish for {len(domains)} domain(s): --fix-out DIR writes them to DIR/dns/."
        )
    if report.skipped:
        lines.append(f"Not judged ({len(report.skipped)}):")
        lines.extend(
            f"  - {s.what} {s.target.kind + ' ' + s.target.identity if s.target else ''}: {s.reason}"
            for s in report.skipped
        )
    worst = report.worst()
    verdict = (
        f"FAIL: findings at or above '{info.fail_on.label}'"
        if worst is not None and worst >= info.fail_on
        else f"PASS: nothing at or above '{info.fail_on.label}'"
    )
    lines.append(verdict)
    return "\n".join(lines) + "\n"


def render_markdown(report: Report, org: Organization, info: RunInfo) -> str:
    out = [
        "# exconn audit",
        "",
        f"Generated {info.generated_at.isoformat()} by exconn {__version__} from: "
        + ", ".join(f"`{s}`" for s in info.sources),
        "",
        "| Severity | Rule | Target | Finding |",
        "|---|---|---|---|",
    ]
    esc = _md_escape
    out.extend(
        f"| {f.severity.label} | {f.rule.id} | {esc(f.target.kind)} `{esc(f.target.identity)}` "
        f"| {esc(f.message)} |"
        for f in report.findings
    )
    for f in report.findings:
        if f.fix:
            out += ["", f"## {f.rule.id} on {esc(f.target.identity)}"]
        if f.commands:
            out += ["", "```powershell"]
            out += [c.render() for c in f.commands]
            out += ["```"]
        if f.dns:
            out += [""]
            out += [f"- DNS: {esc(d.render())}" for d in f.dns]
    if report.skipped:
        out += ["", "## Not judged", ""]
        out += [f"- {esc(s.what)}: {esc(s.reason)}" for s in report.skipped]
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}


def _sarif_rule(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.title,
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": r.rationale},
        "help": {"text": r.remediation + "\n" + "\n".join(r.references)},
        "helpUri": r.references[0] if r.references else None,
        "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
    }


def render_sarif(report: Report, org: Organization, info: RunInfo) -> str:
    rules = {f.rule.id: f.rule for f in report.findings}
    results = [
        {
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
        for f in report.findings
    ]
    doc = {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "exconn",
                        "version": __version__,
                        "rules": [_sarif_rule(r) for r in sorted(rules.values(), key=lambda r: r.id)],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def render(report: Report, org: Organization, info: RunInfo, fmt: Format) -> str:
    """The report as text that any UTF-8 writer accepts (see `writable`)."""
    if fmt is Format.JSON:
        text = json.dumps(to_json(report, org, info), indent=2, ensure_ascii=False) + "\n"
    elif fmt is Format.MARKDOWN:
        text = render_markdown(report, org, info)
    elif fmt is Format.SARIF:
        text = render_sarif(report, org, info)
    else:
        text = render_table(report, org, info)
    return writable(text)


def writable(text: str) -> str:
    """`text` with lone surrogates written as `\\udXXX` escapes, so that UTF-8 can encode it.

    A CLIXML name may hold one (`_xD800_`); the reader keeps it as is, and in JSON the escape
    reads back as the same character.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def rules_markdown(rules: Sequence[Rule]) -> str:
    """The rule reference, generated from the declarations so it cannot drift."""
    out = ["# exconn rules", "", "Generated by `exconn rules --format markdown`.", ""]
    for r in rules:
        out += [
            f"## {r.id}: {r.title}",
            "",
            f"Default severity: **{r.severity.label}**"
            + ("; needs domain posture" if r.needs_posture else ""),
            "",
            r.rationale,
            "",
            f"Remediation: {r.remediation}",
            "",
            "References: " + ", ".join(r.references),
            "",
        ]
    return "\n".join(out)
