"""Receive connector rules: each fires, stays quiet, and says when it cannot judge."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import replace
from typing import Any

from exconn.fix import SetCommand, requirements
from exconn.model import (
    UNKNOWN,
    AddressSpace,
    AuthMechanism,
    Binding,
    CertificateName,
    CertificateNameStatus,
    ExchangeCertificate,
    ExchangeServer,
    IPRange,
    Organization,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    Source,
    TransportConfig,
    TransportRole,
)
from exconn.rules import certs as certs_model
from exconn.rules import receive
from exconn.rules.base import Context, Report, Rule, Severity, evaluate
from tests.rule_helpers import cannot, fired
from tests.test_remediation import assert_report_fixes_valid

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
SRC = Source("test.xml")
EVERYTHING = IPRange(
    "0.0.0.0-255.255.255.255", ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("255.255.255.255")
)
PRINTERS = IPRange("10.0.5.0/24", ipaddress.ip_address("10.0.5.0"), ipaddress.ip_address("10.0.5.255"))
A = AuthMechanism
P = PermissionGroups
DEFAULT_AUTH = A.TLS | A.INTEGRATED | A.BASIC_AUTH | A.BASIC_AUTH_REQUIRE_TLS | A.EXCHANGE_SERVER
FRONTEND_ID = "EX01\\Default Frontend EX01"


def frontend(**kw: Any) -> ReceiveConnector:
    """Exchange 2019's Default Frontend connector, as installed."""
    base = ReceiveConnector(
        FRONTEND_ID,
        "Default Frontend EX01",
        SRC,
        server="EX01",
        enabled=True,
        auth_mechanism=DEFAULT_AUTH,
        permission_groups=P.ANONYMOUS_USERS | P.EXCHANGE_SERVERS | P.EXCHANGE_LEGACY_SERVERS,
        bindings=(Binding("0.0.0.0", 25, "0.0.0.0:25"), Binding("::", 25, "[::]:25")),
        remote_ip_ranges=(EVERYTHING,),
        require_tls=False,
        domain_secure_enabled=True,
        transport_role=TransportRole.FRONTEND,
        fqdn="mail.contoso.com",
        tls_certificate_name=None,
        tls_domain_capabilities=(),
        extended_protection_policy="None",
        comment=None,
    )
    return replace(base, **kw)


def client(**kw: Any) -> ReceiveConnector:
    base = frontend(
        identity="EX01\\Client Frontend EX01",
        name="Client Frontend EX01",
        auth_mechanism=A.TLS | A.INTEGRATED | A.BASIC_AUTH | A.BASIC_AUTH_REQUIRE_TLS,
        permission_groups=P.EXCHANGE_USERS,
        bindings=(Binding("0.0.0.0", 587, "0.0.0.0:587"),),
        domain_secure_enabled=False,
    )
    return replace(base, **kw)


def cert(**kw: Any) -> ExchangeCertificate:
    base = ExchangeCertificate(
        "CD" * 20,
        SRC,
        server="EX01.contoso.com",
        subject="CN=mail.contoso.com, O=Contoso",
        issuer="CN=Issuing CA",
        not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        certificate_domains=("mail.contoso.com", "autodiscover.contoso.com"),
        services=frozenset({"IIS", "SMTP"}),
        status="Valid",
    )
    return replace(base, **kw)


def run(rule: Rule, *connectors: ReceiveConnector, **org: Any) -> Report:
    o = Organization(receive_connectors=connectors, **org)
    report = evaluate(Context(o, NOW), [rule])
    assert not [s for s in report.skipped if "internal error" in s.reason]
    assert_report_fixes_valid(o, report)
    return report


def test_every_receive_rule_is_quiet_on_default_connectors() -> None:
    for r in (
        receive.no_starttls,
        receive.basic_auth_without_tls,
        receive.mx_requires_tls,
        receive.domain_secure_receive_list,
        receive.receive_certificate_missing,
        receive.receive_certificate_expired,
        receive.receive_certificate_renewed,
    ):
        report = run(r, frontend(), client(), certificates=(cert(),))
        assert report.findings == () and report.skipped == (), r.id


# EXC-R001 ---------------------------------------------------------------------------------------


