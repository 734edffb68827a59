"""Cross-check rules (EXC-W…), the DNS writer and the target selection, on constructed facts and model.

Every rule has a test that fires, one that stays quiet, and one where a missing or failed
observation makes it say it could not judge. Every generated command is checked against the
simulated write-time validation of tests/test_remediation.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exconn.cli import main
from exconn.errors import InputError
from exconn.fix import Fix, NewCommand, ParamChange, PublishMtaSts, SetCommand
from exconn.model import (
    UNKNOWN,
    AcceptedDomain,
    AcceptedDomainType,
    AddressSpace,
    AuthMechanism,
    Binding,
    CertificateName,
    CertificateNameStatus,
    ExchangeCertificate,
    IPRange,
    Organization,
    OutboundConnector,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    SmartHostAuthMechanism,
    Source,
    TlsAuthLevel,
    TransportConfig,
    TransportRole,
)
from exconn.posture.errors import ProbeError
from exconn.posture.facts import (
    CertificateFacts,
    DaneFacts,
    DomainPosture,
    MtaStsFacts,
    MtaStsPolicy,
    MxFacts,
    MxHostFacts,
    MxRecord,
    PostureReport,
    TlsRptFacts,
)
from exconn.remediate.dns import DnsFixError, write_dns
from exconn.remediate.script import render_scripts
from exconn.render import Format, RunInfo, render
from exconn.rules import world
from exconn.rules.base import Context, Finding, Report, Rule, Severity, Target, evaluate
from exconn.targets import our_domains, partner_domains, read_domain_file
from tests.test_remediation import apply, norm, state_of, validate

NOW = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
SRC = Source("test.xml")
EVERYTHING = IPRange(
    "0.0.0.0-255.255.255.255", ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("255.255.255.255")
)
LE = "CN=R11, O=Let's Encrypt, C=US"


# --- facts ----------------------------------------------------------------------------------------


def host(
    name: str,
    *,
    probe: str = "done",
    starttls: bool = True,
    trusted: bool = True,
    name_matches: bool = True,
    expired: bool = False,
    sans: tuple[str, ...] | None = None,
) -> MxHostFacts:
    if probe != "done":
        return MxHostFacts(name, None, probe=probe, errors=(ProbeError("connect-failed", "refused"),))
    cert = CertificateFacts(
        subject=f"CN={name}",
        sans=sans if sans is not None else (name,),
        issuer="CN=Test CA",
        not_before="2025-01-01T00:00:00Z",
        not_after="2026-01-01T00:00:00Z",
        trusted=trusted,
        name_matches=name_matches,
        expired=expired,
    )
    return MxHostFacts(
        name,
        None,
        probe="done",
        starttls=starttls,
        tls_established=starttls or None,
        certificate=cert if starttls else None,
    )


def posture(
    domain: str,
    mx: tuple[str, ...] = (),
    *,
    mode: str | None = "enforce",
    patterns: tuple[str, ...] | None = None,
    sts_status: str | None = None,
    tlsrpt: str = "valid",
    dane: str = "absent",
    hosts: tuple[MxHostFacts, ...] | None = None,
    sts_id: str = "20240101000000",
    max_age: int | None = None,
) -> DomainPosture:
    mx = mx or (f"mx.{domain}",)
    if mode is None:
        sts = MtaStsFacts(status=sts_status or "absent")
    else:
        age = max_age if max_age is not None else (604800 if mode == "enforce" else 86400)
        policy = MtaStsPolicy("STSv1", mode, patterns if patterns is not None else mx, age)
        sts = MtaStsFacts(
            status=sts_status or "valid", record=f"v=STSv1; id={sts_id}", id=sts_id, policy=policy
        )
    if sts.status == "error":
        sts = MtaStsFacts(status="error", errors=(ProbeError("dns-timeout", "no answer"),))
    rpt = (
        TlsRptFacts("valid", "v=TLSRPTv1; rua=mailto:tlsrpt@" + domain, ("mailto:tlsrpt@" + domain,))
        if tlsrpt == "valid"
        else TlsRptFacts(tlsrpt, errors=(ProbeError("dns-servfail", "x"),) if tlsrpt == "error" else ())
    )
    return DomainPosture(
        domain=domain,
        observed_at="2025-06-02T12:00:00Z",
        mx=MxFacts("ok", tuple(MxRecord(h, 10 * (i + 1)) for i, h in enumerate(mx))),
        mta_sts=sts,
        tlsrpt=rpt,
        dane=DaneFacts(dane),
        mx_hosts=hosts if hosts is not None else tuple(host(h) for h in mx),
    )


# --- model ----------------------------------------------------------------------------------------


def cert(
    thumb: str, names: tuple[str, ...], *, not_after: dt.datetime, issuer: str = LE
) -> ExchangeCertificate:
    return ExchangeCertificate(
        thumb,
        SRC,
        server="EX01",
        subject=f"CN={names[0]}",
        issuer=issuer,
        not_before=NOW - dt.timedelta(days=400),
        not_after=not_after,
        certificate_domains=names,
        services=frozenset({"SMTP", "IIS"}),
        status="Valid",
    )


GOOD_CERT = cert("AA" * 20, ("mail.fabrikam.com", "fabrikam.com"), not_after=NOW + dt.timedelta(days=300))
OLD_CERT = cert(
    "BB" * 20, ("mail.fabrikam.com",), not_after=NOW - dt.timedelta(days=10), issuer="CN=Old CA, O=Old"
)


def frontend(**kw: Any) -> ReceiveConnector:
    base = ReceiveConnector(
        "EX01\\Default Frontend EX01",
        "Default Frontend EX01",
        SRC,
        server="EX01",
        enabled=True,
        auth_mechanism=AuthMechanism.TLS | AuthMechanism.INTEGRATED | AuthMechanism.EXCHANGE_SERVER,
        permission_groups=PermissionGroups.ANONYMOUS_USERS | PermissionGroups.EXCHANGE_SERVERS,
        bindings=(Binding("0.0.0.0", 25, "0.0.0.0:25"),),
        remote_ip_ranges=(EVERYTHING,),
        require_tls=False,
        domain_secure_enabled=False,
        transport_role=TransportRole.FRONTEND,
        fqdn="mail.fabrikam.com",
        tls_certificate_name=None,
        tls_domain_capabilities=(),
        extended_protection_policy="None",
    )
    return replace(base, **kw)


def send(name: str, space: str, **kw: Any) -> SendConnector:
    address, _, cost = space.partition(";")
    kind, _, domain = address.partition(":")
    base = SendConnector(
        name,
        name,
        SRC,
        enabled=True,
        address_spaces=(AddressSpace(kind, domain, int(cost or 1), space),),
        dns_routing_enabled=True,
        smart_hosts=(),
        port=25,
        fqdn="mail.fabrikam.com",
        ignore_starttls=False,
        require_tls=False,
        tls_auth_level=None,
        tls_domain=None,
        tls_certificate_name=None,
        smart_host_auth_mechanism=SmartHostAuthMechanism.NONE,
        authentication_credential_set=False,
        domain_secure_enabled=False,
        cloud_services_mail_enabled=False,
        is_scoped_connector=False,
        source_transport_servers=("EX01", "EX02"),
    )
    return replace(base, **kw)


INTERNET = send("Internet", "SMTP:*;1")


def org(*, send_connectors: tuple[SendConnector, ...] = (INTERNET,), **kw: Any) -> Organization:
    defaults: dict[str, Any] = {
        "accepted_domains": (
            AcceptedDomain("fabrikam.com", "fabrikam.com", SRC, AcceptedDomainType.AUTHORITATIVE, True),
            AcceptedDomain(
                "lab.fabrikam.local", "lab.fabrikam.local", SRC, AcceptedDomainType.INTERNAL_RELAY
            ),
        ),
        "receive_connectors": (frontend(),),
        "certificates": (GOOD_CERT,),
    }
    defaults.update(kw)
    return Organization(send_connectors=send_connectors, sources=("test.xml",), **defaults)


OURS = posture("fabrikam.com", ("mail.fabrikam.com",))


def run(r: Rule, o: Organization, *postures: DomainPosture) -> Report:
    return evaluate(Context(o, NOW, {p.domain: p for p in postures}, offline=False), [r])


def ctx_of(o: Organization, *postures: DomainPosture) -> Context:
    return Context(o, NOW, {p.domain: p for p in postures}, offline=False)


def report_of(o: Organization, *postures: DomainPosture, tlsrpt_rua: str | None = None) -> Report:
    """Every rule over the postures: the findings the DNS writer reads."""
    return evaluate(Context(o, NOW, {p.domain: p for p in postures}, offline=False, tlsrpt_rua=tlsrpt_rua))


def hits(report: Report) -> list[tuple[str, str, Severity]]:
    return [(f.target.kind, f.target.identity, f.severity) for f in report.findings]


def skipped(report: Report) -> list[str]:
    assert not [s for s in report.skipped if "internal error" in s.reason], report.skipped
    return [s.target.identity if s.target else "" for s in report.skipped]


# --- simulated Exchange, for the commands the rules propose ---------------------------------------


def new_state(cmd: NewCommand) -> dict[str, Any]:
    state: dict[str, Any] = {
        "ignorestarttls": False,
        "requiretls": False,
        "tlsauthlevel": None,
        "tlsdomain": None,
        "domainsecureenabled": False,
        "dnsroutingenabled": True,
        "smarthosts": frozenset(),
        "smarthostauthmechanism": "none",
        "authenticationcredential": None,
        "cloudservicesmailenabled": False,
    }
    for name, value in cmd.parameters:
        if name.lower() in state:
            state[name.lower()] = norm(name, value)
    return state


def assert_valid(o: Organization, fixes: tuple[Fix, ...]) -> None:
    for cmd in fixes:
        if isinstance(cmd, NewCommand):
            assert validate(cmd.cmdlet, new_state(cmd)) == [], cmd.render()
            continue
        assert isinstance(cmd, SetCommand)
        pool: list[Any] = [*o.send_connectors, *o.receive_connectors]
        obj = next(x for x in pool if x.identity == cmd.identity)
        before = state_of(obj)
        after = apply(before, cmd)
        assert validate(cmd.cmdlet, after) == [], cmd.render()
        assert apply(after, cmd, rollback=True) == before


# --- registry -------------------------------------------------------------------------------------


def test_world_rules_are_declared_and_need_posture() -> None:
    from exconn.rules.base import all_rules

    mine = [r for r in all_rules() if r.id.startswith("EXC-W")]
    assert [r.id for r in mine] == [f"EXC-W{n:03d}" for n in range(1, 12)]
    assert all(r.needs_posture for r in mine)
    # Offline, none of them runs.
    report = evaluate(Context(org(), NOW, {}, offline=True))
    assert not any(rid.startswith("EXC-W") for rid in report.rules_run)


# --- EXC-W001 policy covers the MX hosts ----------------------------------------------------------


def test_w001_fires_when_an_mx_is_not_in_the_policy() -> None:
    p = posture(
        "fabrikam.com",
        ("mail.fabrikam.com", "mx2.fabrikam.com"),
        patterns=("mail.fabrikam.com", "old.fabrikam.com"),
    )
    report = run(world.policy_covers_mx, org(), p)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    message = report.findings[0].message
    assert "mx2.fabrikam.com" in message and "old.fabrikam.com" in message
    assert p.mta_sts.policy is not None
    testing = replace(p, mta_sts=replace(p.mta_sts, policy=replace(p.mta_sts.policy, mode="testing")))
    assert hits(run(world.policy_covers_mx, org(), testing)) == [("Domain", "fabrikam.com", Severity.MEDIUM)]


def test_w001_quiet_with_one_label_wildcard_and_cannot_judge_without_facts() -> None:
    covered = posture("fabrikam.com", ("mail.fabrikam.com", "mx2.fabrikam.com"), patterns=("*.fabrikam.com",))
    assert hits(run(world.policy_covers_mx, org(), covered)) == []
    # `*.` is one label: a.b.fabrikam.com is not covered.
    deep = posture("fabrikam.com", ("a.b.fabrikam.com",), patterns=("*.fabrikam.com",))
    assert len(run(world.policy_covers_mx, org(), deep).findings) == 1
    errored = posture("fabrikam.com", ("mail.fabrikam.com",), sts_status="error")
    assert skipped(run(world.policy_covers_mx, org(), errored)) == ["fabrikam.com"]
    assert skipped(run(world.policy_covers_mx, org())) == ["fabrikam.com"]  # not observed at all


# --- EXC-W002 receive connectors behind the MX ----------------------------------------------------


def test_w002_connector_without_tls_gets_tls_added() -> None:
    o = org(receive_connectors=(frontend(auth_mechanism=AuthMechanism.INTEGRATED),))
    p = posture("fabrikam.com", ("mail.fabrikam.com",), hosts=(host("mail.fabrikam.com", starttls=False),))
    report = run(world.mx_served_with_tls, o, p)
    assert hits(report) == [("ReceiveConnector", "EX01\\Default Frontend EX01", Severity.HIGH)]
    f = report.findings[0]
    assert "STARTTLS is never offered" in f.message and "STARTTLS not offered" in f.message
    assert f.fix[0].render() == (
        "Set-ReceiveConnector -Identity 'EX01\\Default Frontend EX01' -AuthMechanism @('Tls','Integrated')"
    )
    assert_valid(o, f.fix)


def test_w002_expired_certificate_is_replaced_by_a_current_one() -> None:
    old_name = CertificateName(
        f"<I>{OLD_CERT.issuer}<S>CN=mail.fabrikam.com",
        str(OLD_CERT.issuer),
        "CN=mail.fabrikam.com",
        "mail.fabrikam.com",
        CertificateNameStatus.OK,
    )
    o = org(receive_connectors=(frontend(tls_certificate_name=old_name),), certificates=(GOOD_CERT, OLD_CERT))
    report = run(world.mx_served_with_tls, o, posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing"))
    assert hits(report) == [("ReceiveConnector", "EX01\\Default Frontend EX01", Severity.MEDIUM)]
    assert "only expired certificates" in report.findings[0].message
    fix = report.findings[0].fix[0]
    assert isinstance(fix, SetCommand) and fix.changes[0].new == f"<I>{LE}<S>CN=mail.fabrikam.com"


def test_w002_exchange_online_mx_is_microsofts_and_checks_the_patterns() -> None:
    exo = "fabrikam-com.mail.protection.outlook.com"
    uncovered = posture("fabrikam.com", (exo,), patterns=("mail.fabrikam.com",), hosts=(host(exo),))
    report = run(world.mx_served_with_tls, org(receive_connectors=()), uncovered)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    assert "Microsoft's" in report.findings[0].message
    assert "mx: *.mail.protection.outlook.com" in report.findings[0].message
    covered = posture("fabrikam.com", (exo,), patterns=("*.mail.protection.outlook.com",))
    assert hits(run(world.mx_served_with_tls, org(receive_connectors=()), covered)) == []
    # W001 leaves the Exchange Online host to W002, so the problem is reported once.
    assert hits(run(world.policy_covers_mx, org(), uncovered)) == []


def test_w002_quiet_on_a_sound_mx_and_cannot_judge_an_unprobed_foreign_mx() -> None:
    assert hits(run(world.mx_served_with_tls, org(), OURS)) == []
    gateway = posture("fabrikam.com", ("gw.fabrikam.com",), hosts=(host("gw.fabrikam.com", probe="error"),))
    assert skipped(run(world.mx_served_with_tls, org(), gateway)) == ["fabrikam.com"]
    # The probe saw a failure that no connector explains: reported on the domain.
    failing = posture("fabrikam.com", ("gw.fabrikam.com",), hosts=(host("gw.fabrikam.com", expired=True),))
    report = run(world.mx_served_with_tls, org(), failing)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    assert "no exported receive connector explains it" in report.findings[0].message


# --- EXC-W003 / EXC-W004 mode --------------------------------------------------------------------


def test_w003_testing_with_every_mx_passing_proposes_enforce() -> None:
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing")
    report = run(world.testing_ready_for_enforce, org(), p)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.LOW)]
    proposed = world.proposed_policy(ctx_of(org(), p), p)
    assert proposed.mode == "enforce" and proposed.max_age == 604800


def test_w003_quiet_when_an_mx_fails_and_cannot_judge_unprobed() -> None:
    failing = posture(
        "fabrikam.com",
        ("mail.fabrikam.com",),
        mode="testing",
        hosts=(host("mail.fabrikam.com", trusted=False),),
    )
    assert hits(run(world.testing_ready_for_enforce, org(), failing)) == []
    assert world.proposed_policy(ctx_of(org(), failing), failing).mode == "testing"
    unprobed = posture(
        "fabrikam.com",
        ("mail.fabrikam.com",),
        mode="testing",
        hosts=(host("mail.fabrikam.com", probe="skipped"),),
    )
    assert skipped(run(world.testing_ready_for_enforce, org(), unprobed)) == ["fabrikam.com"]


def _two_frontends() -> Organization:
    """EX01 answers as mail.fabrikam.com with a current certificate, EX02 with an expired one: the
    probe reaches one of them."""
    old_name = CertificateName(
        f"<I>{OLD_CERT.issuer}<S>CN=mail.fabrikam.com",
        str(OLD_CERT.issuer),
        "CN=mail.fabrikam.com",
        "mail.fabrikam.com",
        CertificateNameStatus.OK,
    )
    ex02 = frontend(
        identity="EX02\\Default Frontend EX02",
        name="Default Frontend EX02",
        server="EX02",
        tls_certificate_name=old_name,
    )
    return org(
        receive_connectors=(frontend(), ex02), certificates=(GOOD_CERT, replace(OLD_CERT, server="EX02"))
    )


def test_w003_no_enforce_while_a_connector_behind_the_mx_fails() -> None:
    """The probe passed on one server, but EXC-W002 sees an expired certificate on another behind the
    same MX name: no enforce (rule, proposed policy and DNS file alike)."""
    o = _two_frontends()
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing")
    assert hits(run(world.mx_served_with_tls, o, p)) == [
        ("ReceiveConnector", "EX02\\Default Frontend EX02", Severity.MEDIUM)
    ]
    assert hits(run(world.testing_ready_for_enforce, o, p)) == []
    choice = world.mode_choice(ctx_of(o, p), p, tlsrpt_rua="mailto:tls@fabrikam.com")
    assert choice.mode == "testing" and "EX02\\Default Frontend EX02" in choice.why
    assert hits(run(world.policy_out_of_date, o, p)) == []  # the testing policy stays as it is
    # A connector that may answer for the MX but cannot be judged: not every MX is known to pass.
    unknown = org(receive_connectors=(frontend(), frontend(identity="EX03\\X", fqdn=UNKNOWN)))
    assert skipped(run(world.testing_ready_for_enforce, unknown, p)) == ["fabrikam.com"]
    assert world.proposed_mode(ctx_of(unknown, p), p) == "testing"


def test_w004_enforce_with_a_failing_connector_behind_a_passing_mx() -> None:
    o = _two_frontends()
    report = run(world.enforce_with_failing_mx, o, OURS)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]  # not critical: EX01 passes
    assert "EX02\\Default Frontend EX02" in report.findings[0].message
    assert world.proposed_mode(ctx_of(o, OURS), OURS) == "testing"


def test_w003_no_enforce_without_tlsrpt_unless_a_rua_is_given(tmp_path: Path) -> None:
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing", tlsrpt="absent")
    assert hits(run(world.testing_ready_for_enforce, org(), p)) == []
    ctx = ctx_of(org(), p)
    choice = world.mode_choice(ctx, p)
    assert choice.mode == "testing" and "TLS-RPT" in choice.why
    assert world.proposed_mode(ctx, p, tlsrpt_rua="mailto:tls@fabrikam.com") == "enforce"
    assert "stays in mode testing" in run(world.mta_sts_without_tlsrpt, org(), p).findings[0].message
    write_dns(report_of(org(), p), tmp_path / "a", generated_at=NOW)
    folder = tmp_path / "a" / "dns" / "fabrikam.com"
    assert b"mode: testing" in (folder / "mta-sts.txt").read_bytes()
    assert "no valid TLS-RPT record" in (folder / "README.txt").read_text()
    write_dns(report_of(org(), p, tlsrpt_rua="mailto:tls@fabrikam.com"), tmp_path / "b", generated_at=NOW)
    folder = tmp_path / "b" / "dns" / "fabrikam.com"
    assert b"mode: enforce" in (folder / "mta-sts.txt").read_bytes()
    readme = (folder / "README.txt").read_text()
    assert "publish _smtp._tls.fabrikam.com (step 4) first" in readme
    # An enforced policy is not downgraded for lack of TLS-RPT.
    enforced = posture("fabrikam.com", ("mail.fabrikam.com",), tlsrpt="absent")
    assert world.proposed_mode(ctx_of(org(), enforced), enforced) == "enforce"


def test_w004_enforce_with_a_failing_mx_proposes_testing() -> None:
    two = ("mail.fabrikam.com", "mx2.fabrikam.com")
    one_bad = posture("fabrikam.com", two, hosts=(host(two[0]), host(two[1], name_matches=False)))
    report = run(world.enforce_with_failing_mx, org(), one_bad)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    assert "does not name mx2.fabrikam.com" in report.findings[0].message
    assert world.proposed_policy(ctx_of(org(), one_bad), one_bad).mode == "testing"
    all_bad = posture("fabrikam.com", two, hosts=(host(two[0], starttls=False), host(two[1], expired=True)))
    assert hits(run(world.enforce_with_failing_mx, org(), all_bad)) == [
        ("Domain", "fabrikam.com", Severity.CRITICAL)
    ]


def test_w004_quiet_when_all_pass_and_cannot_judge_unprobed() -> None:
    assert hits(run(world.enforce_with_failing_mx, org(), OURS)) == []
    unprobed = posture("fabrikam.com", hosts=(host("mx.fabrikam.com", probe="error"),))
    assert skipped(run(world.enforce_with_failing_mx, org(), unprobed)) == ["fabrikam.com"]


# --- EXC-W005 TLS-RPT, EXC-W006 no MTA-STS, EXC-W007 id -------------------------------------------


def test_w005_tlsrpt() -> None:
    absent = posture("fabrikam.com", tlsrpt="absent")
    assert hits(run(world.mta_sts_without_tlsrpt, org(), absent)) == [
        ("Domain", "fabrikam.com", Severity.LOW)
    ]
    assert hits(run(world.mta_sts_without_tlsrpt, org(), OURS)) == []
    assert skipped(run(world.mta_sts_without_tlsrpt, org(), posture("fabrikam.com", tlsrpt="error"))) == [
        "fabrikam.com"
    ]


def test_w006_no_policy() -> None:
    none = posture("fabrikam.com", mode=None)
    assert hits(run(world.no_mta_sts, org(), none)) == [("Domain", "fabrikam.com", Severity.MEDIUM)]
    assert hits(run(world.no_mta_sts, org(), OURS)) == []
    assert hits(run(world.no_mta_sts, org(), replace(none, dane=DaneFacts("valid")))) == []
    assert skipped(run(world.no_mta_sts, org(), posture("fabrikam.com", sts_status="error"))) == [
        "fabrikam.com"
    ]


def test_w007_policy_that_must_change_needs_a_new_id() -> None:
    stale = posture(
        "fabrikam.com", ("mail.fabrikam.com",), patterns=("mail.fabrikam.com", "old.fabrikam.com")
    )
    report = run(world.policy_out_of_date, org(), stale)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.LOW)]
    assert "20240101000000" in report.findings[0].message and "old.fabrikam.com" in report.findings[0].message
    assert hits(run(world.policy_out_of_date, org(), OURS)) == []
    short = posture("fabrikam.com", ("mail.fabrikam.com",), max_age=300)
    assert "max_age 300 -> 604800" in run(world.policy_out_of_date, org(), short).findings[0].message


# --- EXC-W008 partner enforces, our route is opportunistic ----------------------------------------


def test_w008_proposes_an_exact_scoped_connector() -> None:
    partner = posture("tailspintoys.com", ("mx.tailspintoys.com",))
    report = run(world.partner_route_opportunistic, org(), partner)
    assert hits(report) == [("Domain", "tailspintoys.com", Severity.HIGH)]
    f = report.findings[0]
    assert "most specific address space first" in f.message and f.message.rstrip().endswith(
        "TlsDomain mx.tailspintoys.com requires exactly the host the policy allows."
    )
    (cmd,) = f.fix
    assert isinstance(cmd, NewCommand)
    assert cmd.render() == (
        "New-SendConnector -Name 'TLS to tailspintoys.com' -AddressSpaces @('SMTP:tailspintoys.com;1') "
        "-Usage 'Internet' -DNSRoutingEnabled:$true -SourceTransportServers @('EX01','EX02') "
        "-Fqdn 'mail.fabrikam.com' -RequireTLS:$true -TlsAuthLevel 'DomainValidation' "
        "-TlsDomain 'mx.tailspintoys.com' -Comment 'exconn: emulates the MTA-STS enforce policy of tailspintoys.com'"
    )
    assert cmd.render_rollback() == "Remove-SendConnector -Identity 'TLS to tailspintoys.com' -Confirm:$false"
    assert_valid(org(), f.fix)


def test_w008_says_when_the_emulation_is_looser_or_has_no_name_check() -> None:
    looser = posture("northwind.com", ("a.mail.northwind.com",), patterns=("*.mail.northwind.com",))
    f = run(world.partner_route_opportunistic, org(), looser).findings[0]
    assert "Looser than the policy" in f.message
    assert ("TlsDomain", "*.mail.northwind.com") in f.fix[0].parameters  # type: ignore[union-attr]
    spread = posture(
        "wingtiptoys.com",
        ("mx.wingtiptoys.com",),
        patterns=("mx.wingtiptoys.com", "*.mail.protection.outlook.com"),
    )
    f = run(world.partner_route_opportunistic, org(), spread).findings[0]
    assert "No name check possible" in f.message
    params = dict(f.fix[0].parameters)  # type: ignore[union-attr]
    assert params["TlsAuthLevel"] is TlsAuthLevel.CERTIFICATE_VALIDATION and "TlsDomain" not in params
    assert_valid(org(), f.fix)


def test_w008_ignore_starttls_on_a_scoped_connector_is_critical_and_fixed_in_place() -> None:
    scoped = send("To Tailspin", "smtp:tailspintoys.com;10", ignore_starttls=True)
    o = org(send_connectors=(INTERNET, scoped))
    report = run(world.partner_route_opportunistic, o, posture("tailspintoys.com"))
    assert hits(report) == [("SendConnector", "To Tailspin", Severity.CRITICAL)]
    fix = report.findings[0].fix[0]
    assert fix.render() == (
        "Set-SendConnector -Identity 'To Tailspin' -IgnoreSTARTTLS:$false -RequireTLS:$true "
        "-TlsAuthLevel 'DomainValidation' -TlsDomain 'mx.tailspintoys.com'"
    )
    assert_valid(o, (fix,))


def test_w008_dane_partner_with_untrusted_certificates_gets_no_connector() -> None:
    dane = posture("adatum.com", mode=None, dane="valid", hosts=(host("mx.adatum.com", trusted=False),))
    report = run(world.partner_route_opportunistic, org(), dane)
    assert hits(report) == [("Domain", "adatum.com", Severity.HIGH)]
    assert report.findings[0].fix == () and "cannot do DANE" in report.findings[0].message
    trusted = posture("adatum.com", mode=None, dane="valid")
    assert isinstance(run(world.partner_route_opportunistic, org(), trusted).findings[0].fix[0], NewCommand)


def test_w008_quiet_and_cannot_judge() -> None:
    assert hits(run(world.partner_route_opportunistic, org(), posture("testing.com", mode="testing"))) == []
    validated = send(
        "To Tailspin",
        "smtp:tailspintoys.com;1",
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="mx.tailspintoys.com",
    )
    assert (
        hits(
            run(
                world.partner_route_opportunistic,
                org(send_connectors=(INTERNET, validated)),
                posture("tailspintoys.com"),
            )
        )
        == []
    )
    assert skipped(run(world.partner_route_opportunistic, org(), posture("x.com", sts_status="error"))) == [
        "x.com"
    ]
    unknown = replace(INTERNET, source_transport_servers=UNKNOWN)
    f = run(
        world.partner_route_opportunistic, org(send_connectors=(unknown,)), posture("tailspintoys.com")
    ).findings[0]
    assert f.fix == () and "SourceTransportServers" in f.message


def test_w008_more_specific_space_wins_over_lower_cost() -> None:
    cheap_star = send("Cheap", "SMTP:*;1")
    specific = send(
        "To Tailspin",
        "smtp:tailspintoys.com;50",
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="mx.tailspintoys.com",
    )
    route = world.route_to(org(send_connectors=(cheap_star, specific)), "tailspintoys.com")
    assert isinstance(route, world.Route) and route.connector.identity == "To Tailspin"
    two_stars = org(send_connectors=(send("B", "SMTP:*;5"), send("A", "SMTP:*;2")))
    route = world.route_to(two_stars, "tailspintoys.com")
    assert isinstance(route, world.Route) and route.connector.identity == "A"


# --- EXC-W009 / EXC-W010 existing scoped connectors -----------------------------------------------


def test_w009_encryption_only_gets_domain_validation() -> None:
    to_contoso = send(
        "To Contoso", "smtp:contoso.com;10", require_tls=True, tls_auth_level=TlsAuthLevel.ENCRYPTION_ONLY
    )
    o = org(send_connectors=(INTERNET, to_contoso))
    report = run(world.scoped_connector_mismatch, o, posture("contoso.com", ("mail.contoso.com",)))
    assert hits(report) == [("SendConnector", "To Contoso", Severity.MEDIUM)]
    fix = report.findings[0].fix[0]
    assert fix.render() == (
        "Set-SendConnector -Identity 'To Contoso' -TlsAuthLevel 'DomainValidation' -TlsDomain 'mail.contoso.com'"
    )
    assert_valid(o, (fix,))


def test_w009_tls_domain_that_no_longer_covers_the_policy() -> None:
    old = send(
        "To Contoso",
        "smtp:contoso.com;10",
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="mail.contoso.com",
    )
    o = org(send_connectors=(INTERNET, old))
    moved = posture(
        "contoso.com",
        ("contoso-com.mail.protection.outlook.com",),
        patterns=("*.mail.protection.outlook.com",),
        hosts=(host("contoso-com.mail.protection.outlook.com", sans=("*.mail.protection.outlook.com",)),),
    )
    report = run(world.scoped_connector_mismatch, o, moved)
    assert hits(report) == [("SendConnector", "To Contoso", Severity.HIGH)]
    assert "mail is queuing now" in report.findings[0].message
    assert "TlsDomain '*.mail.protection.outlook.com'" in report.findings[0].fix[0].render()
    assert_valid(o, report.findings[0].fix)
    # Still covered: quiet.
    assert hits(run(world.scoped_connector_mismatch, o, posture("contoso.com", ("mail.contoso.com",)))) == []
    unknown = replace(old, tls_domain=UNKNOWN)
    assert skipped(
        run(world.scoped_connector_mismatch, org(send_connectors=(INTERNET, unknown)), posture("contoso.com"))
    ) == ["To Contoso"]


def _secure_list(*domains: str) -> tuple[TransportConfig, ...]:
    return (TransportConfig("Transport Settings", SRC, domains, ()),)


def test_w008_w009_leave_domain_secured_connectors_without_a_tls_auth_level_fix() -> None:
    """Exchange refuses TlsAuthLevel with DomainSecureEnabled $true: never propose it there."""
    opportunistic = send("To Tailspin", "smtp:tailspintoys.com;10", domain_secure_enabled=True)
    partner = posture("tailspintoys.com")
    o = org(send_connectors=(INTERNET, opportunistic), transport_configs=_secure_list("contoso.com"))
    report = run(world.partner_route_opportunistic, o, partner)
    assert hits(report) == [("SendConnector", "To Tailspin", Severity.HIGH)]
    f = report.findings[0]
    assert f.fix == () and "DomainSecureEnabled" in f.message and "TLSSendDomainSecureList" in f.message
    # Listed: domain security (mutual TLS) already authenticates the partner.
    listed = replace(o, transport_configs=_secure_list("tailspintoys.com"))
    assert hits(run(world.partner_route_opportunistic, listed, partner)) == []
    assert skipped(run(world.partner_route_opportunistic, replace(o, transport_configs=()), partner)) == [
        "To Tailspin"
    ]
    # The internet connector itself domain-secured for the partner: no new connector dropping it.
    secure_internet = replace(INTERNET, domain_secure_enabled=True)
    assert (
        hits(
            run(
                world.partner_route_opportunistic,
                org(send_connectors=(secure_internet,), transport_configs=_secure_list("tailspintoys.com")),
                partner,
            )
        )
        == []
    )
    required = replace(opportunistic, require_tls=True)
    o = org(send_connectors=(INTERNET, required), transport_configs=_secure_list("contoso.com"))
    report = run(world.scoped_connector_mismatch, o, partner)
    assert hits(report) == [("SendConnector", "To Tailspin", Severity.MEDIUM)]
    assert report.findings[0].fix == () and "refuses TlsAuthLevel" in report.findings[0].message
    listed = replace(o, transport_configs=_secure_list("tailspintoys.com"))
    assert hits(run(world.scoped_connector_mismatch, listed, partner)) == []


def test_w009_validating_connector_to_a_dane_partner_without_a_public_certificate() -> None:
    """DANE-EE pins the key; a validating connector queues the mail (454 4.7.5): relax to EncryptionOnly."""
    dane = posture("litware.com", mode=None, dane="valid", hosts=(host("mx.litware.com", trusted=False),))
    for level, domain in (
        (TlsAuthLevel.DOMAIN_VALIDATION, "mx.litware.com"),
        (TlsAuthLevel.CERTIFICATE_VALIDATION, None),
    ):
        to_litware = send(
            "To Litware", "smtp:litware.com;10", require_tls=True, tls_auth_level=level, tls_domain=domain
        )
        o = org(send_connectors=(INTERNET, to_litware))
        report = run(world.scoped_connector_mismatch, o, dane)
        assert hits(report) == [("SendConnector", "To Litware", Severity.HIGH)]
        f = report.findings[0]
        assert "not publicly trusted" in f.message and "454 4.7.5" in f.message
        assert "best Exchange Server can do" in f.message
        expected = "Set-SendConnector -Identity 'To Litware' -TlsAuthLevel 'EncryptionOnly'"
        assert f.fix[0].render() == expected + (" -TlsDomain $null" if domain else "")
        assert_valid(o, f.fix)
        # W010 does not claim the partner dropped its policy.
        assert hits(run(world.partner_dropped_policy, o, dane)) == []
    encryption_only = send(
        "To Litware", "smtp:litware.com;10", require_tls=True, tls_auth_level=TlsAuthLevel.ENCRYPTION_ONLY
    )
    assert (
        hits(run(world.scoped_connector_mismatch, org(send_connectors=(INTERNET, encryption_only)), dane))
        == []
    )
    validating = send(
        "To Litware",
        "smtp:litware.com;10",
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="mx.litware.com",
    )
    o = org(send_connectors=(INTERNET, validating))
    trusted = posture("litware.com", mode=None, dane="valid", hosts=(host("mx.litware.com"),))
    assert hits(run(world.scoped_connector_mismatch, o, trusted)) == []
    unprobed = posture("litware.com", mode=None, dane="valid", hosts=(host("mx.litware.com", probe="error"),))
    assert skipped(run(world.scoped_connector_mismatch, o, unprobed)) == ["To Litware"]


def test_w010_partner_dropped_its_policy() -> None:
    kept = send(
        "To Contoso",
        "smtp:contoso.com;10",
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="mail.contoso.com",
    )
    o = org(send_connectors=(INTERNET, kept))
    dropped = posture("contoso.com", ("mail.contoso.com",), mode=None)
    assert hits(run(world.partner_dropped_policy, o, dropped)) == [
        ("SendConnector", "To Contoso", Severity.LOW)
    ]
    moved = posture("contoso.com", ("mx.elsewhere.net",), mode=None, hosts=(host("mx.elsewhere.net"),))
    report = run(world.partner_dropped_policy, o, moved)
    assert hits(report) == [("SendConnector", "To Contoso", Severity.HIGH)]
    assert "mx.elsewhere.net" in report.findings[0].message
    assert hits(run(world.partner_dropped_policy, o, posture("contoso.com", ("mail.contoso.com",)))) == []
    assert skipped(run(world.partner_dropped_policy, o)) == ["To Contoso"]
    assert skipped(run(world.partner_dropped_policy, o, posture("contoso.com", sts_status="error"))) == [
        "To Contoso"
    ]


# --- EXC-W011 Exchange Online outbound connectors -------------------------------------------------


def exo_out(**kw: Any) -> OutboundConnector:
    base = OutboundConnector(
        "To Contoso",
        "To Contoso",
        SRC,
        enabled=True,
        connector_type="Partner",
        use_mx_record=True,
        smart_hosts=(),
        recipient_domains=("contoso.com",),
        tls_settings=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="mail.contoso.com",
        mta_sts_mode="Opportunistic",
        smtp_dane_mode="Opportunistic",
        cloud_services_mail_enabled=False,
    )
    return replace(base, **kw)


def test_w011_exchange_online_connector() -> None:
    partner = posture("contoso.com", ("mail.contoso.com",), dane="valid")
    off = exo_out(mta_sts_mode="None", smtp_dane_mode="None")
    report = run(world.exo_outbound_vs_partner, org(outbound_connectors=(off,)), partner)
    assert [f.property for f in report.findings] == ["MtaStsMode", "SmtpDaneMode"]
    assert (
        report.findings[0].fix[0].render()
        == "Set-OutboundConnector -Identity 'To Contoso' -MtaStsMode 'Opportunistic'"
    )
    moved = posture(
        "contoso.com", ("x.mail.protection.outlook.com",), patterns=("*.mail.protection.outlook.com",)
    )
    report = run(world.exo_outbound_vs_partner, org(outbound_connectors=(exo_out(),)), moved)
    assert [f.property for f in report.findings] == ["TlsDomain"]
    assert "-TlsDomain '*.mail.protection.outlook.com'" in report.findings[0].fix[0].render()


def test_w011_quiet_and_cannot_judge() -> None:
    partner = posture("contoso.com", ("mail.contoso.com",))
    assert hits(run(world.exo_outbound_vs_partner, org(outbound_connectors=(exo_out(),)), partner)) == []
    smart = exo_out(use_mx_record=False, mta_sts_mode="None")
    assert hits(run(world.exo_outbound_vs_partner, org(outbound_connectors=(smart,)), partner)) == []
    unknown = exo_out(mta_sts_mode=UNKNOWN)
    assert skipped(run(world.exo_outbound_vs_partner, org(outbound_connectors=(unknown,)), partner)) == [
        "To Contoso"
    ]


# --- the DNS writer -------------------------------------------------------------------------------


def test_dns_files_for_our_domain(tmp_path: Path) -> None:
    p = posture(
        "fabrikam.com",
        ("mail.fabrikam.com", "fabrikam-com.mail.protection.outlook.com"),
        mode="testing",
        patterns=("mail.fabrikam.com",),
    )
    partner = posture("contoso.com")
    fix = write_dns(
        report_of(org(), p, partner, tlsrpt_rua="mailto:tls@fabrikam.com"), tmp_path, generated_at=NOW
    )
    folder = tmp_path / "dns" / "fabrikam.com"
    assert sorted(x.name for x in fix.written) == ["README.txt", "mta-sts.txt", "records.txt"]
    assert not (tmp_path / "dns" / "contoso.com").exists()  # partners get no DNS files
    assert (folder / "mta-sts.txt").read_bytes() == (
        b"version: STSv1\r\nmode: enforce\r\nmx: *.mail.protection.outlook.com\r\nmx: mail.fabrikam.com\r\n"
        b"max_age: 604800\r\n"
    )
    records = (folder / "records.txt").read_text()
    assert '_mta-sts.fabrikam.com. 3600 IN TXT "v=STSv1; id=20250602120000"' in records.splitlines()
    assert (
        '_smtp._tls.fabrikam.com. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tls@fabrikam.com"'
        in records.splitlines()
    )
    readme = (folder / "README.txt").read_text()
    assert readme.index("1. Serve mta-sts.txt") < readme.index("3. Then replace the _mta-sts")


def test_dns_keeps_existing_rua_testing_mode_and_refuses_hostile_names(tmp_path: Path) -> None:
    failing = posture(
        "fabrikam.com", ("mail.fabrikam.com",), hosts=(host("mail.fabrikam.com", expired=True),)
    )
    # No MTA-STS published (EXC-W006): a finding asks for a policy, and the writer must refuse the names.
    hostile = posture("../../etc", ("mail.evil.com",), mode=None)
    newline = posture("fabrikam.com", ("mail.fabrikam.com\nmode: none",), mode=None)
    o = org(
        accepted_domains=(
            AcceptedDomain("fabrikam.com", "fabrikam.com", SRC, AcceptedDomainType.AUTHORITATIVE, True),
            AcceptedDomain("../../etc", "../../etc", SRC, AcceptedDomainType.AUTHORITATIVE, False),
        )
    )
    fix = write_dns(report_of(o, failing, hostile), tmp_path, generated_at=NOW)
    assert (
        (tmp_path / "dns" / "fabrikam.com" / "mta-sts.txt")
        .read_bytes()
        .startswith(b"version: STSv1\r\nmode: testing\r\n")
    )
    assert b"max_age: 86400" in (tmp_path / "dns" / "fabrikam.com" / "mta-sts.txt").read_bytes()
    assert "rua=mailto:tlsrpt@fabrikam.com" in (tmp_path / "dns" / "fabrikam.com" / "records.txt").read_text()
    assert fix.notes == ("'../../etc': not a plain domain name, no DNS files written",)
    assert not any("etc" in str(x.relative_to(tmp_path)) for x in tmp_path.rglob("*"))
    fix = write_dns(report_of(o, newline), tmp_path / "b", generated_at=NOW)
    assert fix.written == () and "not a plain host name" in fix.notes[0]
    with pytest.raises(DnsFixError):
        write_dns(report_of(o, failing, tlsrpt_rua='mailto:a@b.com"; evil'), tmp_path, generated_at=NOW)


def test_dns_says_create_when_no_mta_sts_record_exists(tmp_path: Path) -> None:
    none = posture("fabrikam.com", ("mail.fabrikam.com",), mode=None)
    write_dns(report_of(org(), none), tmp_path / "a", generated_at=NOW)
    folder = tmp_path / "a" / "dns" / "fabrikam.com"
    assert "3. Then create the _mta-sts.fabrikam.com TXT record" in (folder / "README.txt").read_text()
    records = (folder / "records.txt").read_text()
    assert "CREATE the _mta-sts TXT record" in records and "REPLACE" not in records
    # A record is published; no TLS-RPT (EXC-W005) is what asks for the DNS side here.
    no_rpt = posture("fabrikam.com", ("mail.fabrikam.com",), tlsrpt="absent")
    write_dns(report_of(org(), no_rpt), tmp_path / "b", generated_at=NOW)
    folder = tmp_path / "b" / "dns" / "fabrikam.com"
    assert "3. Then replace the _mta-sts.fabrikam.com TXT record" in (folder / "README.txt").read_text()
    assert "REPLACE any existing _mta-sts TXT record" in (folder / "records.txt").read_text()


def _publish(domain: str = "fabrikam.com", **kw: Any) -> PublishMtaSts:
    values: dict[str, Any] = {
        "domain": domain,
        "mode": "testing",
        "mx": ("mail.fabrikam.com",),
        "max_age": 86400,
        "why": "A new policy starts in mode testing.",
        "tlsrpt_rua": None,
        "published_rua": None,
        "sts_status": "absent",
        "record_exists": False,
    }
    values.update(kw)
    return PublishMtaSts(**values)


def _finding(r: Rule, target: Target, *fix: Fix, severity: Severity | None = None) -> Finding:
    return Finding(r, severity or r.severity, target, None, None, f"{r.id} on {target.identity}", fix)


def _report(*findings: Finding) -> Report:
    ordered = sorted(findings, key=lambda f: (-f.severity, f.rule.id))
    return Report(tuple(ordered), (), tuple(f.rule.id for f in ordered))


def test_dns_writer_reads_only_the_findings(tmp_path: Path) -> None:
    """No organisation, no posture, no rules run: the findings carry everything the DNS files need."""
    com = _publish(
        mode="enforce",
        mx=("*.mail.protection.outlook.com", "mail.fabrikam.com"),
        max_age=604800,
        why="Mode enforce: every MX and every receive connector behind it passes.",
        published_rua=("mailto:tlsrpt@fabrikam.com", 'mailto:bad"@x.com'),
        sts_status="valid",
        record_exists=True,
        current_mode="testing",
        current_max_age=86400,
        current_id="20240101000000",
    )
    uk = _publish("fabrikam.co.uk", tlsrpt_rua="mailto:tls@fabrikam.com")
    # Two findings want fabrikam.com's policy: one folder. A third disagrees: the most severe wins.
    odd = replace(com, mode="testing", max_age=86400)
    report = _report(
        _finding(world.policy_out_of_date, world.domain_target("fabrikam.com"), com),
        _finding(world.testing_ready_for_enforce, world.domain_target("fabrikam.com"), com),
        _finding(
            world.mta_sts_without_tlsrpt, world.domain_target("fabrikam.com"), odd, severity=Severity.INFO
        ),
        _finding(world.no_mta_sts, world.domain_target("fabrikam.co.uk"), uk),
    )
    fix = write_dns(report, tmp_path, generated_at=NOW)
    assert sorted(str(x.relative_to(tmp_path)) for x in fix.written) == [
        f"dns/{d}/{n}"
        for d in ("fabrikam.co.uk", "fabrikam.com")
        for n in ("README.txt", "mta-sts.txt", "records.txt")
    ]
    assert fix.notes == (
        "fabrikam.com: EXC-W005 asks for another policy than EXC-W003; kept the one of EXC-W003 (most severe)",
    )
    folder = tmp_path / "dns" / "fabrikam.com"
    assert (folder / "mta-sts.txt").read_bytes() == (
        b"version: STSv1\r\nmode: enforce\r\nmx: *.mail.protection.outlook.com\r\nmx: mail.fabrikam.com\r\n"
        b"max_age: 604800\r\n"
    )
    records = (folder / "records.txt").read_text().splitlines()
    assert '_mta-sts.fabrikam.com. 3600 IN TXT "v=STSv1; id=20250602120000"' in records
    # The published rua is kept, less what cannot be written into a record.
    assert '_smtp._tls.fabrikam.com. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@fabrikam.com"' in records
    assert any("REPLACE any existing _mta-sts TXT record" in r for r in records)
    readme = (folder / "README.txt").read_text()
    assert "Now published: mode testing, id 20240101000000, max_age 86400." in readme
    assert "Mode enforce: every MX" in readme and "No valid TLS-RPT" not in readme
    uk_folder = tmp_path / "dns" / "fabrikam.co.uk"
    assert "CREATE the _mta-sts TXT record" in (uk_folder / "records.txt").read_text()
    assert "rua=mailto:tls@fabrikam.com" in (uk_folder / "records.txt").read_text()
    assert "3. Then create the _mta-sts.fabrikam.co.uk TXT record" in (uk_folder / "README.txt").read_text()
    # Hand-made findings are checked like the rules' own: names, mode, max_age, the given rua.
    hostile = _report(
        _finding(world.no_mta_sts, world.domain_target("../../x"), _publish("../../x")),
        _finding(
            world.no_mta_sts, world.domain_target("a.com"), _publish("a.com", mx=("m.a.com\nmode: none",))
        ),
        _finding(world.no_mta_sts, world.domain_target("b.com"), _publish("b.com", mode="enforce\nmx: *")),
    )
    fix = write_dns(hostile, tmp_path / "h", generated_at=NOW)
    assert fix.written == () and len(fix.notes) == 3 and not (tmp_path / "h").exists()
    with pytest.raises(DnsFixError):
        bad_rua = _publish(tlsrpt_rua='mailto:a@b.com"; evil')
        write_dns(
            _report(_finding(world.no_mta_sts, world.domain_target("fabrikam.com"), bad_rua)),
            tmp_path,
            generated_at=NOW,
        )
    assert write_dns(_report(), tmp_path / "none", generated_at=NOW).written == ()


def test_ps1_writer_and_renderers_keep_the_dns_side_apart() -> None:
    """remediation.ps1 has no PowerShell for DNS; JSON keeps `fix` PowerShell-only and lists `dns` apart."""
    pub = _publish(tlsrpt_rua="mailto:tls@fabrikam.com")
    cmd = SetCommand("Set-ReceiveConnector", "EX02\\Frontend", (ParamChange("AuthMechanism", "Tls", "None"),))
    both = _finding(world.mx_served_with_tls, world.domain_target("fabrikam.com"), cmd, pub)
    dns_only = _finding(world.no_mta_sts, world.domain_target("fabrikam.co.uk"), _publish("fabrikam.co.uk"))
    report = _report(both, dns_only)
    assert both.commands == (cmd,) and both.dns == (pub,)
    fix_text, undo_text = render_scripts(report, ["test.xml"], generated_at=NOW)
    assert "1 change(s) for 2 finding(s)" in fix_text
    assert "Set-ReceiveConnector -Identity 'EX02\\Frontend' -AuthMechanism 'Tls'" in fix_text
    code = [x for x in (fix_text + undo_text).splitlines() if not x.lstrip().startswith("#")]
    assert not [x for x in code if "mta-sts" in x.lower() or "fabrikam.co.uk" in x]
    # The DNS-only finding is listed as one without a PowerShell fix, with the rule's remediation.
    unfixed = fix_text.split("Findings without an automatic fix", 1)[1]
    assert "EXC-W006" in unfixed and "EXC-W002" not in unfixed
    info = RunInfo(generated_at=NOW, sources=("test.xml",), fail_on=Severity.HIGH, offline=False)
    doc = json.loads(render(report, org(), info, Format.JSON))
    by_rule = {f["rule"]: f for f in doc["findings"]}
    assert by_rule["EXC-W002"]["fix"] == [cmd.render()]
    assert by_rule["EXC-W002"]["dns"] == [
        "publish MTA-STS policy for fabrikam.com: mode testing, mx mail.fabrikam.com, max_age 86400; then "
        "create the _mta-sts TXT record with a new id; _smtp._tls rua mailto:tls@fabrikam.com"
    ]
    assert by_rule["EXC-W006"]["fix"] == [] and len(by_rule["EXC-W006"]["dns"]) == 1
    markdown = render(report, org(), info, Format.MARKDOWN)
    assert "- DNS: publish MTA-STS policy for fabrikam.co.uk" in markdown
    assert markdown.count("```powershell") == 1
    table = render(report, org(), info, Format.TABLE)
    assert "1 change(s) in remediation.ps1" in table and "to publish for 2 domain(s)" in table


def test_dns_side_follows_tlsrpt_rua_in_every_rule() -> None:
    """--tlsrpt-rua reaches the rules: EXC-W003 and EXC-W007 propose enforce with it, and every finding
    that asks for the domain's policy asks for the same one."""
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing", tlsrpt="absent")
    without = report_of(org(), p)
    assert {f.rule.id for f in without.findings if f.dns} == {"EXC-W005"}
    assert {d.mode for f in without.findings for d in f.dns} == {"testing"}
    given = report_of(org(), p, tlsrpt_rua="mailto:tls@fabrikam.com")
    asking = {f.rule.id: f.dns for f in given.findings if f.dns}
    assert set(asking) == {"EXC-W003", "EXC-W005", "EXC-W007"}
    assert (
        "Publish _smtp._tls.fabrikam.com"
        in next(f for f in given.findings if f.rule.id == "EXC-W003").message
    )
    (pub,) = {d for ds in asking.values() for d in ds}
    assert (pub.mode, pub.max_age, pub.tlsrpt_rua) == ("enforce", 604800, "mailto:tls@fabrikam.com")
    # A perfect domain asks for nothing: no folder for it.
    assert not any(f.dns for f in report_of(org(), OURS).findings)


