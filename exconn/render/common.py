"""What every renderer shares: run information, the JSON-ready spelling of values, streaming JSON.

Low in the render package: imports the model and the findings, never a format module.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import ipaddress
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from exconn.fix import Command
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
from exconn.pwsh import UnsafeValue
from exconn.rules.base import Finding, Report, Severity, Skip

if TYPE_CHECKING:
    from exconn.evidence.model import Evidence


@dataclass(frozen=True, slots=True)
class RunInfo:
    generated_at: dt.datetime
    sources: tuple[str, ...]
    fail_on: Severity
    offline: bool
    posture_file: str | None = None  # --posture: where domain findings' facts were read
    fix_out: str | None = None  # --fix-out: the scripts were written there (no hint to pass it)
    # Domain -> what protects mail to it beyond opportunistic TLS ("MTA-STS enforce", "DANE"),
    # from the observed posture: the HTML mail flow marks partners with it.
    marks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The logs and reports given to the audit (None: none): JSON sections, "on the wire".
    evidence: Evidence | None = None
    own_domains: tuple[str, ...] = ()  # accepted domains, left out of the top recipient domains
    baseline: Baseline | None = None  # --baseline with --format sarif or html


@dataclass(frozen=True, slots=True)
class Baseline:
    """What changed since `audit --baseline OLD.json`, for the formats that show the whole report
    (SARIF's baselineState, the HTML's "since the baseline" section)."""

    path: str
    # finding key (rule, kind, identity folded, property) -> "new" | "updated" | "unchanged"
    states: Mapping[tuple[str, str, str, str], str]
    resolved: tuple[Mapping[str, Any], ...]  # findings of the old report no longer found

    def state(self, f: Finding) -> str:
        return self.states.get(baseline_key(f), "unchanged")


def baseline_key(f: Finding) -> tuple[str, str, str, str]:
    """How `exconn diff` matches findings across runs (`diff.key_of` of the finding's JSON entry)."""
    return finding_key(f.rule.id, f.target.kind, f.target.identity, f.property)


def finding_key(rule: str, kind: str, identity: str, prop: object) -> tuple[str, str, str, str]:
    """rule, target kind, identity (case-folded, as Exchange compares names), property."""
    return (rule, kind, identity.casefold(), str(prop))


class Renderer(Protocol):
    """One output format: writes the report to `out` as it goes (never the whole text in memory)."""

    def __call__(self, report: Report, org: Organization, info: RunInfo, out: TextIO) -> None: ...


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


def observed_text(value: Any) -> str:
    """An observed value as one line of text, as Exchange prints it."""
    shown = plain(value)
    if isinstance(shown, list):
        return ", ".join(str(v) for v in shown)  # as Exchange prints a multi-valued property
    return shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)


def fingerprint(f: Finding) -> str:
    """Rule id + target: stable across runs, and two findings of one rule in one file stay apart."""
    key = "\0".join((f.rule.id, f.target.kind, f.target.identity.casefold()))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def command_text(c: Command) -> str:
    """A fix command as PowerShell, or, when a value cannot be quoted safely (a control character
    in a connector's name), a comment saying so, as remediation.ps1 writes it: never a crash."""
    try:
        return c.render()
    except UnsafeValue as exc:
        return f"# Not written: {exc}. Make this change by hand."


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule.id,
        "title": f.rule.title,
        "severity": f.severity.label,
        "target": {"kind": f.target.kind, "identity": f.target.identity},
        "property": f.property,
        "observed": plain(f.observed),
        "message": f.message,
        "references": list(f.rule.references),
        "fix": [command_text(c) for c in f.commands],  # PowerShell command strings
        "dns": [d.render() for d in f.dns],  # the DNS side: what --fix-out writes under dns/<domain>/
        "fix_note": f.fix_note,  # why there is no fix (or not all of one); null when the fix is whole
        # What the logs say about a fix that requires TLS (null: not such a fix, or no evidence given).
        "fix_evidence": None if f.fix_evidence is None else f.fix_evidence.json(),
        "source": f.source,
    }


def fix_evidence_text(f: Finding) -> str | None:
    """One line for the text formats: the verdict and what the logs show."""
    e = f.fix_evidence
    if e is None:
        return None
    names = f", certificate names ok in {e.names_ok}" if e.names_ok is not None else ""
    return f"fix evidence: {e.verdict} ({e.tls}/{e.sessions} session(s) with TLS{names}; {e.reason})"


