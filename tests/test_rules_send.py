"""Send connector rules: each fires, stays quiet, and says when it cannot judge."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from exconn.fix import SetCommand
from exconn.model import (
    UNKNOWN,
    AddressSpace,
    CertificateName,
    CertificateNameStatus,
    ExchangeCertificate,
    InboundConnector,
    Organization,
    SendConnector,
    SmartHostAuthMechanism,
    Source,
    TlsAuthLevel,
    TransportConfig,
)
from exconn.names import tls_domain_matches
from exconn.rules import send
from exconn.rules.base import Context, Report, Rule, Severity, evaluate
from exconn.rules.certs import certificate_matches, normalize_dn
from exconn.rules.helpers import (
    is_lab_domain,
    smart_host_tls_domain,
    tls_domain_problem,
)
from tests.rule_helpers import cannot, fired
from tests.test_remediation import assert_report_fixes_valid

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
SRC = Source("test.xml")
STAR = AddressSpace("SMTP", "*", 1, "SMTP:*;1")
EXO_HOST = "contoso-com.mail.protection.outlook.com"


def space(domain: str) -> AddressSpace:
    return AddressSpace("smtp", domain, 1, f"smtp:{domain};1")


def conn(**kw: Any) -> SendConnector:
    """A sound internet connector (opportunistic TLS, DNS routing): no rule fires on it."""
    base = SendConnector(
        "Internet",
        "Internet",
        SRC,
        enabled=True,
        address_spaces=(STAR,),
        dns_routing_enabled=True,
        smart_hosts=(),
        port=25,
        fqdn="mail.contoso.com",
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
        source_transport_servers=("EX01",),
        comment=None,
    )
    return replace(base, **kw)


def smart(**kw: Any) -> SendConnector:
    base = conn(
        identity="Partner",
        name="Partner",
        address_spaces=(space("partner.example.org"),),
        dns_routing_enabled=False,
        smart_hosts=("relay.partner.example.org",),
    )
    return replace(base, **kw)


def to_exo(**kw: Any) -> SendConnector:
    """The Hybrid Configuration Wizard's connector."""
    base = conn(
        identity="Outbound to Office 365",
        name="Outbound to Office 365",
        address_spaces=(space("contoso.mail.onmicrosoft.com"),),
        dns_routing_enabled=False,
        smart_hosts=(EXO_HOST,),
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="mail.protection.outlook.com",
        cloud_services_mail_enabled=True,
        tls_certificate_name=NAME,
    )
    return replace(base, **kw)


NAME = CertificateName(
    "<I>CN=Issuing CA, O=Contoso<S>CN=mail.contoso.com",
    "CN=Issuing CA, O=Contoso",
    "CN=mail.contoso.com",
    "mail.contoso.com",
    CertificateNameStatus.OK,
)


def cert(**kw: Any) -> ExchangeCertificate:
    base = ExchangeCertificate(
        "AB" * 20,
        SRC,
        server="EX01",
        subject="CN=mail.contoso.com",
        issuer="cn=Issuing CA,o=Contoso",
        not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        certificate_domains=("mail.contoso.com",),
        services=frozenset({"IIS", "SMTP"}),
        status="Valid",
    )
    return replace(base, **kw)


def run(rule: Rule, *connectors: SendConnector, **org: Any) -> Report:
    o = Organization(send_connectors=connectors, **org)
    report = evaluate(Context(o, NOW), [rule])
    assert not [s for s in report.skipped if "internal error" in s.reason]
    assert_report_fixes_valid(o, report)
    return report


def test_every_send_rule_is_quiet_on_sound_connectors() -> None:
    for r in (
        send.ignore_starttls,
        send.require_tls_without_validation,
        send.domain_validation_without_tls_domain,
        send.smart_host_basic_auth,
        send.send_certificate_missing,
        send.send_certificate_unusable,
        send.exo_connector_tls,
        send.exo_connector_cloud_services,
        send.exo_connector_certificate,
        send.domain_secure_send_list,
    ):
        report = run(
            r,
            conn(),
            to_exo(),
            certificates=(cert(),),
            transport_configs=(TransportConfig("t", SRC, (), ()),),
        )
        assert report.findings == () and report.skipped == (), r.id


# EXC-S001 ---------------------------------------------------------------------------------------


