"""`--format html`: one self-contained file for people: the verdict, what to do first, the mail
flow drawn, the findings by target, what was not judged, and the inputs with their SHA-256.

Built with jinja2 with autoescaping on: every value from an export, a log or a DNS answer is
hostile text. Nothing external: the stylesheet is inline and allowed by its hash in the page's
Content-Security-Policy (`default-src 'none'`), the picture is inline SVG, and there is no script.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from importlib.resources import files
from typing import Any, TextIO

import jinja2
from markupsafe import Markup

from exconn._version import __version__
from exconn.model import Organization
from exconn.render.common import (
    Change,
    RunInfo,
    changes,
    do_first,
    finding_json,
    fingerprint,
    fix_evidence_text,
    observed_text,
    summary,
)
from exconn.render.flow import MEANING, STYLE, svg
from exconn.rules.base import Finding, Report

_TEMPLATES = files("exconn.render") / "templates"
_CHUNK = 2**20


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def csp(css: str) -> str:
    """The page's policy: nothing but its own inline stylesheet, by hash."""
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"


def _input(path: str) -> dict[str, str]:
    """A source file's name, full SHA-256, size and modification time (a live session has none)."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        stat = os.stat(path)
    except OSError:
        return {
            "name": path,
            "sha256": "(not a file: live session or no longer readable)",
            "size": "",
            "modified": "",
        }
    modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).replace(microsecond=0).isoformat()
    return {
        "name": path,
        "sha256": digest.hexdigest(),
        "size": f"{stat.st_size:,} bytes",
        "modified": modified,
    }


def _finding(f: Finding) -> dict[str, Any]:
    doc = finding_json(f)
    return {
        **doc,
        "fingerprint": fingerprint(f),
        "observed": observed_text(f.observed),
        "rationale": f.rule.rationale,
        "remediation": f.rule.remediation,
        "fix_evidence_text": fix_evidence_text(f),
    }


def _groups(report: Report) -> list[dict[str, Any]]:
    """Findings by target, the target with the worst finding first (findings come sorted so)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for f in report.findings:
        key = (f.target.kind, f.target.identity)
        group = groups.setdefault(key, {"kind": f.target.kind, "identity": f.target.identity, "findings": []})
        group["findings"].append(_finding(f))
    return list(groups.values())


def _verdict(report: Report, info: RunInfo, first_changes: list[Change]) -> tuple[bool, str, str]:
    fixed_first = len({id(f) for c in first_changes for f in c.findings})
    reaching = [f for f in report.findings if f.severity >= info.fail_on]
    targets = {(f.target.kind, f.target.identity) for f in reaching}
    if reaching:
        text = (
            f"Not passed: {len(reaching)} finding(s) are {info.fail_on.label} or worse, on {len(targets)} "
            "connector(s) or domain(s). "
            + (
                f"The {len(first_changes)} change(s) under “Do this first” fix {fixed_first} of the "
                f"{len(report.findings)} finding(s)."
                if fixed_first
                else "None of them has an automatic fix: see each finding."
            )
        )
        return True, text, f"FAIL ({len(reaching)} at or above {info.fail_on.label})"
    lower = len(report.findings)
    return (
        False,
        f"Passed: no finding is {info.fail_on.label} or worse"
        + (f" ({lower} lower finding(s) below)." if lower else "."),
        "PASS",
    )


def _legend() -> list[dict[str, str]]:
    return [
        {"name": p.value, "colour": c, "dash": d, "letter": letter, "meaning": MEANING[p]}
        for p, (c, d, letter) in STYLE.items()
    ]


def _baseline(report: Report, info: RunInfo) -> dict[str, Any] | None:
    b = info.baseline
    if b is None:
        return None
    states = [(b.state(f), f) for f in report.findings]
    return {
        "path": b.path,
        "new": [f for s, f in states if s == "new"],
        "updated": [f for s, f in states if s == "updated"],
        "resolved": [
            {
                "rule": e.get("rule"),
                "severity": e.get("severity"),
                "identity": (e.get("target") or {}).get("identity"),
            }
            for e in b.resolved
        ],
    }


def write(report: Report, org: Organization, info: RunInfo, out: TextIO) -> None:
    css = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
    template = _environment().from_string((_TEMPLATES / "report.html.j2").read_text(encoding="utf-8"))
    script, dns = changes(report)
    first = do_first(report)
    failed, verdict, verdict_short = _verdict(report, info, first)
    paths = [*info.sources, *([info.posture_file] if info.posture_file else [])]
    context: dict[str, Any] = {
        "csp": csp(css),
        "css": Markup(css),  # noqa: S704 - our own stylesheet, shipped with the package
        "version": __version__,
        "generated_at": info.generated_at.isoformat(),
        "fail_on": info.fail_on.label,
        "offline": info.offline,
        "failed": failed,
        "verdict": verdict,
        "verdict_short": verdict_short,
        "first": first,
        "script_count": len(script),
        "dns_count": len(dns),
        "fix_out": info.fix_out,
        "flow_svg": svg(org, report, dict(info.marks)),
        "legend": _legend(),
        "finding_count": len(report.findings),
        "counts": list(summary(report).items()),
        "groups": _groups(report),
        "skipped": report.skipped,
        "inputs": [_input(p) for p in paths],
        "rules_run": report.rules_run,
        "baseline": _baseline(report, info),
    }
    chunks: Iterator[str] = template.generate(**context)
    for chunk in chunks:
        out.write(chunk)
