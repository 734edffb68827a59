"""The reviewable fix: `remediation.ps1` and `rollback.ps1` from a report's findings.

Both scripts do nothing without `-Apply` (every change runs with `-WhatIf`), read each object
before changing it and skip the change when any value differs from the export, and count
changes, skips and failures. Which commands, merged per object: `exconn.remediate.plan`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import exconn.pwsh as pwsh
from exconn._version import __version__
from exconn.errors import InputError
from exconn.fix import UNREAD, Command, NewCommand, ParamChange, SetCommand, requirements
from exconn.output import stage_file
from exconn.remediate.certlookup import FIND_CERTIFICATE, lookup_lines, record_line, uses_lookup
from exconn.remediate.force import guarded, would_break
from exconn.remediate.plan import PlannedChange, plan_changes
from exconn.remediate.plan import items as _items
from exconn.rules.base import Finding, Report

__all__ = ["PlannedChange", "plan_changes", "render_scripts", "write_fix"]

BOM = "\ufeff"
_LINE_BREAKS = ("\r", "\n", "\u2028", "\u2029", "\u0085")


# --- PowerShell text ----------------------------------------------------------------------------

_PRELUDE = r"""
$whatIf = -not $Apply
$changed = 0
$already = 0
$skipped = 0
$failed = 0
$here = if ($PSScriptRoot) { $PSScriptRoot } else { (Get-Location).Path }
$statePath = Join-Path $here 'remediation-state.xml'

function ConvertTo-ExconnText {
    # $null, '' and an empty list all mean "not set"; flags ('Tls, BasicAuth') and lists compare
    # as sorted items, so the order Exchange prints them in does not matter.
    param($Value)
    if ($null -eq $Value) { return '' }
    $items = foreach ($item in @($Value)) { ([string]$item) -split ',\s*' }
    return ((@($items | Where-Object { $_ -ne '' }) | Sort-Object) -join ',')
}

function Test-ExconnSame {
    param($Current, $Expected)
    return (ConvertTo-ExconnText $Current) -eq (ConvertTo-ExconnText $Expected)
}

