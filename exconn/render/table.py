"""`--format table`: what a person reads in a terminal."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, TextIO

from tabulate import tabulate

from exconn._version import __version__
from exconn.model import Organization, kind_of
from exconn.render.common import RunInfo, plain, summary, verdict
from exconn.rules.base import Report


def _short(value: Any, width: int = 40) -> str:
    shown = plain(value)
    if isinstance(shown, list):
        text = ", ".join(str(v) for v in shown)  # as Exchange prints a multi-valued property
    else:
        text = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def write(report: Report, org: Organization, info: RunInfo, out: TextIO) -> None:
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
    lines.append(verdict(report, info))
    for line in lines:
        out.write(line + "\n")
