"""`--format table`: what a person reads in a terminal, fitted to its width.

Every line fits in `COLUMNS` cells (or the terminal's width; 80 at least), CJK counted as two
cells; long values wrap inside their cell, identities are shortened in the middle only when they
would take more than three lines, and a word of up to 40 characters (a certificate thumbprint)
is never broken.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from exconn._version import __version__
from exconn.model import Organization, kind_of
from exconn.render.cells import shorten, visible, width, wrap
from exconn.render.common import (
    Change,
    RunInfo,
    changes,
    do_first,
    fix_evidence_text,
    observed_text,
    summary,
    verdict,
)
from exconn.rules.base import Finding, Report

MIN_WIDTH = 80
_HEADERS = ("Severity", "Target", "Finding")
_TARGET_LINES = 3  # an identity longer than this many lines is shortened in the middle
_OBSERVED_LINES = 3


def terminal_width() -> int:
    """`COLUMNS`, else the terminal's width, else 80; never below 80."""
    return max(MIN_WIDTH, shutil.get_terminal_size((MIN_WIDTH, 24)).columns)


def _clip(lines: list[str], count: int, limit: int) -> list[str]:
    if len(lines) <= count:
        return lines
    last = lines[count - 1]
    while last and width(last) + 1 > limit:
        last = last[:-1]
    return [*lines[: count - 1], last + "…"]


def _target_cell(f: Finding, limit: int) -> list[str]:
    lines = wrap(visible(f.target.identity), limit)
    if len(lines) > _TARGET_LINES:
        head = lines[: _TARGET_LINES - 1]
        rest = visible(f.target.identity)[sum(len(x) for x in head) :]
        lines = [*head, shorten(rest, limit)]
    return [f.target.kind, *lines]


def _finding_cell(f: Finding, limit: int) -> list[str]:
    lines: list[str] = []
    if f.property:
        observed = wrap(f"{f.property} = {visible(observed_text(f.observed))}", limit, indent="  ")
        lines += _clip(observed, _OBSERVED_LINES, limit)
    lines += wrap(f.message, limit)
    if f.fix_note and not f.fix:
        lines += wrap(f"fix: {visible(f.fix_note)}", limit, indent="  ")
    if (evidence := fix_evidence_text(f)) is not None:
        lines += wrap(evidence, limit, indent="  ")
    return lines


def _grid(rows: Sequence[Sequence[list[str]]], widths: Sequence[int]) -> list[str]:
    def rule(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    def row(cells: Sequence[list[str]]) -> list[str]:
        height = max(len(c) for c in cells)
        out = []
        for i in range(height):
            parts = []
            for cell, w in zip(cells, widths, strict=True):
                text = cell[i] if i < len(cell) else ""
                parts.append(" " + text + " " * (w - width(text)) + " ")
            out.append("│" + "│".join(parts) + "│")
        return out

    lines = [rule("┌", "┬", "┐"), *row([[h] for h in _HEADERS])]
    for cells in rows:
        lines.append(rule("├", "┼", "┤"))
        lines += row(cells)
    lines.append(rule("└", "┴", "┘"))
    return lines


def _widths(total: int) -> tuple[int, int, int]:
    # Borders and padding take 3 cells a column plus 1; severity and rule id fit in 8.
    first = 8
    room = total - 10 - first
    target = min(36, max(18, room * 3 // 10))
    return first, target, room - target


def _change_line(c: Change, n: int, limit: int) -> list[str]:
    fixes = ", ".join(f"{f.rule.id} {f.target.identity}" for f in c.findings[:3])
    more = f" and {len(c.findings) - 3} more" if len(c.findings) > 3 else ""
    worst = max(f.severity for f in c.findings).label
    lines = wrap(f"  {n}. {c.text}", limit, indent="       ")
    lines += wrap(
        f"     fixes {len(c.findings)} finding(s), worst {worst}: {fixes}{more}", limit, indent="       "
    )
    evidence = next((f.fix_evidence for f in c.findings if f.fix_evidence is not None), None)
    if evidence is not None:
        lines += wrap(f"     evidence: {evidence.verdict} ({evidence.reason})", limit, indent="       ")
    return lines


def write(
    report: Report, org: Organization, info: RunInfo, out: TextIO, *, columns: int | None = None
) -> None:
    total = max(MIN_WIDTH, columns or terminal_width())
    kinds = Counter(kind_of(o) for o in org.objects())
    lines = wrap(
        f"exconn {__version__}: {len(info.sources)} file(s) read; "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
        total,
        indent="  ",
    )
    if report.findings:
        first, target, finding = _widths(total)
        rows = [
            [
                [f.severity.label.upper(), f.rule.id],
                _target_cell(f, target),
                _finding_cell(f, finding),
            ]
            for f in report.findings
        ]
        lines += _grid(rows, (first, target, finding))
    else:
        lines.append("No findings.")

    def say(text: str, indent: str = "  ") -> None:
        lines.extend(wrap(text, total, indent=indent))

    counts = summary(report)
    say("Findings: " + (", ".join(f"{n} {label}" for label, n in counts.items() if n) or "none"))
    script, dns = changes(report)
    fixed = {id(f) for c in script for f in c.findings}
    where = f"{info.fix_out.rstrip('/')}/" if info.fix_out else "DIR/"
    if script:
        tail = f"written to {where}" if info.fix_out else "write it with --fix-out DIR, or see --format json"
        say(f"{len(script)} change(s) in remediation.ps1 for {len(fixed)} finding(s): {tail}.")
    if dns:
        tail = f"written to {where}dns/" if info.fix_out else f"--fix-out DIR writes them to {where}dns/"
        say(f"MTA-STS/TLS-RPT to publish for {len(dns)} domain(s): {tail}.")
    if info.evidence is not None:
        from exconn.evidence.report import on_the_wire

        lines += on_the_wire(info.evidence, width=total).rstrip("\n").split("\n")
    if report.skipped:
        lines.append(f"Not judged ({len(report.skipped)}):")
        for s in report.skipped:
            about = f" {s.target.kind} {visible(s.target.identity)}" if s.target else ""
            say(f"  - {s.what}{about}: {s.reason}", indent="      ")
    lines.append(verdict(report, info))
    first_steps = do_first(report)
    if first_steps:
        lines.append(f"Do this first ({len(first_steps)} change(s) that remove the most risk):")
        for n, c in enumerate(first_steps, 1):
            lines += _change_line(c, n, total)
    for line in lines:
        out.write(line + "\n")