function Test-ExconnHas {
    # Does the multi-valued property hold every item (Add), or none of them (after a Remove)?
    param($Current, [string[]]$Items, [switch]$None)
    $held = @(foreach ($item in @($Current)) { ([string]$item).ToLowerInvariant() })
    $found = @($Items | Where-Object { $held -contains $_.ToLowerInvariant() })
    if ($None) { return $found.Count -eq 0 }
    return $found.Count -eq $Items.Count
}
""".strip("\n").splitlines()


def _preflight(cmdlets: Sequence[str]) -> list[str]:
    """Stop before any change when the Exchange cmdlets are not there (plain PowerShell, or a session
    imported with -Prefix, whose cmdlets are named Get-<Prefix>SendConnector)."""
    if not cmdlets:
        return []
    names = ",".join(pwsh.quote(c) for c in cmdlets)
    return [
        f"$missing = @(@({names}) | Where-Object {{ -not (Get-Command $_ -ErrorAction SilentlyContinue) }})",
        "if ($missing.Count -gt 0) {",
        "    Write-Error ('Exchange cmdlets not found: ' + ($missing -join ', ') + '. Run this in the "
        "Exchange Management Shell (or after Connect-ExchangeOnline); a session imported with "
        "-Prefix names them differently: import it without -Prefix.')",
        "    return 2",
        "}",
    ]


def _transcript(kind: str) -> list[str]:
    return [
        "if ($Apply) {",
        f"    $log = Join-Path $here ({pwsh.quote(kind + '-')}"
        " + (Get-Date -Format 'yyyyMMdd-HHmmss') + '.log')",
        "    Start-Transcript -Path $log | Out-Null",
        "}",
    ]


def _summary(what: str, *, record_state: bool) -> list[str]:
    lines = [
        "",
        "$mode = if ($Apply) { 'applied' } else { 'previewed with -WhatIf (run again with -Apply)' }",
        "Write-Host ("
        + pwsh.quote(f"exconn {what}: {{0}} change(s) {{1}}, {{2}} in place, {{3}} skipped, {{4}} failed")
        + " -f $changed, $mode, $already, $skipped, $failed)",
    ]
    if record_state:
        # The values the export lacked, read before changing them: rollback.ps1 restores them.
        lines.append("if ($Apply -and $state.Count -gt 0) { $state | Export-Clixml -Path $statePath }")
    lines += [
        "if ($failed -gt 0) { return 1 }",
        "if ($skipped -gt 0) { return 3 }",
        "return 0",
    ]
    return lines


def _body(lines: list[str]) -> list[str]:
    """The changes run inside a script block: `return` ends it with the exit status, and `exit` is
    used only when the script runs from its file, never in a console it was pasted into."""
    out = ["$exconnRun = {"]
    out += ["    " + line if line else "" for line in lines]
    out += [
        "}",
        "try {",
        "    $code = & $exconnRun",
        "} finally {",
        "    if ($Apply) { Stop-Transcript | Out-Null }",
        "}",
        "$code = @($code)[-1]",
        "if ($PSCommandPath) { exit $code } else { $global:LASTEXITCODE = $code }",
    ]
    return out


def _noun(cmdlet: str) -> str:
    return cmdlet.split("-", 1)[1]


def _get(cmd: Command) -> str:
    if isinstance(cmd, NewCommand):
        return pwsh.command(f"Get-{_noun(cmd.cmdlet)}", [("Identity", cmd.name)])
    params: list[tuple[str, pwsh.PsValue]] = [] if cmd.singleton else [("Identity", cmd.identity)]
    return pwsh.command(f"Get-{_noun(cmd.cmdlet)}", params)


def _label(cmd: Command) -> str:
    if isinstance(cmd, NewCommand):
        return f"{cmd.cmdlet} {cmd.name}"
    return cmd.cmdlet if cmd.singleton else f"{cmd.cmdlet} {cmd.identity}"


def _values(cmd: Command) -> list[str]:
    if isinstance(cmd, NewCommand):
        return [cmd.name, *(item for _, v in cmd.parameters for item in _items(v))]
    return [cmd.identity, *(item for c in cmd.changes for v in (c.new, c.observed) for item in _items(v))]


def _param_check(c: ParamChange, *, rollback: bool, key: str) -> list[str]:
    """One parameter: in place already, still as expected (to change), or drifted."""
    pwsh.parameter(c.name)  # refuses anything that is not a plain parameter name
    name = pwsh.quote(c.name)
    delta = c.list_delta
    if delta is not None:
        added, removed = delta
        if rollback:
            added, removed = removed, added
        checks = []
        if added:
            checks.append(f"(Test-ExconnHas $current.{c.name} @({','.join(pwsh.quote(a) for a in added)}))")
        if removed:
            checks.append(
                f"(Test-ExconnHas $current.{c.name} @({','.join(pwsh.quote(r) for r in removed)}) -None)"
            )
        return [f"    if (-not ({' -and '.join(checks)})) {{ $pending += {name} }}"]
    if c.observed is UNREAD:
        if rollback:
            return [
                f"    if ($null -eq $saved -or -not $saved.ContainsKey({name})) "
                f"{{ $drift += ({name} + ' (its old value was not recorded: "
                "run remediation.ps1 -Apply first)') }",
                f"    elseif (-not (Test-ExconnSame $current.{c.name} $saved[{name}])) "
                f"{{ $pending += {name} }}",
            ]
        return [
            f"    $before[{name}] = $current.{c.name}",
            f"    if (-not (Test-ExconnSame $current.{c.name} {pwsh.literal(c.new)})) "
            f"{{ $pending += {name} }}",
        ]
    target, expected = (c.observed, c.new) if rollback else (c.new, c.observed)
    return [
        f"    if (Test-ExconnSame $current.{c.name} {pwsh.literal(target)}) {{ }}",
        f"    elseif (Test-ExconnSame $current.{c.name} {pwsh.literal(expected)}) {{ $pending += {name} }}",
        f"    else {{ $drift += {name} }}",
    ]


def _set_block(cmd: SetCommand, *, rollback: bool, key: str, guard: str | None = None) -> list[str]:
    """Read the object; a change already in place is reported as such, one whose values (or the
    values it depends on) differ from the export is skipped; only then is it made."""
    label = _label(cmd)
    unread = cmd.reads_at_apply
    restored = {name: f"$saved[{pwsh.quote(name)}]" for name in unread}
    run = cmd.render_rollback(restored) if rollback else cmd.render()
    lines = [
        "try {",
        *lookup_lines(cmd, rollback=rollback, key=key),
        f"    $current = {_get(cmd)} -ErrorAction Stop",
        "    $drift = @()",
        "    $pending = @()",
    ]
    if unread and not rollback:
        lines.append("    $before = @{}")
    if unread and rollback:
        lines.append(f"    $saved = $state[{pwsh.quote(key)}]")
    for c in cmd.changes:
        lines += _param_check(c, rollback=rollback, key=key)
    if not rollback:
        for req in requirements(cmd):
            pwsh.parameter(req.name)
            lines.append(
                f"    if (-not (Test-ExconnSame $current.{req.name} {pwsh.literal(req.value)})) "
                f"{{ $drift += {pwsh.quote(f'{req.name} (must be {pwsh.literal(req.value)}: {req.why})')} }}"
            )
    since = "remediation" if rollback else "export"
    done = "Already restored" if rollback else "Already applied"
    lines += [
        "    if ($drift.Count -gt 0) {",
        f"        Write-Warning ({pwsh.quote(f'Skipped {label}: changed since the {since}: ')}"
        " + ($drift -join ', '))",
        "        $skipped++",
        "    } elseif ($pending.Count -eq 0) {",
        f"        Write-Host {pwsh.quote(f'{done}: {label}')}",
        "        $already++",
        "    } else {",
    ]
    if unread and not rollback:
        lines.append(f"        if ($Apply) {{ $state[{pwsh.quote(key)}] = $before }}")
    if not rollback:
        lines += record_line(cmd, key=key)
    lines += [
        *guarded(run, label, guard),
        "    }",
        "} catch {",
        f"    Write-Warning ({pwsh.quote(f'Failed: {label}: ')} + $_.Exception.Message)",
        "    $failed++",
        "}",
    ]
    return lines


def _new_block(cmd: NewCommand, *, rollback: bool, guard: str | None = None) -> list[str]:
    label = _label(cmd)
    comment = next((v for n, v in cmd.parameters if n == "Comment" and isinstance(v, str)), None)
    # The connector exconn created carries its Comment: never remove (or count as ours) a namesake.
    ours = f"$existing.Comment -eq {pwsh.quote(comment)}" if comment is not None else "$true"
    if rollback:
        run = cmd.render_rollback()
        branches = [
            "    if ($null -eq $existing) {",
            f"        Write-Host {pwsh.quote(f'Already restored: {label} does not exist')}",
            "        $already++",
            f"    }} elseif (-not ({ours})) {{",
            "        Write-Warning "
            + pwsh.quote(f"Skipped {label}: its Comment shows exconn did not create it"),
            "        $skipped++",
        ]
    else:
        run = cmd.render()
        branches = [
            f"    if (($null -ne $existing) -and ({ours})) {{",
            f"        Write-Host {pwsh.quote(f'Already applied: {label}')}",
            "        $already++",
            "    } elseif ($null -ne $existing) {",
            "        Write-Warning "
            + pwsh.quote(f"Skipped {label}: a connector of that name exists already"),
            "        $skipped++",
        ]
    return [
        "try {",
        f"    $existing = {_get(cmd)} -ErrorAction SilentlyContinue",
        *branches,
        "    } else {",
        *guarded(run, label, guard),
        "    }",
        "} catch {",
        f"    Write-Warning ({pwsh.quote(f'Failed: {label}: ')} + $_.Exception.Message)",
        "    $failed++",
        "}",
    ]


def _finding_comment(f: Finding) -> str:
    return pwsh.comment(
        f"{f.rule.id} ({f.severity.label}) {f.rule.title}: {f.target.kind} {f.target.identity}: {f.message}"
    )


def _change_lines(change: PlannedChange, index: int, total: int, *, rollback: bool) -> list[str]:
    cmd = change.command
    verb = "Undo" if rollback else "Change"
    lines = ["", pwsh.comment(f"--- {verb} {index}/{total}: {_label(cmd)}")]
    lines += [_finding_comment(f) for f in change.findings]
    lines += [pwsh.comment("merged: " + note) for note in change.notes]
    if any(ch in v for v in _values(cmd) for ch in _LINE_BREAKS):
        # A line break inside a value would survive quoting but not the CRLF conversion: refuse it.
        return [*lines, pwsh.comment("Not written: a value contains a line break. Make this change by hand.")]
    try:
        guard = None if rollback else would_break(change.findings)
        if isinstance(cmd, SetCommand):
            block = _set_block(cmd, rollback=rollback, key=f"change-{index}", guard=guard)
        else:
            block = _new_block(cmd, rollback=rollback, guard=guard)
    except pwsh.UnsafeValue as exc:
        return [*lines, pwsh.comment(f"Not written: {exc}. Make this change by hand.")]
    return lines + block


def _header(
    *, kind: str, report: Report, sources: Sequence[str], generated_at: dt.datetime, changes: int
) -> list[str]:
    purpose = {
        "remediation": "Fixes the connector TLS findings exconn reported",
        "rollback": "Restores the values remediation.ps1 changed, in reverse order",
    }[kind]
    lines = [
        "<#",
        ".SYNOPSIS",
        f"    {purpose}: {changes} change(s) for {len(report.findings)} finding(s).",
        ".DESCRIPTION",
        f"    Generated by exconn {__version__} at {generated_at.isoformat()} from "
        f"{len(sources)} source(s), {len(report.findings)} finding(s):",
    ]
    lines += ["    " + line for s in sources for line in pwsh.comment(s).splitlines()]
    lines += [
        "    Without -Apply every change runs with -WhatIf and nothing is modified.",
        "    Before each change the object is read again; if any value differs from the one "
        + ("the remediation set" if kind == "rollback" else "observed in the export")
        + ",",
        "    the change is skipped with a warning (so are changes whose prerequisites, such as",
        "    RequireTLS for TlsAuthLevel, no longer hold). A change already in place is reported",
        "    as such. Failures are counted and summarised at the end.",
        "    With -Apply a transcript is kept beside the script"
        + (
            "; values the export lacked are read before the change and recorded in"
            " remediation-state.xml for rollback.ps1."
            if kind == "remediation"
            else "; values the export lacked are restored from remediation-state.xml."
        ),
        "    Exit status: 0 all done or nothing to do, 1 a change failed, 2 the Exchange cmdlets",
        "    are not loaded, 3 a change was skipped because the object changed.",
        ".PARAMETER Apply",
        "    Make the changes. Without it every command runs with -WhatIf.",
        *_FORCE_DOC[: 2 if kind == "remediation" else 0],
        ".EXAMPLE",
        f"    .\\{kind}.ps1",
        ".EXAMPLE",
        f"    .\\{kind}.ps1 -Apply",
        "#>",
        "[CmdletBinding()]",
        "param([switch]$Apply, [switch]$Force)" if kind == "remediation" else "param([switch]$Apply)",
        "",
    ]
    return lines


_FORCE_DOC = (
    ".PARAMETER Force",
    "    Also make the changes the logs say would break mail flow (else skipped, warned).",
)


def _unfixed(report: Report) -> list[str]:
    left = [f for f in report.findings if not f.commands]
    if not left:
        return []
    lines = ["", pwsh.comment("Findings without an automatic fix, and why:")]
    for f in left:
        lines.append(_finding_comment(f))
        lines.append(pwsh.comment("    " + (f.fix_note or "remediation: " + f.rule.remediation)))
    return lines


def _cmdlets(planned: Sequence[PlannedChange], *, rollback: bool) -> list[str]:
    names: list[str] = []
    for change in planned:
        cmd = change.command
        names.append(f"Get-{_noun(cmd.cmdlet)}")
        if isinstance(cmd, NewCommand) and rollback:
            names.append(f"Remove-{_noun(cmd.cmdlet)}")
        else:
            names.append(cmd.cmdlet)
        if isinstance(cmd, SetCommand) and cmd.lookup is not None and not rollback:
            names.append("Get-ExchangeCertificate")
    return list(dict.fromkeys(names))


def _script(kind: str, report: Report, sources: Sequence[str], generated_at: dt.datetime) -> str:
    planned = plan_changes(report)
    total = len(planned)
    rollback = kind == "rollback"
    lines = _header(kind=kind, report=report, sources=sources, generated_at=generated_at, changes=total)
    lines += _PRELUDE
    if not rollback and uses_lookup([p.command for p in planned if isinstance(p.command, SetCommand)]):
        lines += FIND_CERTIFICATE
    lines += _transcript(kind)
    body = _preflight(_cmdlets(planned, rollback=rollback))
    if rollback:
        body.append(
            "$state = if (Test-Path -LiteralPath $statePath) { Import-Clixml -Path $statePath } else { @{} }"
        )
    else:
        body.append("$state = @{}")
    order = reversed(list(enumerate(planned, 1))) if rollback else enumerate(planned, 1)
    for i, change in order:
        body += _change_lines(change, i, total, rollback=rollback)
    if not rollback:
        body += _unfixed(report)
    body += _summary(kind, record_state=not rollback)
    lines += _body(body)
    return "\n".join(lines) + "\n"


def render_scripts(
    report: Report, org_sources: Sequence[str], *, generated_at: dt.datetime
) -> tuple[str, str]:
    """The text (LF line endings, no BOM) of remediation.ps1 and rollback.ps1."""
    return (
        _script("remediation", report, org_sources, generated_at),
        _script("rollback", report, org_sources, generated_at),
    )


def _stage(path: Path, text: str) -> tuple[str, Path]:
    """A temporary file beside `path` holding the script: UTF-8 with BOM (Windows PowerShell 5.1
    reads BOM-less files as ANSI), CRLF. The caller renames it into place."""
    # backslashreplace: a lone surrogate from a CLIXML `_xD800_` escape cannot be UTF-8.
    data = (BOM + text.replace("\r\n", "\n").replace("\n", "\r\n")).encode("utf-8", "backslashreplace")
    return stage_file(path, data)


def write_fix(
    report: Report, org_sources: Sequence[str], out_dir: Path, *, generated_at: dt.datetime
) -> list[Path]:
    """Write remediation.ps1 and rollback.ps1 into `out_dir`; returns their paths.

    Both are written in full before either replaces an older copy, so a failure never leaves a
    new remediation beside the rollback of another run. Raises InputError naming `out_dir` when
    it cannot be written (a file, a read-only place).
    """
    fix_text, undo_text = render_scripts(report, org_sources, generated_at=generated_at)
    staged: list[tuple[str, Path]] = []
    written: list[Path] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in (("remediation.ps1", fix_text), ("rollback.ps1", undo_text)):
            path = out_dir / name
            staged.append(_stage(path, text))
            written.append(path)
        for tmp, target in staged:
            os.replace(tmp, target)
    except OSError as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        reason = (
            "it is not a folder" if out_dir.exists() and not out_dir.is_dir() else exc.strerror or str(exc)
        )
        raise InputError(out_dir, f"cannot write the fix scripts: {reason}") from None
    return written