def test_r001_internet_facing_without_tls() -> None:
    report = run(receive.no_starttls, frontend(auth_mechanism=A.INTEGRATED | A.EXCHANGE_SERVER))
    assert fired(report) == [(FRONTEND_ID, Severity.CRITICAL)]
    assert report.findings[0].fix[0].render() == (
        "Set-ReceiveConnector -Identity 'EX01\\Default Frontend EX01'"
        " -AuthMechanism @('Tls','Integrated','ExchangeServer')"
    )


def test_r001_lower_for_scoped_relay_and_disabled_and_from_none() -> None:
    relay = frontend(identity="EX01\\Relay", auth_mechanism=A.NONE, remote_ip_ranges=(PRINTERS,))
    off = frontend(identity="EX01\\Off", auth_mechanism=A.NONE, enabled=False)
    report = run(receive.no_starttls, relay, off)
    # A relay limited to a LAN range is two steps below the internet connector.
    assert dict(fired(report)) == {"EX01\\Relay": Severity.MEDIUM, "EX01\\Off": Severity.MEDIUM}
    relay_finding = next(f for f in report.findings if f.target.identity == "EX01\\Relay")
    assert "-AuthMechanism @('Tls')" in relay_finding.fix[0].render()
    assert "old printers" in relay_finding.message


def test_r001_quiet_and_cannot_judge() -> None:
    assert run(receive.no_starttls, frontend(), client(auth_mechanism=A.INTEGRATED)).findings == ()
    report = run(receive.no_starttls, frontend(permission_groups=UNKNOWN))
    assert report.findings == () and cannot(report) == [FRONTEND_ID]


# EXC-R002 ---------------------------------------------------------------------------------------


def test_r002_basic_auth_before_tls() -> None:
    report = run(receive.basic_auth_without_tls, client(auth_mechanism=A.BASIC_AUTH))
    assert fired(report) == [("EX01\\Client Frontend EX01", Severity.HIGH)]
    assert (
        report.findings[0]
        .fix[0]
        .render()
        .endswith("-AuthMechanism @('Tls','BasicAuth','BasicAuthRequireTLS')")
    )


def test_r002_quiet_and_cannot_judge() -> None:
    assert run(receive.basic_auth_without_tls, client(), frontend(auth_mechanism=A.TLS)).findings == ()
    assert cannot(run(receive.basic_auth_without_tls, client(auth_mechanism=UNKNOWN))) == [
        "EX01\\Client Frontend EX01"
    ]


# EXC-R003 ---------------------------------------------------------------------------------------


def test_r003_public_mx_requires_tls() -> None:
    report = run(receive.mx_requires_tls, frontend(require_tls=True))
    assert fired(report) == [(FRONTEND_ID, Severity.MEDIUM)]
    assert report.findings[0].fix[0].render().endswith("-RequireTLS:$false")


def test_r003_fix_also_clears_extended_protection() -> None:
    report = run(receive.mx_requires_tls, frontend(require_tls=True, extended_protection_policy="Require"))
    assert "-ExtendedProtectionPolicy 'None'" in report.findings[0].fix[0].render()
    # Not exported: the fix stays, and the script checks ExtendedProtectionPolicy is None first.
    report = run(receive.mx_requires_tls, frontend(require_tls=True, extended_protection_policy=UNKNOWN))
    assert fired(report) == [(FRONTEND_ID, Severity.MEDIUM)]
    (fix,) = report.findings[0].fix
    assert isinstance(fix, SetCommand)
    assert fix.render() == "Set-ReceiveConnector -Identity 'EX01\\Default Frontend EX01' -RequireTLS:$false"
    assert [(r.name, r.value) for r in requirements(fix)] == [("ExtendedProtectionPolicy", "None")]


def test_r003_quiet_for_partner_scoped_and_cannot_judge() -> None:
    partner = frontend(identity="EX01\\Partner", require_tls=True, remote_ip_ranges=(PRINTERS,))
    assert run(receive.mx_requires_tls, partner, client(require_tls=True)).findings == ()
    assert cannot(run(receive.mx_requires_tls, frontend(require_tls=UNKNOWN))) == [FRONTEND_ID]


# EXC-R004 ---------------------------------------------------------------------------------------


def _secured_send() -> SendConnector:
    return SendConnector(
        "Woodgrove",
        "Woodgrove",
        SRC,
        enabled=True,
        address_spaces=(AddressSpace("SMTP", "woodgrovebank.com", 1, "SMTP:woodgrovebank.com;1"),),
        domain_secure_enabled=True,
    )


