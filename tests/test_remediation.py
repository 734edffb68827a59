"""remediation.ps1 / rollback.ps1, and a simulated Exchange write-time validator for every fix.

The validator encodes the write-time rules of ../shared/design/EXCHANGE.md. Each generated Set-*
command is applied over the observed values of its object (after checking that the object holds
the value the command expects) and the resulting parameter set must be one Exchange accepts.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import os
import stat
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exconn import __version__
from exconn.fix import UNREAD, Fix, NewCommand, SetCommand, requirements
from exconn.model import (
    UNKNOWN,
    AddressSpace,
    AuthMechanism,
    Binding,
    CertificateName,
    IPRange,
    Organization,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    SmartHostAuthMechanism,
    Source,
    TlsAuthLevel,
    TransportConfig,
    TransportRole,
    flag_names,
)
from exconn.remediate.script import plan_changes, render_scripts, write_fix
from exconn.rules.base import Context, Report, evaluate
from tests.test_pwsh import assert_balanced, code_of

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
SRC = Source("test.xml")
EVERYTHING = IPRange(
    "0.0.0.0-255.255.255.255", ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("255.255.255.255")
)
_LISTS = {
    "authmechanism",
    "permissiongroups",
    "smarthosts",
    "tlssenddomainsecurelist",
    "tlsreceivedomainsecurelist",
}


# --- simulated Exchange -------------------------------------------------------------------------


def norm(name: str, value: Any) -> Any:
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, enum.Enum):
        value = value.value
    if name.lower() in _LISTS:
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return frozenset()
        if isinstance(value, str):
            value = [value]
        return frozenset(str(v).lower() for v in value)
    if isinstance(value, str):
        return value.lower()
    return value


def _cert_name(value: Any) -> Any:
    return value.raw if isinstance(value, CertificateName) else value


def state_of(obj: Any) -> dict[str, Any]:
    """The parameters Exchange validates, as the export observed them."""
    if isinstance(obj, SendConnector):
        raw = {
            "IgnoreSTARTTLS": obj.ignore_starttls,
            "RequireTLS": obj.require_tls,
            "TlsAuthLevel": obj.tls_auth_level,
            "TlsDomain": obj.tls_domain,
            "DomainSecureEnabled": obj.domain_secure_enabled,
            "DNSRoutingEnabled": obj.dns_routing_enabled,
            "SmartHosts": obj.smart_hosts,
            "SmartHostAuthMechanism": obj.smart_host_auth_mechanism,
            "AuthenticationCredential": "set" if obj.authentication_credential_set else None,
            "CloudServicesMailEnabled": obj.cloud_services_mail_enabled,
            "TlsCertificateName": _cert_name(obj.tls_certificate_name),
        }
    elif isinstance(obj, ReceiveConnector):
        raw = {
            "AuthMechanism": flag_names(obj.auth_mechanism),
            "PermissionGroups": flag_names(obj.permission_groups),
            "RequireTLS": obj.require_tls,
            "DomainSecureEnabled": obj.domain_secure_enabled,
            "ExtendedProtectionPolicy": obj.extended_protection_policy,
            "TlsCertificateName": _cert_name(obj.tls_certificate_name),
        }
    else:
        assert isinstance(obj, TransportConfig)
        raw = {
            "TLSSendDomainSecureList": obj.tls_send_domain_secure_list,
            "TLSReceiveDomainSecureList": obj.tls_receive_domain_secure_list,
        }
    return {k.lower(): norm(k, v) for k, v in raw.items()}


def validate(cmdlet: str, s: dict[str, Any]) -> list[str]:
    """EXCHANGE.md's write-time validation: the errors Exchange would raise for this state."""
    errors: list[str] = []
    if cmdlet.endswith("SendConnector"):
        level = s["tlsauthlevel"]
        smart = not s["dnsroutingenabled"] and bool(s["smarthosts"])
        if s["requiretls"] and s["ignorestarttls"]:
            errors.append("RequireTLS and IgnoreSTARTTLS both true")
        if level is not None and not s["requiretls"]:
            errors.append("TlsAuthLevel needs RequireTLS")
        if level is not None and s["domainsecureenabled"]:
            errors.append("TlsAuthLevel not allowed with DomainSecureEnabled")
        if s["tlsdomain"] is not None and level != "domainvalidation":
            errors.append("TlsDomain needs DomainValidation")
        if smart and level == "domainvalidation" and not s["tlsdomain"]:
            errors.append("smart hosts + DomainValidation need TlsDomain")
        if s["tlsdomain"] is not None and (s["tlsdomain"] == "*" or " " in s["tlsdomain"]):
            errors.append("TlsDomain invalid")
        if s["domainsecureenabled"] and (not s["dnsroutingenabled"] or s["ignorestarttls"]):
            errors.append("DomainSecureEnabled needs DNSRoutingEnabled and IgnoreSTARTTLS false")
        if (
            s["smarthostauthmechanism"] in ("basicauth", "basicauthrequiretls")
            and not s["authenticationcredential"]
        ):
            errors.append("BasicAuth needs AuthenticationCredential")
    elif cmdlet.endswith("ReceiveConnector"):
        auth = s["authmechanism"]
        if "basicauthrequiretls" in auth and not {"tls", "basicauth"} <= auth:
            errors.append("BasicAuthRequireTLS needs Tls and BasicAuth")
        if s["requiretls"] and "tls" not in auth:
            errors.append("RequireTLS needs Tls")
        if s["domainsecureenabled"] and "tls" not in auth:
            errors.append("DomainSecureEnabled needs Tls")
        if "externalauthoritative" in auth and (
            auth & {"integrated", "basicauth", "basicauthrequiretls", "exchangeserver"}
            or "exchangeservers" not in s["permissiongroups"]
        ):
            errors.append("ExternalAuthoritative combination")
        if (s["extendedprotectionpolicy"] or "none") != "none" and not s["requiretls"]:
            errors.append("ExtendedProtectionPolicy needs RequireTLS")
    return errors