def test_s001_critical_on_internet_connector() -> None:
    report = run(send.ignore_starttls, conn(ignore_starttls=True))
    assert fired(report) == [("Internet", Severity.CRITICAL)]
    assert (
        report.findings[0].fix[0].render() == "Set-SendConnector -Identity 'Internet' -IgnoreSTARTTLS:$false"
    )


def test_s001_lower_when_scoped_lab_or_disabled() -> None:
    scoped = conn(identity="p", ignore_starttls=True, address_spaces=(space("partner.example.org"),))
    lab = conn(identity="lab", ignore_starttls=True, address_spaces=(space("lab.contoso.local"),))
    single = conn(identity="single", ignore_starttls=True, address_spaces=(space("intranet"),))
    off = conn(identity="off", ignore_starttls=True, enabled=False)
    sev = dict(fired(run(send.ignore_starttls, scoped, lab, single, off)))
    assert sev == {
        "p": Severity.HIGH,
        "lab": Severity.MEDIUM,
        "single": Severity.MEDIUM,
        "off": Severity.MEDIUM,
    }


def test_s001_quiet_and_cannot_judge() -> None:
    assert run(send.ignore_starttls, conn()).findings == ()
    report = run(send.ignore_starttls, conn(ignore_starttls=UNKNOWN))
    assert report.findings == () and cannot(report) == ["Internet"]


def test_s001_unknown_reach_assumes_the_worst_and_says_so() -> None:
    report = run(send.ignore_starttls, conn(ignore_starttls=True, enabled=UNKNOWN, address_spaces=UNKNOWN))
    assert fired(report) == [("Internet", Severity.CRITICAL)]
    assert "not exported" in report.findings[0].message


# EXC-S002 ---------------------------------------------------------------------------------------


def test_s002_fires_on_encryption_only_and_null() -> None:
    a = smart(identity="a", require_tls=True, tls_auth_level=TlsAuthLevel.ENCRYPTION_ONLY)
    b = conn(identity="b", require_tls=True, tls_auth_level=None, address_spaces=(space("bank.com"),))
    report = run(send.require_tls_without_validation, a, b)
    assert sorted(fired(report)) == [("a", Severity.HIGH), ("b", Severity.HIGH)]
    fixes = {f.target.identity: f.fix[0].render() for f in report.findings}
    assert fixes["a"] == (
        "Set-SendConnector -Identity 'a' -TlsAuthLevel 'DomainValidation'"
        " -TlsDomain 'relay.partner.example.org'"
    )
    assert fixes["b"] == "Set-SendConnector -Identity 'b' -TlsAuthLevel 'CertificateValidation'"


def test_s002_quiet() -> None:
    ok = smart(require_tls=True, tls_auth_level=TlsAuthLevel.CERTIFICATE_VALIDATION)
    secure = conn(identity="ds", require_tls=True, domain_secure_enabled=True)
    assert (
        run(send.require_tls_without_validation, ok, secure, conn(), to_exo(tls_auth_level=None)).findings
        == ()
    )


def test_s002_cannot_judge() -> None:
    report = run(send.require_tls_without_validation, conn(require_tls=True, tls_auth_level=UNKNOWN))
    assert report.findings == () and cannot(report) == ["Internet"]


# EXC-S003 ---------------------------------------------------------------------------------------


def test_s003_smart_hosts_without_tls_domain() -> None:
    c = smart(
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain=None,
        smart_hosts=("a.relay.partner.example.org", "b.relay.partner.example.org"),
    )
    report = run(send.domain_validation_without_tls_domain, c)
    assert fired(report) == [("Partner", Severity.HIGH)]
    assert report.findings[0].fix[0].render().endswith("-TlsDomain '*.relay.partner.example.org'")


def test_s003_bare_star_and_malformed() -> None:
    star = conn(
        identity="star", require_tls=True, tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION, tls_domain="*"
    )
    bad = smart(
        identity="bad",
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="part ner.com",
    )
    ip = smart(
        identity="ip",
        require_tls=True,
        tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="*",
        smart_hosts=("[10.0.0.1]",),
    )
    report = run(send.domain_validation_without_tls_domain, star, bad, ip)
    assert sorted(i for i, _ in fired(report)) == ["bad", "ip", "star"]
    fixes = {f.target.identity: [x.render() for x in f.fix] for f in report.findings}
    assert fixes["star"] == ["Set-SendConnector -Identity 'star' -TlsDomain $null"]
    assert fixes["ip"] == []  # no name can be derived from an IP smart host