def evidence_sections(info: RunInfo) -> dict[str, Any]:
    """The evidence sections of the JSON report, as `exconn evidence --format json` writes them."""
    if info.evidence is None:
        return {}
    from exconn.evidence.report import to_json

    return to_json(info.evidence, info.own_domains)


def skip_json(s: Skip) -> dict[str, Any]:
    return {
        "what": s.what,
        "target": None if s.target is None else {"kind": s.target.kind, "identity": s.target.identity},
        "reason": s.reason,
        "source": s.source,
    }


def inventory(org: Organization) -> Iterator[dict[str, str]]:
    return ({"kind": kind_of(o), "identity": identity_of(o), "source": o.source.path} for o in org.objects())


def summary(report: Report) -> dict[str, int]:
    counts = Counter(f.severity.label for f in report.findings)
    return {s.label: counts.get(s.label, 0) for s in sorted(Severity, reverse=True)}


def verdict(report: Report, info: RunInfo) -> str:
    worst = report.worst()
    if worst is not None and worst >= info.fail_on:
        return f"FAIL: findings at or above '{info.fail_on.label}'"
    return f"PASS: nothing at or above '{info.fail_on.label}'"


# How much risk a finding carries, as GitHub reads SARIF's security-severity: what "do this first"
# adds up per change, and what SARIF declares per rule.
RISK = {
    Severity.CRITICAL: 9.5,
    Severity.HIGH: 8.0,
    Severity.MEDIUM: 5.5,
    Severity.LOW: 3.0,
    Severity.INFO: 0.1,
}


@dataclass(frozen=True, slots=True)
class Change:
    """One change the fix makes: a command of remediation.ps1, or a domain's DNS publication."""

    text: str  # the PowerShell command, or what to publish
    findings: tuple[Finding, ...]
    dns: bool = False

    @property
    def risk(self) -> float:
        return sum(RISK[f.severity] for f in self.findings)


def changes(report: Report) -> tuple[list[Change], list[Change]]:
    """remediation.ps1's changes (merged per object, exactly as the script has them) and the DNS
    publications per domain (what --fix-out writes under dns/)."""
    from exconn.remediate.plan import plan_changes

    script = [Change(command_text(p.command), p.findings) for p in plan_changes(report)]
    by_domain: dict[str, list[Finding]] = {}
    texts: dict[str, str] = {}
    for f in report.findings:
        for d in f.dns:
            key = d.domain.lower()
            texts.setdefault(key, d.render())
            if not any(g is f for g in by_domain.setdefault(key, [])):
                by_domain[key].append(f)
    dns = [Change(texts[k], tuple(v), dns=True) for k, v in sorted(by_domain.items())]
    return script, dns


def do_first(report: Report, count: int = 3) -> list[Change]:
    """The changes that remove the most risk: the sum over the findings each one fixes."""
    script, dns = changes(report)
    ranked = sorted(enumerate([*script, *dns]), key=lambda pair: (-pair[1].risk, pair[0]))
    return [c for _, c in ranked[:count]]


class Stream:
    """A list whose items are written one by one (see `write_json`)."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


def _dumps(value: Any, level: int) -> str:
    """`value` as `json.dumps(indent=2)` writes it `level` levels deep in a larger document.

    JSON strings never hold a raw newline, so indenting every line after the first is exact.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + "  " * level) if level else text


def write_json(out: TextIO, value: Any, level: int = 0) -> None:
    """Write `value` byte for byte as `json.dumps(value, indent=2, ensure_ascii=False)` would.

    Dicts and lists are written member by member and each item of a `Stream` as it comes, so
    memory holds the document's skeleton and one finding at a time, never the whole text.
    """
    pad = "  " * (level + 1)
    if isinstance(value, dict):
        if not value:
            out.write("{}")
            return
        for i, (key, member) in enumerate(value.items()):
            out.write(("{\n" if i == 0 else ",\n") + pad + json.dumps(key, ensure_ascii=False) + ": ")
            write_json(out, member, level + 1)
        out.write("\n" + "  " * level + "}")
    elif isinstance(value, list | Stream):
        streamed = isinstance(value, Stream)
        first = True
        for item in value.items if isinstance(value, Stream) else value:
            out.write(("[\n" if first else ",\n") + pad)
            if streamed:
                out.write(_dumps(item, level + 1))
            else:
                write_json(out, item, level + 1)
            first = False
        out.write("[]" if first else "\n" + "  " * level + "]")
    else:
        out.write(_dumps(value, level))