def apply(
    state: dict[str, Any], cmd: SetCommand, *, rollback: bool = False, saved: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Exchange after the command; fails if the object does not hold what the script checks for.
    A value the export lacked is read by the script (`saved`: what it recorded) instead of checked;
    a multi-valued property gets items added and removed, the rest of the list kept."""
    after = dict(state)
    for c in cmd.changes:
        key = c.name.lower()
        delta = c.list_delta
        if delta is not None:
            added, removed = delta if not rollback else (delta[1], delta[0])
            after[key] = (after[key] | {a.lower() for a in added}) - {r.lower() for r in removed}
            continue
        if c.observed is UNREAD:
            after[key] = saved[key] if rollback and saved is not None else norm(c.name, c.new)
            continue
        expected, value = (c.new, c.observed) if rollback else (c.observed, c.new)
        assert after[key] == norm(c.name, expected), f"{cmd.identity}: {c.name} is not {expected!r}"
        after[key] = norm(c.name, value)
    return after


def find_object(org: Organization, cmd: SetCommand) -> Any:
    if cmd.cmdlet == "Set-TransportConfig":
        return org.transport_configs[0]
    pool: Iterable[Any] = org.send_connectors if cmd.cmdlet == "Set-SendConnector" else org.receive_connectors
    return next(o for o in pool if o.identity == cmd.identity)


def assert_fixes_valid(org: Organization, fixes: Iterable[Fix]) -> None:
    for cmd in fixes:
        assert isinstance(cmd, SetCommand)  # no rule creates objects yet
        before = state_of(find_object(org, cmd))
        for req in requirements(cmd):
            # The script checks each prerequisite at apply time and skips the change unless it
            # holds; a value the export lacked is assumed to pass that check.
            if before.get(req.name.lower(), UNKNOWN) is UNKNOWN:
                before[req.name.lower()] = norm(req.name, req.value)
        after = apply(before, cmd)
        assert validate(cmd.cmdlet, after) == [], cmd.render()
        restored = {name: f"$saved['{name}']" for name in cmd.reads_at_apply}
        assert apply(after, cmd, rollback=True, saved=before) == before, cmd.render_rollback(restored)


def assert_report_fixes_valid(org: Organization, report: Report) -> None:
    """Each finding's own fix, and the merged commands the script runs, are valid."""
    assert_fixes_valid(org, (fix for f in report.findings for fix in f.fix))
    assert_fixes_valid(org, (p.command for p in plan_changes(report)))


# --- an organisation with many findings on the same objects --------------------------------------


def messy_org(name: str = "Out'bound") -> Organization:
    star = AddressSpace("SMTP", "*", 1, "SMTP:*;1")
    to_exo = SendConnector(
        name,
        name,
        SRC,
        enabled=True,
        address_spaces=(star,),
        dns_routing_enabled=False,
        smart_hosts=("contoso-com.mail.protection.outlook.com",),
        ignore_starttls=True,
        require_tls=False,
        tls_auth_level=None,
        tls_domain=None,
        tls_certificate_name=None,
        smart_host_auth_mechanism=SmartHostAuthMechanism.BASIC_AUTH,
        authentication_credential_set=True,
        domain_secure_enabled=False,
        cloud_services_mail_enabled=False,
        source_transport_servers=("EX01",),
    )
    secured = [
        replace(
            to_exo,
            identity=n,
            name=n,
            address_spaces=(AddressSpace("SMTP", d, 1, f"SMTP:{d};1"),),
            dns_routing_enabled=True,
            smart_hosts=(),
            ignore_starttls=False,
            smart_host_auth_mechanism=SmartHostAuthMechanism.NONE,
            domain_secure_enabled=True,
        )
        for n, d in (("Partner A", "partner.example.org"), ("Partner B", "fabrikam.example"))
    ]
    frontend = ReceiveConnector(
        "EX01\\Default Frontend EX01",
        "Default Frontend EX01",
        SRC,
        server="EX01",
        enabled=True,
        auth_mechanism=AuthMechanism.INTEGRATED | AuthMechanism.BASIC_AUTH,
        permission_groups=PermissionGroups.ANONYMOUS_USERS | PermissionGroups.EXCHANGE_SERVERS,
        bindings=(Binding("0.0.0.0", 25, "0.0.0.0:25"),),
        remote_ip_ranges=(EVERYTHING,),
        require_tls=False,
        domain_secure_enabled=False,
        transport_role=TransportRole.FRONTEND,
        fqdn="mail.contoso.com",
        tls_certificate_name=None,
        tls_domain_capabilities=(),
        extended_protection_policy="None",
    )
    mx_requires = replace(
        frontend,
        identity="EX02\\Default Frontend EX02",
        name="Default Frontend EX02",
        server="EX02",
        auth_mechanism=AuthMechanism.TLS,
        require_tls=True,
        domain_secure_enabled=True,
        extended_protection_policy="Allow",
    )
    config = TransportConfig(
        "Transport Settings",
        SRC,
        tls_send_domain_secure_list=("other.example",),
        tls_receive_domain_secure_list=(),
    )
    return Organization(
        send_connectors=(to_exo, *secured),
        receive_connectors=(frontend, mx_requires),
        transport_configs=(config,),
        sources=("test.xml",),
    )


def test_every_fix_and_every_merged_command_is_valid() -> None:
    org = messy_org()
    report = evaluate(Context(org, NOW))
    ids = {f.rule.id for f in report.findings}
    assert {
        "EXC-S001",
        "EXC-S004",
        "EXC-S007",
        "EXC-S008",
        "EXC-S010",
        "EXC-R001",
        "EXC-R002",
        "EXC-R003",
    } <= ids
    assert {"EXC-R004"} <= ids
    assert_report_fixes_valid(org, report)


def test_fixes_on_one_object_are_merged_and_conflicts_resolved() -> None:
    org = messy_org()
    planned = plan_changes(evaluate(Context(org, NOW)))
    send = [p for p in planned if p.command.cmdlet == "Set-SendConnector"]
    assert len(send) == 1  # S001, S004, S007, S008 on one connector: one command
    cmd = send[0].command
    assert isinstance(cmd, SetCommand)
    names = [c.name for c in cmd.changes]
    assert len(names) == len(set(names))
    assert {"IgnoreSTARTTLS", "RequireTLS", "TlsAuthLevel", "TlsDomain", "SmartHostAuthMechanism"} <= set(
        names
    )
    transport = [p for p in planned if p.command.cmdlet == "Set-TransportConfig"]
    assert len(transport) == 1  # two S010 findings and one R004 on the singleton
    tcmd = transport[0].command
    assert isinstance(tcmd, SetCommand)
    send_list = next(c for c in tcmd.changes if c.name == "TLSSendDomainSecureList")
    assert norm("TLSSendDomainSecureList", send_list.new) == {
        "other.example",
        "partner.example.org",
        "fabrikam.example",
    }
    assert "-Identity" not in tcmd.render()
    receive = next(p for p in planned if p.command.identity == "EX01\\Default Frontend EX01")
    rcmd = receive.command
    assert isinstance(rcmd, SetCommand)
    (auth,) = rcmd.changes
    assert norm("AuthMechanism", auth.new) == {"tls", "integrated", "basicauth", "basicauthrequiretls"}


def test_conflicting_scalar_values_keep_the_most_severe_and_strongest_tls_level() -> None:
    from exconn.fix import ParamChange
    from exconn.remediate.plan import _merge_param
    from exconn.rules.base import Finding, Severity, Target
    from exconn.rules.send import exo_connector_tls, require_tls_without_validation

    target = Target("SendConnector", "x")

    def finding(r: Any, sev: Severity) -> Finding:
        return Finding(r, sev, target, None, None, "m", ())

    high, med = (
        finding(exo_connector_tls, Severity.HIGH),
        finding(require_tls_without_validation, Severity.MEDIUM),
    )
    change, note = _merge_param(
        "TlsAuthLevel",
        [
            (ParamChange("TlsAuthLevel", TlsAuthLevel.CERTIFICATE_VALIDATION, None), med),
            (ParamChange("TlsAuthLevel", TlsAuthLevel.DOMAIN_VALIDATION, None), high),
        ],
    )
    assert change.new is TlsAuthLevel.DOMAIN_VALIDATION and note
    change, note = _merge_param(
        "RequireTLS",
        [(ParamChange("RequireTLS", True, False), high), (ParamChange("RequireTLS", True, False), med)],
    )
    assert change.new is True and note is None
    change, note = _merge_param(
        "Comment", [(ParamChange("Comment", "a", None), high), (ParamChange("Comment", "b", None), med)]
    )
    assert change.new == "a" and note and "EXC-S007" in note


# --- the files ------------------------------------------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> tuple[bytes, bytes]:
    org = messy_org()
    report = evaluate(Context(org, NOW))
    paths = write_fix(report, ["send.xml", "receive.xml"], tmp_path / "fix", generated_at=NOW)
    assert [p.name for p in paths] == ["remediation.ps1", "rollback.ps1"]
    assert sorted(p.name for p in (tmp_path / "fix").iterdir()) == ["remediation.ps1", "rollback.ps1"]
    return paths[0].read_bytes(), paths[1].read_bytes()


def test_files_are_utf8_with_bom_and_crlf(written: tuple[bytes, bytes]) -> None:
    for data in written:
        assert data.startswith(b"\xef\xbb\xbf")
        assert b"\r\n" in data
        assert b"\n" not in data.replace(b"\r\n", b"")
        assert b"\r" not in data.replace(b"\r\n", b"")
        data.decode("utf-8")


def test_header_says_what_it_was_generated_from(written: tuple[bytes, bytes]) -> None:
    text = written[0].decode("utf-8-sig")
    head = text.split("#>", 1)[0]
    assert head.startswith("<#") and ".SYNOPSIS" in head and ".PARAMETER Apply" in head
    assert "send.xml" in head and "receive.xml" in head
    assert NOW.isoformat() in head and f"exconn {__version__}" in head
    assert "finding(s)" in head
    # -Force makes the changes the logs say would break mail flow (remediation.ps1 only).
    assert "param([switch]$Apply, [switch]$Force)" in text and ".PARAMETER Force" in head


def test_whatif_unless_apply_and_every_change_checked_first(written: tuple[bytes, bytes]) -> None:
    for data in written:
        lines = data.decode("utf-8-sig").split("\r\n")
        assert "$whatIf = -not $Apply" in lines
        changes = [ln for ln in lines if ln.strip().startswith(("Set-", "New-", "Remove-"))]
        assert changes
        for i, ln in enumerate(lines):
            if ln.strip().startswith(("Set-", "New-", "Remove-")):
                assert ln.endswith("-ErrorAction Stop -WhatIf:$whatIf")
                before = "\n".join(lines[max(0, i - 20) : i])
                assert "$drift.Count -gt 0" in before or "$existing" in before
        text = "\n".join(lines)
        # Each change in its own try/catch, inside the one run block (its try/finally ends the transcript).
        assert text.count("    try {") == text.count("    } catch {") == len(changes)
        assert "$failed++" in text and "return 1" in text and "return 3" in text


def test_each_command_is_linked_to_its_findings(written: tuple[bytes, bytes]) -> None:
    text = written[0].decode("utf-8-sig")
    for rid in ("EXC-S001", "EXC-S004", "EXC-S007", "EXC-R001", "EXC-R003", "EXC-S010"):
        assert f"# {rid} (" in text


def test_rollback_reverses_each_change(written: tuple[bytes, bytes]) -> None:
    org = messy_org()
    report = evaluate(Context(org, NOW))
    planned = plan_changes(report)
    fix_text, undo_text = (d.decode("utf-8-sig") for d in written)
    forward = [ln.strip() for ln in fix_text.split("\r\n") if ln.strip().startswith("Set-")]
    backward = [ln.strip() for ln in undo_text.split("\r\n") if ln.strip().startswith("Set-")]
    suffix = " -ErrorAction Stop -WhatIf:$whatIf"
    assert forward == [p.command.render() + suffix for p in planned]
    assert backward == [p.command.render_rollback() + suffix for p in reversed(planned)]
    # The rollback checks for the value the remediation set, not the exported one.
    assert "Test-ExconnSame $current.IgnoreSTARTTLS $false" in undo_text
    assert "Test-ExconnSame $current.IgnoreSTARTTLS $true" in fix_text


def test_every_line_has_balanced_quotes(written: tuple[bytes, bytes]) -> None:
    for data in written:
        for line in data.decode("utf-8-sig").split("\r\n"):
            assert_balanced(line)


HOSTILE = [
    "a'b",
    "a\u2018b\u2019c\u201ad\u201be",
    "$(Remove-Item C:\\ -Recurse)",
    "`$x`'",
    "x'; Remove-SendConnector -Identity * -Confirm:$false; '",
    "#> Write-Host pwned <#",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_inside_strings_and_comments(name: str) -> None:
    org = messy_org(name)
    report = evaluate(Context(org, NOW))
    fix_text, undo_text = render_scripts(report, [name + ".xml"], generated_at=NOW)
    for text in (fix_text, undo_text):
        head = text.split("\n#>\n", 1)[0]
        assert "#>" not in head  # only the closing line of the help block
        for line in text.splitlines():
            assert_balanced(line)
            code = code_of(line)
            for payload in ("Remove-", "pwned", "$(", "`"):
                assert payload not in code, line


def test_names_with_line_breaks_are_not_written(tmp_path: Path) -> None:
    org = messy_org("evil\r\nRemove-Item x")
    report = evaluate(Context(org, NOW))
    fix_text, _ = render_scripts(report, ["a\nb.xml"], generated_at=NOW)
    assert "Not written: a value contains a line break" in fix_text
    for line in fix_text.splitlines():
        assert_balanced(line)
        assert not line.startswith("Remove-Item")


def test_empty_report_still_writes_both_scripts(tmp_path: Path) -> None:
    paths = write_fix(Report((), (), ()), [], tmp_path, generated_at=NOW)
    for p in paths:
        text = p.read_bytes().decode("utf-8-sig")
        assert "0 change(s)" in text and "param([switch]$Apply" in text


def test_new_command_is_skipped_when_the_object_exists() -> None:
    from exconn.rules.base import Finding, Severity, Target
    from exconn.rules.send import ignore_starttls

    new = NewCommand("New-SendConnector", "To partner", (("AddressSpaces", ["SMTP:partner.example;1"]),))
    finding = Finding(
        ignore_starttls, Severity.LOW, Target("Domain", "partner.example"), None, None, "m", (new,)
    )
    fix_text, undo_text = render_scripts(Report((finding,), (), ()), [], generated_at=NOW)
    assert "$existing = Get-SendConnector -Identity 'To partner' -ErrorAction SilentlyContinue" in fix_text
    assert "if ($null -ne $existing)" in fix_text
    assert "Remove-SendConnector -Identity 'To partner' -Confirm:$false -ErrorAction Stop" in undo_text
    assert "if ($null -eq $existing)" in undo_text


def test_rollback_removes_only_the_connector_exconn_created() -> None:
    from exconn.rules.base import Finding, Severity, Target
    from exconn.rules.send import ignore_starttls

    new = NewCommand(
        "New-SendConnector",
        "To partner",
        (("AddressSpaces", ["SMTP:partner.example;1"]), ("Comment", "exconn: emulates O'Neil's policy")),
    )
    finding = Finding(
        ignore_starttls, Severity.LOW, Target("Domain", "partner.example"), None, None, "m", (new,)
    )
    _, undo_text = render_scripts(Report((finding,), (), ()), [], generated_at=NOW)
    assert "} elseif (-not ($existing.Comment -eq 'exconn: emulates O''Neil''s policy')) {" in undo_text
    assert_balanced(undo_text)


def test_no_temp_files_left_and_existing_files_replaced(tmp_path: Path) -> None:
    (tmp_path / "remediation.ps1").write_text("old")
    write_fix(Report((), (), ()), ["x.xml"], tmp_path, generated_at=NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remediation.ps1", "rollback.ps1"]
    assert (tmp_path / "remediation.ps1").read_bytes().startswith(b"\xef\xbb\xbf<#")


def test_scripts_get_the_umask_mode_like_every_other_output(tmp_path: Path) -> None:
    """Was: 0600 (mkstemp's mode), unlike the reports and DNS files: a colleague could not review them."""
    umask = os.umask(0o022)
    try:
        paths = write_fix(Report((), (), ()), ["x.xml"], tmp_path, generated_at=NOW)
    finally:
        os.umask(umask)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o644, 0o644]


def test_merged_tls_domain_follows_the_winning_tls_auth_level() -> None:
    """Two findings on one connector: the level and the domain must come from the same fix, or
    Exchange refuses the merged command (TlsDomain needs DomainValidation, smart hosts need it)."""
    from exconn.fix import ParamChange
    from exconn.model import SendConnector, TlsAuthLevel
    from exconn.rules.base import Finding, Severity, Target, all_rules

    rules = {r.id: r for r in all_rules()}
    conn = SendConnector(
        "To Partner",
        "To Partner",
        SRC,
        enabled=True,
        dns_routing_enabled=False,
        smart_hosts=("relay.partner.com",),
        require_tls=True,
        ignore_starttls=False,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="old.partner.com",
        domain_secure_enabled=False,
        smart_host_auth_mechanism=SmartHostAuthMechanism.NONE,
        authentication_credential_set=False,
        address_spaces=(AddressSpace("SMTP", "partner.com", 1, "SMTP:partner.com;1"),),
    )
    target = Target.of(conn)

    def finding(rule: str, severity: Severity, level: TlsAuthLevel, domain: str | None) -> Finding:
        cmd = SetCommand(
            "Set-SendConnector",
            conn.identity,
            (
                ParamChange("TlsAuthLevel", level, TlsAuthLevel.DOMAIN_VALIDATION),
                ParamChange("TlsDomain", domain, "old.partner.com"),
            ),
        )
        return Finding(rules[rule], severity, target, "TlsAuthLevel", None, "m", (cmd,))

    relax = finding("EXC-W009", Severity.HIGH, TlsAuthLevel.ENCRYPTION_ONLY, None)
    retarget = finding("EXC-S003", Severity.MEDIUM, TlsAuthLevel.DOMAIN_VALIDATION, "*.partner.com")
    report = Report((relax, retarget), (), ())
    (planned,) = plan_changes(report)
    values = {c.name: c.new for c in planned.command.changes}
    assert values == {"TlsAuthLevel": TlsAuthLevel.DOMAIN_VALIDATION, "TlsDomain": "*.partner.com"}
    assert any("TlsDomain: follows" in n for n in planned.notes)
    assert_report_fixes_valid(Organization(send_connectors=(conn,)), report)