# --- targets --------------------------------------------------------------------------------------


def test_targets_ours_and_partners(tmp_path: Path) -> None:
    scoped = (
        INTERNET,
        send("To Contoso", "smtp:contoso.com;10"),
        send("Lab", "smtp:lab.fabrikam.local;1"),
        send("Hybrid", "smtp:fabrikam.mail.onmicrosoft.com;1", cloud_services_mail_enabled=True),
        send("Wild", "smtp:*.northwind.com;1"),
    )
    o = org(send_connectors=scoped)
    assert our_domains(o, None) == ["fabrikam.com"]  # lab.fabrikam.local: InternalRelay, not public
    listed = tmp_path / "partners.txt"
    listed.write_text("# top recipients\nTailspinToys.com.\n\ncontoso.com  # again\nfabrikam.com\n")
    assert partner_domains(o, str(listed), ours=["fabrikam.com"]) == [
        "contoso.com",
        "northwind.com",
        "tailspintoys.com",
    ]


def test_target_files_name_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "partners.txt"
    bad.write_text("contoso.com\nnot a domain\n")
    with pytest.raises(InputError, match=r"partners\.txt: line 2: not a domain name: not a domain"):
        read_domain_file(str(bad))
    ours = tmp_path / "ours.txt"
    ours.write_text("contoso.com\n")
    with pytest.raises(InputError, match="not an accepted domain"):
        our_domains(org(), str(ours))


