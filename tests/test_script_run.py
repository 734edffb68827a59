"""How the generated scripts behave when an admin runs them: prerequisites, second runs, exit
codes, transcripts, values the export lacked. No PowerShell runs here (none is packaged for Debian),
so every script is parsed by an independent PowerShell grammar (tree-sitter-powershell) and the
control flow that decides each outcome is read from it.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import tree_sitter as ts
import tree_sitter_powershell as tsp

from exconn.fix import UNREAD, ParamChange, SetCommand
from exconn.model import TlsAuthLevel
from exconn.remediate.script import render_scripts, write_fix
from exconn.rules.base import Context, Finding, Report, Severity, Target, all_rules, evaluate
from exconn.sources.files import load
from tests.test_remediation import messy_org

NOW = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
SAMPLES = Path(__file__).parents[1] / "samples"
_PARSER = ts.Parser(ts.Language(tsp.language()))


def assert_parses(text: str) -> None:
    tree = _PARSER.parse(text.encode("utf-8"))
    if tree.root_node.has_error:
        bad = [n for n in _walk(tree.root_node) if n.is_error or n.is_missing]
        line = bad[0].start_point[0] if bad else 0
        raise AssertionError(f"PowerShell syntax error near line {line + 1}: {text.splitlines()[line]!r}")


def _walk(node: ts.Node) -> list[ts.Node]:
    out = [node]
    for child in node.children:
        out += _walk(child)
    return out


def _finding(cmd: SetCommand) -> Finding:
    rule = all_rules()[0]
    return Finding(rule, Severity.HIGH, Target("SendConnector", cmd.identity), None, None, "m", (cmd,))


def _scripts(*cmds: SetCommand) -> tuple[str, str]:
    return render_scripts(Report(tuple(_finding(c) for c in cmds), (), ()), ["x.xml"], generated_at=NOW)


@pytest.mark.parametrize("where", ["messy", "fabrikam", "exo"])
def test_every_generated_script_parses(where: str, tmp_path: Path) -> None:
    org = messy_org() if where == "messy" else load([str(SAMPLES / where)])
    report = evaluate(Context(org, NOW))
    for path in write_fix(report, org.sources, tmp_path, generated_at=NOW):
        assert_parses(path.read_bytes().decode("utf-8-sig"))


def test_a_prerequisite_the_command_does_not_set_is_checked_at_apply_time() -> None:
    # RequireTLS is already $true in the export: only TlsAuthLevel changes, but it needs RequireTLS.
    cmd = SetCommand(
        "Set-SendConnector",
        "To Partner",
        (ParamChange("TlsAuthLevel", TlsAuthLevel.DOMAIN_VALIDATION, TlsAuthLevel.ENCRYPTION_ONLY),),
    )
    fix, undo = _scripts(cmd)
    assert_parses(fix)
    assert (
        "if (-not (Test-ExconnSame $current.RequireTLS $true)) { $drift += 'RequireTLS (must be $true" in fix
    )
    assert "DomainSecureEnabled (must be $false" in fix
    assert "RequireTLS (must be" not in undo  # the rollback restores a state that was valid


def test_a_second_run_reports_changes_already_in_place() -> None:
    cmd = SetCommand("Set-SendConnector", "Out", (ParamChange("IgnoreSTARTTLS", False, True),))
    fix, undo = _scripts(cmd)
    # In place (the new value): nothing pending; still the observed value: pending; else drift.
    assert "    if (Test-ExconnSame $current.IgnoreSTARTTLS $false) { }" in fix
    assert (
        "    elseif (Test-ExconnSame $current.IgnoreSTARTTLS $true) { $pending += 'IgnoreSTARTTLS' }" in fix
    )
    assert "Write-Host 'Already applied: Set-SendConnector Out'" in fix and "$already++" in fix
    assert "Write-Host 'Already restored: Set-SendConnector Out'" in undo


def test_exit_status_transcript_preflight_and_no_exit_in_a_pasted_console() -> None:
    cmd = SetCommand("Set-SendConnector", "Out", (ParamChange("IgnoreSTARTTLS", False, True),))
    for text, kind in zip(_scripts(cmd), ("remediation", "rollback"), strict=True):
        assert_parses(text)
        assert "if ($failed -gt 0) { return 1 }" in text and "if ($skipped -gt 0) { return 3 }" in text
        assert "return 0" in text
        # The only `exit` runs when the script runs from its file: pasted into a console, it sets
        # $LASTEXITCODE instead of closing the window.
        exits = [
            ln for ln in text.splitlines() if re.search(r"\bexit\b", ln) and not ln.lstrip().startswith("#")
        ]
        assert exits == ["if ($PSCommandPath) { exit $code } else { $global:LASTEXITCODE = $code }"]
        assert "Start-Transcript -Path $log" in text and "Stop-Transcript" in text
        assert f"Join-Path $here ('{kind}-'" in text
        pre = text.index("$missing = @(@('Get-SendConnector','Set-SendConnector')")
        assert pre < text.index("$current = Get-SendConnector") and "return 2" in text


def test_a_value_the_export_lacked_is_read_recorded_and_restored() -> None:
    cmd = SetCommand(
        "Set-ReceiveConnector",
        "EX01\\Default Frontend EX01",
        (ParamChange("RequireTLS", False, True), ParamChange("ExtendedProtectionPolicy", "None", UNREAD)),
    )
    assert cmd.render() == (
        "Set-ReceiveConnector -Identity 'EX01\\Default Frontend EX01' -RequireTLS:$false "
        "-ExtendedProtectionPolicy 'None'"
    )
    fix, undo = _scripts(cmd)
    assert_parses(fix)
    assert_parses(undo)
    assert "$before['ExtendedProtectionPolicy'] = $current.ExtendedProtectionPolicy" in fix
    assert "if ($Apply) { $state['change-1'] = $before }" in fix
    assert "$state | Export-Clixml -Path $statePath" in fix
    assert "Import-Clixml -Path $statePath" in undo and "$saved = $state['change-1']" in undo
    assert "-ExtendedProtectionPolicy $saved['ExtendedProtectionPolicy']" in undo
    assert "its old value was not recorded" in undo


def test_domain_secure_lists_are_added_to_not_replaced() -> None:
    cmd = SetCommand(
        "Set-TransportConfig",
        "Transport Settings",
        (ParamChange("TLSReceiveDomainSecureList", ["a.com", "b.com"], ["a.com"]),),
        singleton=True,
    )
    assert cmd.render() == "Set-TransportConfig -TLSReceiveDomainSecureList @{Add='b.com'}"
    fix, undo = _scripts(cmd)
    assert "Set-TransportConfig -TLSReceiveDomainSecureList @{Remove='b.com'} -ErrorAction Stop" in undo
    # Entries added since the export are no drift: only whether b.com is there already matters.
    assert "if (-not ((Test-ExconnHas $current.TLSReceiveDomainSecureList @('b.com')))) { $pending +=" in fix
    assert_parses(fix)
    assert_parses(undo)


def test_the_quoting_survives_an_independent_grammar() -> None:
    for name in ["O'Neil", 'a$b`c"d', "x'; Remove-Item C:\\ -Recurse; '", "semi;colon", "@(sub)"]:
        org = messy_org(name)
        report = evaluate(Context(org, NOW))
        fix, undo = render_scripts(report, ["x"], generated_at=NOW)
        assert_parses(fix)
        assert_parses(undo)
        tree = _PARSER.parse(fix.encode("utf-8"))
        strings = [n.text.decode() for n in _walk(tree.root_node) if n.type == "verbatim_string_characters"]
        assert any(s == "'" + name.replace("'", "''") + "'" for s in strings), name


def test_replace_keeps_prerequisites_visible() -> None:
    cmd = SetCommand("Set-SendConnector", "Out", (ParamChange("RequireTLS", True, False),))
    fix, _ = _scripts(cmd)
    assert "IgnoreSTARTTLS (must be $false: RequireTLS and IgnoreSTARTTLS cannot both be true)" in fix


def test_a_certificate_the_export_lacks_is_looked_up_at_apply_time() -> None:
    from exconn.fix import certificate_lookup_fix

    cmd = certificate_lookup_fix(
        "Set-SendConnector", "Outbound to Office 365", ("EX01", "EX02"), "mail.contoso.com", None
    )
    fix, undo = _scripts(cmd)
    for text in (fix, undo):
        assert_parses(text)
    # The lookup runs inside the change's try block: a throw (none or several match) fails that
    # change, it never runs with an empty name.
    lookup = (
        "$exconnCertificateName = Find-ExconnCertificate -Server @('EX01','EX02') -Domain 'mail.contoso.com'"
    )
    block = fix[fix.index(lookup) - 200 : fix.index(lookup)]
    assert "try {" in block
    assert "function Find-ExconnCertificate" in fix and "$distinct.Count -ne 1" in fix
    assert "Get-ExchangeCertificate -Server $one" in fix and "'Get-ExchangeCertificate'" in fix
    assert (
        "Set-SendConnector -Identity 'Outbound to Office 365' -TlsCertificateName $exconnCertificateName"
        " -ErrorAction Stop -WhatIf:$whatIf" in fix
    )
    # Recorded for the rollback, which checks the connector still holds that name and clears it.
    assert "$state['change-1:certificate'] = $exconnCertificateName" in fix
    assert "$exconnCertificateName = $state['change-1:certificate']" in undo
    assert "Set-SendConnector -Identity 'Outbound to Office 365' -TlsCertificateName $null" in undo
    assert (
        "Find-ExconnCertificate" not in undo
        and "function Find-ExconnCertificate"
        not in (
            _scripts(SetCommand("Set-SendConnector", "Out", (ParamChange("IgnoreSTARTTLS", False, True),)))[0]
        )
    )