def test_r004_partner_not_in_receive_list() -> None:
    cfg = TransportConfig("Transport Settings", SRC, ("woodgrovebank.com",), ())
    report = run(
        receive.domain_secure_receive_list,
        frontend(),
        send_connectors=(_secured_send(),),
        transport_configs=(cfg,),
    )
    assert fired(report) == [(FRONTEND_ID, Severity.MEDIUM)]
    assert (
        report.findings[0].fix[0].render()
        == "Set-TransportConfig -TLSReceiveDomainSecureList @{Add='woodgrovebank.com'}"
    )
    # TlsDomainCapabilities names certificates granted capabilities (the hybrid
    # AcceptCloudServicesMail of the real CSS-Exchange export), not domain-security partners.
    caps = frontend(
        tls_domain_capabilities=(
            "fabrikam.com:AcceptCloudServicesMail",
            "mail.protection.outlook.com:AcceptCloudServicesMail",
        )
    )
    empty = TransportConfig("Transport Settings", SRC, (), ())
    assert run(receive.domain_secure_receive_list, caps, transport_configs=(empty,)).findings == ()


def test_r004_partner_from_send_domain_secure_list() -> None:
    """A domain secured outbound is a domain-security partner inbound too, without a send connector."""
    cfg = TransportConfig("Transport Settings", SRC, ("contoso.com", "tailspin.com"), ("tailspin.com",))
    report = run(receive.domain_secure_receive_list, frontend(), transport_configs=(cfg,))
    assert fired(report) == [(FRONTEND_ID, Severity.MEDIUM)]
    assert "contoso.com" in report.findings[0].message and "tailspin" not in report.findings[0].message


def test_r004_quiet_and_cannot_judge() -> None:
    listed = TransportConfig("Transport Settings", SRC, (), ("WoodgroveBank.com",))
    secured = (_secured_send(),)
    assert (
        run(
            receive.domain_secure_receive_list,
            frontend(),
            send_connectors=secured,
            transport_configs=(listed,),
        ).findings
        == ()
    )
    assert run(receive.domain_secure_receive_list, frontend()).findings == ()  # no partner at all
    assert cannot(run(receive.domain_secure_receive_list, frontend(), send_connectors=secured)) == [
        FRONTEND_ID
    ]
    assert cannot(run(receive.domain_secure_receive_list, frontend(domain_secure_enabled=UNKNOWN))) == [
        FRONTEND_ID
    ]


# EXC-R005 / EXC-R006 ----------------------------------------------------------------------------

NAMED = CertificateName(
    "<I>CN=Issuing CA<S>CN=mail.contoso.com, O=Contoso",
    "CN=Issuing CA",
    "CN=mail.contoso.com, O=Contoso",
    "mail.contoso.com",
    CertificateNameStatus.OK,
)


def test_r005_named_certificate_missing_on_that_server() -> None:
    on_other = cert(server="EX02")
    mine = cert(server="EX01", subject="CN=other.contoso.com")
    report = run(
        receive.receive_certificate_missing,
        frontend(tls_certificate_name=NAMED),
        certificates=(on_other, mine),
    )
    assert fired(report) == [(FRONTEND_ID, Severity.HIGH)]


def test_r005_no_certificate_for_fqdn_and_no_smtp_filter_at_selection() -> None:
    # Exchange does not filter on the SMTP service when it selects: an IIS-only certificate for the
    # name is still found (the service matters through the private key's permissions).
    iis_only = cert(services=frozenset({"IIS"}))
    assert run(receive.receive_certificate_missing, frontend(), certificates=(iis_only,)).findings == ()
    other = cert(certificate_domains=("owa.contoso.com",), subject="CN=owa.contoso.com")
    report = run(receive.receive_certificate_missing, frontend(), certificates=(other,))
    assert fired(report) == [(FRONTEND_ID, Severity.HIGH)]
    wildcard = cert(certificate_domains=("*.contoso.com",))
    assert run(receive.receive_certificate_missing, frontend(), certificates=(wildcard,)).findings == ()
    # Any depth below the wildcard's domain, as Exchange's selection matches by default.
    deep = frontend(fqdn="smtp.eu.contoso.com")
    assert run(receive.receive_certificate_missing, deep, certificates=(wildcard,)).findings == ()