# --- the CLI without the network ------------------------------------------------------------------


def test_cli_refuses_network_options_with_offline_or_posture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--offline", "samples/fabrikam", "--resolver", "127.0.0.1"]) == 2
    assert "--offline promises no network use" in capsys.readouterr().err
    saved = tmp_path / "p.json"
    saved.write_text(json.dumps(PostureReport("2025-06-02T12:00:00Z", (OURS,)).to_json()))
    assert main(["audit", "samples/fabrikam", "--posture", str(saved), "--timeout", "3"]) == 2
    assert "--posture replays" in capsys.readouterr().err
    assert main(["audit", "samples/fabrikam", "--offline", "--tlsrpt-rua", "ftp://x"]) == 2
    saved.write_text('{"format": "something else"}')
    assert main(["audit", "samples/fabrikam", "--posture", str(saved)]) == 2
    assert "not an exconn-posture file" in capsys.readouterr().err


def test_documented_replay_of_the_sample_posture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/cross-check.md's worked example: samples/fabrikam + samples/posture/fabrikam.json, no network."""
    fix = tmp_path / "fix"
    code = main(
        ["audit", "samples/fabrikam", "--posture", "samples/posture/fabrikam.json", "--format", "json"]
        + ["--fix-out", str(fix)]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    found = {
        (f["rule"], f["target"]["identity"]) for f in report["findings"] if f["rule"].startswith("EXC-W")
    }
    assert found == {
        ("EXC-W002", "EX02\\Default Frontend EX02"),
        ("EXC-W005", "fabrikam.com"),
        ("EXC-W006", "fabrikam.co.uk"),
        ("EXC-W007", "fabrikam.com"),
        ("EXC-W008", "adatum.com"),
        ("EXC-W008", "litware.com"),
        ("EXC-W008", "tailspintoys.com"),
        ("EXC-W008", "wingtiptoys.com"),
        ("EXC-W009", "To Contoso"),
    }
    # The probe passed on one server; EX02 behind the same MX has an expired certificate (EXC-W002),
    # and there is no TLS-RPT (EXC-W005): no enforce.
    assert (fix / "dns" / "fabrikam.com" / "mta-sts.txt").read_bytes() == (
        b"version: STSv1\r\nmode: testing\r\nmx: mail.fabrikam.com\r\nmax_age: 86400\r\n"
    )
    assert "EX02\\Default Frontend EX02" in (fix / "dns" / "fabrikam.com" / "README.txt").read_text()
    assert (
        "3. Then create the _mta-sts.fabrikam.co.uk"
        in (fix / "dns" / "fabrikam.co.uk" / "README.txt").read_text()
    )
