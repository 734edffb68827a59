"""The -Force gate of remediation.ps1: a change the logs say would break mail flow (a fix_evidence
verdict "would-break") is skipped unless the script runs with -Force, with the reason as a warning
right above the command."""

from __future__ import annotations

from collections.abc import Sequence

from exconn.pwsh import quote
from exconn.rules.base import Finding
from exconn.rules.fix_evidence import WOULD_BREAK


def would_break(findings: Sequence[Finding]) -> str | None:
    """Why the change would break mail flow, from the first finding the logs say so of."""
    for f in findings:
        e = f.fix_evidence
        if e is not None and e.verdict == WOULD_BREAK:
            return f"{f.rule.id} on {f.target.identity}: {e.reason}"
    return None


def guarded(run: str, label: str, reason: str | None, indent: str = "        ") -> list[str]:
    """The command (and its count), behind its own `if (-not $Force)` test when it would break."""
    if reason is None:
        return [f"{indent}{run} -ErrorAction Stop -WhatIf:$whatIf", f"{indent}$changed++"]
    skipped = f"Skipped {label}: the logs say it would break mail flow: {reason}. Run with -Force to make it."
    return [
        f"{indent}if (-not $Force) {{",
        f"{indent}    Write-Warning {quote(skipped)}",
        f"{indent}    $skipped++",
        f"{indent}}} else {{",
        f"{indent}    Write-Warning {quote(f'Forced {label}, although the logs say: {reason}')}",
        f"{indent}    {run} -ErrorAction Stop -WhatIf:$whatIf",
        f"{indent}    $changed++",
        f"{indent}}}",
    ]