def test_r005_null_fqdn_uses_the_server_fqdn() -> None:
    server = ExchangeServer("EX01", "EX01", SRC, fqdn="ex01.contoso.com")
    c = frontend(fqdn=None)
    report = run(receive.receive_certificate_missing, c, certificates=(cert(),), servers=(server,))
    assert "ex01.contoso.com" in report.findings[0].message
    assert cannot(run(receive.receive_certificate_missing, c, certificates=(cert(),))) == [FRONTEND_ID]


def test_r005_quiet_and_cannot_judge() -> None:
    ok = frontend(tls_certificate_name=NAMED)
    assert run(receive.receive_certificate_missing, ok, certificates=(cert(),)).findings == ()
    assert run(receive.receive_certificate_missing, frontend(auth_mechanism=A.NONE)).findings == ()
    assert cannot(run(receive.receive_certificate_missing, ok)) == [FRONTEND_ID]  # nothing exported
    assert cannot(run(receive.receive_certificate_missing, ok, certificates=(cert(server="EX02"),))) == [
        FRONTEND_ID
    ]
    # Services do not decide selection: not exported, still judged.
    assert run(receive.receive_certificate_missing, frontend(), certificates=(cert(services=UNKNOWN),)) == (
        run(receive.receive_certificate_missing, frontend(), certificates=(cert(),))
    )