def test_s003_quiet_and_cannot_judge() -> None:
    dns = conn(require_tls=True, tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION, tls_domain=None)
    wild = smart(
        require_tls=True, tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION, tls_domain="*.partner.example.org"
    )
    assert run(send.domain_validation_without_tls_domain, dns, wild).findings == ()
    unknown = smart(require_tls=True, tls_auth_level=TlsAuthLevel.DOMAIN_VALIDATION, tls_domain=UNKNOWN)
    assert cannot(run(send.domain_validation_without_tls_domain, unknown)) == ["Partner"]


# EXC-S004 ---------------------------------------------------------------------------------------


def test_s004_basic_auth_to_smart_host() -> None:
    c = smart(smart_host_auth_mechanism=SmartHostAuthMechanism.BASIC_AUTH, authentication_credential_set=True)
    report = run(send.smart_host_basic_auth, c)
    assert fired(report) == [("Partner", Severity.HIGH)]
    assert report.findings[0].fix[0].render() == (
        "Set-SendConnector -Identity 'Partner' -SmartHostAuthMechanism 'BasicAuthRequireTLS'"
        " -RequireTLS:$true"
    )


def test_s004_with_ignore_starttls_is_critical_and_fix_turns_it_off() -> None:
    c = smart(
        smart_host_auth_mechanism=SmartHostAuthMechanism.BASIC_AUTH,
        authentication_credential_set=True,
        ignore_starttls=True,
    )
    report = run(send.smart_host_basic_auth, c)
    assert fired(report) == [("Partner", Severity.CRITICAL)]
    assert "-IgnoreSTARTTLS:$false" in report.findings[0].fix[0].render()
    # Scoped to a lab name, or disabled: the same exposure, on a smaller stage.
    lab = replace(c, address_spaces=(space("scanners.fabrikam.local"),))
    assert fired(run(send.smart_host_basic_auth, lab)) == [("Partner", Severity.MEDIUM)]
    off = replace(c, enabled=False)
    assert fired(run(send.smart_host_basic_auth, off)) == [("Partner", Severity.MEDIUM)]


def test_s004_quiet_and_cannot_judge() -> None:
    tls = smart(
        smart_host_auth_mechanism=SmartHostAuthMechanism.BASIC_AUTH_REQUIRE_TLS,
        authentication_credential_set=True,
    )
    forced = smart(
        identity="f",
        smart_host_auth_mechanism=SmartHostAuthMechanism.BASIC_AUTH,
        authentication_credential_set=True,
        require_tls=True,
    )
    assert run(send.smart_host_basic_auth, tls, forced).findings == ()
    assert cannot(run(send.smart_host_basic_auth, smart(smart_host_auth_mechanism=UNKNOWN))) == ["Partner"]


# EXC-S005 / EXC-S006 ----------------------------------------------------------------------------


def test_s005_certificate_not_found() -> None:
    c = conn(tls_certificate_name=NAME)
    other = cert(subject="CN=other.contoso.com")
    report = run(send.send_certificate_missing, c, certificates=(other,))
    assert fired(report) == [("Internet", Severity.MEDIUM)]
    assert "EX01" in report.findings[0].message


def test_s005_quiet_when_found_and_cannot_judge_without_certificates() -> None:
    c = conn(tls_certificate_name=NAME)
    assert run(send.send_certificate_missing, c, certificates=(cert(),)).findings == ()
    assert cannot(run(send.send_certificate_missing, c)) == ["Internet"]
    elsewhere = cert(server="EX09")
    assert cannot(run(send.send_certificate_missing, c, certificates=(elsewhere,))) == ["Internet"]
    assert cannot(run(send.send_certificate_missing, conn(tls_certificate_name=UNKNOWN))) == ["Internet"]


def test_s006_expired_or_without_smtp() -> None:
    c = conn(tls_certificate_name=NAME)
    old = cert(not_after=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    report = run(send.send_certificate_unusable, c, certificates=(old,))
    assert fired(report) == [("Internet", Severity.MEDIUM)] and "expired" in report.findings[0].message
    iis = cert(services=frozenset({"IIS"}))
    report = run(send.send_certificate_unusable, c, certificates=(iis,))
    assert "SMTP" in report.findings[0].message


def test_s006_quiet_and_cannot_judge() -> None:
    c = conn(tls_certificate_name=NAME)
    assert run(send.send_certificate_unusable, c, certificates=(cert(services=UNKNOWN),)).findings == ()
    assert cannot(run(send.send_certificate_unusable, c, certificates=(cert(not_after=UNKNOWN),))) == [
        "Internet"
    ]


# EXC-S007 / S008 / S009 -------------------------------------------------------------------------


def test_s007_opportunistic_connector_to_exo() -> None:
    # The CSS-Exchange lab's "Mail to O365": CloudServicesMailEnabled, RequireTLS False, TlsAuthLevel $null.
    c = to_exo(require_tls=False, tls_auth_level=None, tls_domain=None, address_spaces=(STAR,))
    report = run(send.exo_connector_tls, c)
    assert fired(report) == [("Outbound to Office 365", Severity.HIGH)]
    assert report.findings[0].fix[0].render() == (
        "Set-SendConnector -Identity 'Outbound to Office 365' -RequireTLS:$true"
        " -TlsAuthLevel 'DomainValidation' -TlsDomain 'mail.protection.outlook.com'"
    )


def test_s007_fix_clears_conflicting_ignore_starttls_and_domain_secure() -> None:
    c = to_exo(
        require_tls=False,
        tls_auth_level=None,
        tls_domain=None,
        ignore_starttls=True,
        cloud_services_mail_enabled=False,
    )
    report = run(send.exo_connector_tls, c)
    line = report.findings[0].fix[0].render()
    assert "-IgnoreSTARTTLS:$false" in line
    c2 = to_exo(require_tls=True, tls_auth_level=None, tls_domain=None, domain_secure_enabled=True)
    line = run(send.exo_connector_tls, c2).findings[0].fix[0].render()
    assert "-DomainSecureEnabled:$false" in line


def test_s007_quiet_and_cannot_judge() -> None:
    assert run(send.exo_connector_tls, to_exo(), conn(), smart()).findings == ()
    assert cannot(
        run(send.exo_connector_tls, conn(smart_hosts=UNKNOWN, cloud_services_mail_enabled=UNKNOWN))
    ) == ["Internet"]
    assert cannot(run(send.exo_connector_tls, to_exo(tls_domain=UNKNOWN))) == ["Outbound to Office 365"]


def test_s008_cloud_services_mail() -> None:
    report = run(send.exo_connector_cloud_services, to_exo(cloud_services_mail_enabled=False))
    assert fired(report) == [("Outbound to Office 365", Severity.MEDIUM)]
    # Microsoft says not to set it by hand: the fix is the Hybrid Configuration Wizard.
    assert report.findings[0].fix == () and "Hybrid Configuration Wizard" in report.findings[0].message
    assert run(send.exo_connector_cloud_services, to_exo(), smart()).findings == ()
    assert cannot(run(send.exo_connector_cloud_services, to_exo(smart_hosts=UNKNOWN))) == [
        "Outbound to Office 365"
    ]


def test_s009_certificate_name() -> None:
    report = run(send.exo_connector_certificate, to_exo(tls_certificate_name=None))
    assert fired(report) == [("Outbound to Office 365", Severity.LOW)]
    # No certificates exported: the name is looked up when the script runs; the JSON fix still
    # carries the Set-SendConnector command, the name in the writer's variable.
    [fix] = report.findings[0].fix
    assert isinstance(fix, SetCommand) and fix.lookup is not None
    assert fix.lookup.servers == ("EX01",) and fix.lookup.domain == "mail.contoso.com"
    assert fix.render() == (
        "Set-SendConnector -Identity 'Outbound to Office 365' -TlsCertificateName $exconnCertificateName"
    )
    # Exchange Online recognising us by IP address needs no certificate name.
    by_ip = InboundConnector(
        "Inbound from on-premises",
        "Inbound from on-premises",
        SRC,
        enabled=True,
        connector_type="OnPremises",
        sender_ip_addresses=("203.0.113.25",),
    )
    quiet = run(
        send.exo_connector_certificate, to_exo(tls_certificate_name=None), inbound_connectors=(by_ip,)
    )
    assert quiet.findings == ()
    assert run(send.exo_connector_certificate, to_exo(), conn()).findings == ()
    assert cannot(run(send.exo_connector_certificate, to_exo(tls_certificate_name=UNKNOWN))) == [
        "Outbound to Office 365"
    ]


def test_s009_exact_command_from_the_exported_certificate() -> None:
    c = to_exo(tls_certificate_name=None, fqdn="hybrid.contoso.com")
    old = cert(
        thumbprint="01" * 20,
        not_after=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        certificate_domains=("hybrid.contoso.com",),
    )
    good = cert(thumbprint="02" * 20, certificate_domains=("*.contoso.com",), subject="CN=*.contoso.com")
    iis = cert(thumbprint="03" * 20, certificate_domains=("hybrid.contoso.com",), services=frozenset({"IIS"}))
    report = run(send.exo_connector_certificate, c, certificates=(old, good, iis))
    [f] = report.findings
    assert [x.render() for x in f.commands] == [
        "Set-SendConnector -Identity 'Outbound to Office 365' "
        "-TlsCertificateName '<I>cn=Issuing CA,o=Contoso<S>CN=*.contoso.com'"
    ]
    # The name Exchange Online's inbound connector expects wins over the Fqdn.
    expects = InboundConnector(
        "Inbound from on-premises",
        "Inbound from on-premises",
        SRC,
        connector_type="OnPremises",
        tls_sender_certificate_name="mail.contoso.com",
        sender_ip_addresses=(),
    )
    other = cert(thumbprint="04" * 20)  # CN=mail.contoso.com
    report = run(send.exo_connector_certificate, c, certificates=(good, other), inbound_connectors=(expects,))
    [f] = report.findings
    # Two certificates qualify for mail.contoso.com (the wildcard too): no guess, the note says why.
    assert f.fix == () and f.fix_note is not None and "2 certificates" in f.fix_note
    report = run(send.exo_connector_certificate, c, certificates=(old,))
    assert report.findings[0].fix == () and "no valid SMTP certificate" in (report.findings[0].fix_note or "")


# EXC-S010 ---------------------------------------------------------------------------------------


def test_s010_domain_secure_send_list() -> None:
    c = conn(address_spaces=(space("woodgrove.com"),), domain_secure_enabled=True)
    cfg = TransportConfig("Transport Settings", SRC, ("fabrikam.com",), ())
    report = run(send.domain_secure_send_list, c, transport_configs=(cfg,))
    assert fired(report) == [("Internet", Severity.MEDIUM)]
    assert report.findings[0].fix[0].render() == (
        "Set-TransportConfig -TLSSendDomainSecureList @{Add='woodgrove.com'}"
    )
    listed = TransportConfig("Transport Settings", SRC, ("Woodgrove.com",), ())
    assert run(send.domain_secure_send_list, c, transport_configs=(listed,)).findings == ()
    assert cannot(run(send.domain_secure_send_list, c)) == ["Internet"]


# helpers ------------------------------------------------------------------------------------------


def test_tls_domain_semantics() -> None:
    assert tls_domain_matches("*.contoso.com", "contoso.com")
    assert tls_domain_matches("*.contoso.com", "a.b.c.contoso.com")
    assert not tls_domain_matches("*.contoso.com", "evilcontoso.com")
    assert not tls_domain_matches("contoso.com", "mail.contoso.com")
    assert tls_domain_problem("*") and tls_domain_problem("a b") and tls_domain_problem("*.")
    assert tls_domain_problem("*.contoso.com") is None and tls_domain_problem("mail.contoso.com") is None


def test_smart_host_tls_domain() -> None:
    assert smart_host_tls_domain([EXO_HOST]) == "mail.protection.outlook.com"
    assert smart_host_tls_domain(["relay.partner.example.org"]) == "relay.partner.example.org"
    assert smart_host_tls_domain(["a.x.example.org", "b.x.example.org"]) == "*.x.example.org"
    assert smart_host_tls_domain(["a.example.org", "b.example.net"]) is None
    assert smart_host_tls_domain(["10.0.0.1"]) is None and smart_host_tls_domain([]) is None


def test_lab_domains_and_dn_matching() -> None:
    assert is_lab_domain("contoso.local") and is_lab_domain("intranet") and is_lab_domain("lab.contoso.com")
    assert not is_lab_domain("contoso.com") and not is_lab_domain("partner.example.org")
    assert normalize_dn("CN=a,  O=Contoso Ltd") == normalize_dn("cn=A, o=contoso  ltd")
    assert normalize_dn('O="a, b", CN=x') != normalize_dn("O=a, B=b, CN=x")
    assert certificate_matches(cert(), NAME) is True
    assert certificate_matches(cert(issuer="CN=Other CA"), NAME) is False
    assert certificate_matches(cert(subject=UNKNOWN), NAME) is None