def test_r006_expired_certificate() -> None:
    old = cert(not_after=dt.datetime(2025, 5, 31, tzinfo=dt.UTC))
    report = run(
        receive.receive_certificate_expired, frontend(tls_certificate_name=NAMED), certificates=(old,)
    )
    assert fired(report) == [(FRONTEND_ID, Severity.HIGH)] and "2025-05-31" in report.findings[0].message
    assert "still presents" in report.findings[0].message and report.findings[0].fix == ()
    assert report.findings[0].fix_note and "no valid certificate" in report.findings[0].fix_note
    renewed = cert(thumbprint="EF" * 20, not_after=dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert run(receive.receive_certificate_expired, frontend(), certificates=(old, renewed)).findings == ()


def test_r006_uses_ctx_now_and_cannot_judge() -> None:
    c = frontend()
    o = Organization(receive_connectors=(c,), certificates=(cert(),))
    later = evaluate(
        Context(o, dt.datetime(2030, 1, 1, tzinfo=dt.UTC)), [receive.receive_certificate_expired]
    )
    assert [f.rule.id for f in later.findings] == ["EXC-R006"]
    assert cannot(run(receive.receive_certificate_expired, c, certificates=(cert(not_after=UNKNOWN),))) == [
        FRONTEND_ID
    ]


# EXC-R007 ---------------------------------------------------------------------------------------


def test_r007_externally_secured_open_to_everyone() -> None:
    ext = A.TLS | A.EXTERNAL_AUTHORITATIVE
    open_ = frontend(identity="EX01\\Appliance", auth_mechanism=ext)
    report = run(receive.externally_secured_open, open_)
    assert fired(report) == [("EX01\\Appliance", Severity.CRITICAL)]
    assert report.findings[0].fix == ()
    # Limited to the appliance's addresses: the documented use, quiet.
    limited = frontend(identity="EX01\\Appliance", auth_mechanism=ext, remote_ip_ranges=(PRINTERS,))
    assert run(receive.externally_secured_open, limited, frontend(), client()).findings == ()
    assert cannot(run(receive.externally_secured_open, frontend(auth_mechanism=UNKNOWN))) == [FRONTEND_ID]


# The selection model (exconn.rules.certs) ---------------------------------------------------------

CA = "CN=Issuing CA"


def dated(thumb: str, year: int, **kw: Any) -> ExchangeCertificate:
    dates = {
        "not_before": dt.datetime(2024, 1, year - 2020, tzinfo=dt.UTC),
        "not_after": dt.datetime(year, 6, 1, tzinfo=dt.UTC),
    }
    return cert(thumbprint=thumb * 20, **{**dates, **kw})


def test_selection_prefers_valid_then_revocation_offline_then_expired_then_self_signed() -> None:
    valid_old, valid_new = dated("A1", 2026), dated("A2", 2027)
    offline = dated("B1", 2028, status="RevocationCheckFailure")
    gone = dated("C1", 2024)
    own = dated("D1", 2030, issuer="CN=mail.contoso.com, O=Contoso")

    def chosen(*certs: ExchangeCertificate) -> str:
        found = certs_model.select_for_fqdn(certs, "mail.contoso.com", NOW)
        assert isinstance(found, certs_model.Selection) and found.certificate is not None
        return found.certificate.thumbprint

    assert chosen(own, gone, offline, valid_old, valid_new) == "A2" * 20  # newest valid CA-issued
    assert chosen(own, gone, offline) == "B1" * 20
    assert chosen(own, gone) == "C1" * 20  # an expired CA-issued one beats a valid self-signed one
    assert chosen(own) == "D1" * 20


def test_selection_exact_name_before_wildcards() -> None:
    exact_expired = dated("E1", 2024)
    wildcard = dated("F1", 2027, certificate_domains=("*.contoso.com",), subject="CN=*.contoso.com")
    found = certs_model.select_for_fqdn((wildcard, exact_expired), "mail.contoso.com", NOW)
    assert isinstance(found, certs_model.Selection) and found.certificate is exact_expired
    assert found.how == "the certificate named mail.contoso.com"


def test_r006_proposes_the_valid_certificate_for_the_same_name() -> None:
    # Unpinned: the exact-name certificate expired, a valid wildcard one for the name is installed.
    exact_expired = dated("E1", 2024)
    wildcard = dated("F1", 2027, certificate_domains=("*.contoso.com",), subject="CN=*.contoso.com")
    report = run(receive.receive_certificate_expired, frontend(), certificates=(exact_expired, wildcard))
    [f] = report.findings
    assert [c.render() for c in f.commands] == [
        "Set-ReceiveConnector -Identity 'EX01\\Default Frontend EX01' "
        "-TlsCertificateName '<I>CN=Issuing CA<S>CN=*.contoso.com'"
    ]
    assert "F1" * 20 in f.message and f.fix_note is None
    # Pinned to an expired certificate, renewed under a new issuer: pin the renewal.
    renewed = dated("A9", 2027, issuer="CN=New Issuing CA")
    pin = frontend(tls_certificate_name=NAMED)
    report = run(receive.receive_certificate_expired, pin, certificates=(exact_expired, renewed))
    [f] = report.findings
    assert (
        f.commands[0]
        .render()
        .endswith("-TlsCertificateName '<I>CN=New Issuing CA<S>CN=mail.contoso.com, O=Contoso'")
    )


def test_r008_pin_misses_the_renewed_certificate() -> None:
    current = dated("A1", 2025, not_after=dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    renewed = dated("A2", 2026, issuer="CN=New Issuing CA", not_before=dt.datetime(2025, 5, 1, tzinfo=dt.UTC))
    pin = frontend(tls_certificate_name=NAMED)
    report = run(receive.receive_certificate_renewed, pin, certificates=(current, renewed))
    assert fired(report) == [(FRONTEND_ID, Severity.MEDIUM)]
    [f] = report.findings
    assert "A2" * 20 in f.message and f.rule.id == "EXC-R008"
    assert f.commands[0].render().endswith("'<I>CN=New Issuing CA<S>CN=mail.contoso.com, O=Contoso'")
    # No renewal, no pin, or a pin that already expired (EXC-R006's): quiet.
    assert run(receive.receive_certificate_renewed, pin, certificates=(current,)).findings == ()
    assert (
        run(receive.receive_certificate_renewed, frontend(), certificates=(current, renewed)).findings == ()
    )
    old = dated("A0", 2025, not_after=dt.datetime(2025, 5, 1, tzinfo=dt.UTC))
    assert run(receive.receive_certificate_renewed, pin, certificates=(old, renewed)).findings == ()
    # Old and new with the same issuer and subject: the store order decides; no fix, a note.
    same = dated("A3", 2026, not_before=dt.datetime(2025, 5, 1, tzinfo=dt.UTC))
    report = run(receive.receive_certificate_renewed, pin, certificates=(current, same))
    [f] = report.findings
    assert f.severity is Severity.LOW and f.fix == () and "Remove-ExchangeCertificate" in (f.fix_note or "")


def test_rule_texts_say_an_expired_certificate_is_still_presented() -> None:
    r006 = receive.receive_certificate_expired
    assert "12016" in r006.rationale and "one renewal away" not in r006.rationale
    assert "SMTP service is not required" in receive.receive_certificate_missing.rationale
