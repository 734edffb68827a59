"""Outbound cross-check rules (EXC-W008..W011) on constructed facts and model.

Every rule has a test that fires, one that stays quiet, and one where a missing or failed
observation makes it say it could not judge. Every generated command is checked against the
simulated write-time validation of tests/test_remediation.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from exconn.fix import NewCommand
from exconn.model import UNKNOWN, OutboundConnector, TlsAuthLevel, TransportConfig
from exconn.rules import outbound, routing
from exconn.rules.base import Severity
from tests.world_helpers import INTERNET, SRC, assert_valid, hits, host, org, posture, run, send, skipped

# --- EXC-W008 partner enforces, our route is opportunistic ----------------------------------------


def test_w008_proposes_an_exact_scoped_connector() -> None:
    partner = posture("tailspintoys.com", ("mx.tailspintoys.com",))
    report = run(outbound.partner_route_opportunistic, org(), partner)
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
        "-Fqdn 'mail.fabrikam.com' -FrontendProxyEnabled:$true -SourceIPAddress '0.0.0.0' "
        "-UseExternalDNSServersEnabled:$false -Port 25 -MaxMessageSize 36700160 "
        "-ProtocolLoggingLevel 'Verbose' -ConnectionInactivityTimeOut '00:10:00' "
        "-RequireTLS:$true -TlsAuthLevel 'DomainValidation' "
        "-TlsDomain 'mx.tailspintoys.com' -Comment 'exconn: emulates the MTA-STS enforce policy of tailspintoys.com'"
    )
    assert cmd.render_rollback() == "Remove-SendConnector -Identity 'TLS to tailspintoys.com' -Confirm:$false"
    assert_valid(org(), f.fix)
    assert "Not in the export" not in f.message


def test_w008_connector_copies_the_route_it_replaces_and_says_what_it_could_not_read() -> None:
    partner = posture("tailspintoys.com", ("mx.tailspintoys.com",))
    thin = replace(INTERNET, frontend_proxy_enabled=UNKNOWN, source_ip_address=UNKNOWN, port=587)
    f = run(outbound.partner_route_opportunistic, org(send_connectors=(thin,)), partner).findings[0]
    params = dict(f.fix[0].parameters)  # type: ignore[union-attr]
    assert params["Port"] == 587 and params["MaxMessageSize"] == 36700160
    assert "FrontendProxyEnabled" not in params and "SourceIPAddress" not in params
    assert "Not in the export, so not copied" in f.message
    assert "FrontendProxyEnabled, SourceIPAddress" in f.message
    # A route through smart hosts is not emulated: the partner's MX names are not that hop's.
    relay = replace(INTERNET, dns_routing_enabled=False, smart_hosts=("relay.fabrikam.com",))
    assert isinstance(
        routing.emulating_connector("tailspintoys.com", routing.partner_demand(partner), relay), str
    )  # type: ignore[arg-type]


def test_w008_says_when_the_emulation_is_looser_or_has_no_name_check() -> None:
    looser = posture("northwind.com", ("a.mail.northwind.com",), patterns=("*.mail.northwind.com",))
    f = run(outbound.partner_route_opportunistic, org(), looser).findings[0]
    assert "Looser than the policy" in f.message
    assert ("TlsDomain", "*.mail.northwind.com") in f.fix[0].parameters  # type: ignore[union-attr]
    spread = posture(
        "wingtiptoys.com",
        ("mx.wingtiptoys.com",),
        patterns=("mx.wingtiptoys.com", "*.mail.protection.outlook.com"),
    )
    f = run(outbound.partner_route_opportunistic, org(), spread).findings[0]
    assert "No name check possible" in f.message
    params = dict(f.fix[0].parameters)  # type: ignore[union-attr]
    assert params["TlsAuthLevel"] is TlsAuthLevel.CERTIFICATE_VALIDATION and "TlsDomain" not in params
    assert_valid(org(), f.fix)


def test_w008_ignore_starttls_on_a_scoped_connector_is_critical_and_fixed_in_place() -> None:
    scoped = send("To Tailspin", "smtp:tailspintoys.com;10", ignore_starttls=True)
    o = org(send_connectors=(INTERNET, scoped))
    report = run(outbound.partner_route_opportunistic, o, posture("tailspintoys.com"))
    assert hits(report) == [("SendConnector", "To Tailspin", Severity.CRITICAL)]
    fix = report.findings[0].fix[0]
    assert fix.render() == (
        "Set-SendConnector -Identity 'To Tailspin' -IgnoreSTARTTLS:$false -RequireTLS:$true "
        "-TlsAuthLevel 'DomainValidation' -TlsDomain 'mx.tailspintoys.com'"
    )
    assert_valid(o, (fix,))


def test_w008_dane_partner_with_untrusted_certificates_gets_no_connector() -> None:
    dane = posture("adatum.com", mode=None, dane="valid", hosts=(host("mx.adatum.com", trusted=False),))
    report = run(outbound.partner_route_opportunistic, org(), dane)
    assert hits(report) == [("Domain", "adatum.com", Severity.HIGH)]
    assert report.findings[0].fix == () and "cannot do DANE" in report.findings[0].message
    trusted = posture("adatum.com", mode=None, dane="valid")
    assert isinstance(
        run(outbound.partner_route_opportunistic, org(), trusted).findings[0].fix[0], NewCommand
    )


def test_w008_quiet_and_cannot_judge() -> None:
    assert (
        hits(run(outbound.partner_route_opportunistic, org(), posture("testing.com", mode="testing"))) == []
    )
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
                outbound.partner_route_opportunistic,
                org(send_connectors=(INTERNET, validated)),
                posture("tailspintoys.com"),
            )
        )
        == []
    )
    assert skipped(
        run(outbound.partner_route_opportunistic, org(), posture("x.com", sts_status="error"))
    ) == ["x.com"]
    unknown = replace(INTERNET, source_transport_servers=UNKNOWN)
    f = run(
        outbound.partner_route_opportunistic, org(send_connectors=(unknown,)), posture("tailspintoys.com")
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
    route = routing.route_to(org(send_connectors=(cheap_star, specific)), "tailspintoys.com")
    assert isinstance(route, routing.Route) and route.connector.identity == "To Tailspin"
    two_stars = org(send_connectors=(send("B", "SMTP:*;5"), send("A", "SMTP:*;2")))
    route = routing.route_to(two_stars, "tailspintoys.com")
    assert isinstance(route, routing.Route) and route.connector.identity == "A"


# --- EXC-W009 / EXC-W010 existing scoped connectors -----------------------------------------------


def test_w009_encryption_only_gets_domain_validation() -> None:
    to_contoso = send(
        "To Contoso", "smtp:contoso.com;10", require_tls=True, tls_auth_level=TlsAuthLevel.ENCRYPTION_ONLY
    )
    o = org(send_connectors=(INTERNET, to_contoso))
    report = run(outbound.scoped_connector_mismatch, o, posture("contoso.com", ("mail.contoso.com",)))
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
    report = run(outbound.scoped_connector_mismatch, o, moved)
    assert hits(report) == [("SendConnector", "To Contoso", Severity.HIGH)]
    assert "mail is queuing now" in report.findings[0].message
    assert "TlsDomain '*.mail.protection.outlook.com'" in report.findings[0].fix[0].render()
    assert_valid(o, report.findings[0].fix)
    # Still covered: quiet.
    assert (
        hits(run(outbound.scoped_connector_mismatch, o, posture("contoso.com", ("mail.contoso.com",)))) == []
    )
    unknown = replace(old, tls_domain=UNKNOWN)
    assert skipped(
        run(
            outbound.scoped_connector_mismatch,
            org(send_connectors=(INTERNET, unknown)),
            posture("contoso.com"),
        )
    ) == ["To Contoso"]


def _secure_list(*domains: str) -> tuple[TransportConfig, ...]:
    return (TransportConfig("Transport Settings", SRC, domains, ()),)


def test_w008_w009_leave_domain_secured_connectors_without_a_tls_auth_level_fix() -> None:
    """Exchange refuses TlsAuthLevel with DomainSecureEnabled $true: never propose it there."""
    opportunistic = send("To Tailspin", "smtp:tailspintoys.com;10", domain_secure_enabled=True)
    partner = posture("tailspintoys.com")
    o = org(send_connectors=(INTERNET, opportunistic), transport_configs=_secure_list("contoso.com"))
    report = run(outbound.partner_route_opportunistic, o, partner)
    assert hits(report) == [("SendConnector", "To Tailspin", Severity.HIGH)]
    f = report.findings[0]
    assert f.fix == () and "DomainSecureEnabled" in f.message and "TLSSendDomainSecureList" in f.message
    # Listed: domain security (mutual TLS) already authenticates the partner.
    listed = replace(o, transport_configs=_secure_list("tailspintoys.com"))
    assert hits(run(outbound.partner_route_opportunistic, listed, partner)) == []
    assert skipped(run(outbound.partner_route_opportunistic, replace(o, transport_configs=()), partner)) == [
        "To Tailspin"
    ]
    # The internet connector itself domain-secured for the partner: no new connector dropping it.
    secure_internet = replace(INTERNET, domain_secure_enabled=True)
    assert (
        hits(
            run(
                outbound.partner_route_opportunistic,
                org(send_connectors=(secure_internet,), transport_configs=_secure_list("tailspintoys.com")),
                partner,
            )
        )
        == []
    )
    required = replace(opportunistic, require_tls=True)
    o = org(send_connectors=(INTERNET, required), transport_configs=_secure_list("contoso.com"))
    report = run(outbound.scoped_connector_mismatch, o, partner)
    assert hits(report) == [("SendConnector", "To Tailspin", Severity.MEDIUM)]
    assert report.findings[0].fix == () and "refuses TlsAuthLevel" in report.findings[0].message
    listed = replace(o, transport_configs=_secure_list("tailspintoys.com"))
    assert hits(run(outbound.scoped_connector_mismatch, listed, partner)) == []


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
        report = run(outbound.scoped_connector_mismatch, o, dane)
        assert hits(report) == [("SendConnector", "To Litware", Severity.HIGH)]
        f = report.findings[0]
        assert "not publicly trusted" in f.message and "454 4.7.5" in f.message
        assert "best Exchange Server can do" in f.message
        expected = "Set-SendConnector -Identity 'To Litware' -TlsAuthLevel 'EncryptionOnly'"
        assert f.fix[0].render() == expected + (" -TlsDomain $null" if domain else "")
        assert_valid(o, f.fix)
        # W010 does not claim the partner dropped its policy.
        assert hits(run(outbound.partner_dropped_policy, o, dane)) == []
    encryption_only = send(
        "To Litware", "smtp:litware.com;10", require_tls=True, tls_auth_level=TlsAuthLevel.ENCRYPTION_ONLY
    )
    assert (
        hits(run(outbound.scoped_connector_mismatch, org(send_connectors=(INTERNET, encryption_only)), dane))
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
    assert hits(run(outbound.scoped_connector_mismatch, o, trusted)) == []
    unprobed = posture("litware.com", mode=None, dane="valid", hosts=(host("mx.litware.com", probe="error"),))
    assert skipped(run(outbound.scoped_connector_mismatch, o, unprobed)) == ["To Litware"]


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
    assert hits(run(outbound.partner_dropped_policy, o, dropped)) == [
        ("SendConnector", "To Contoso", Severity.LOW)
    ]
    moved = posture("contoso.com", ("mx.elsewhere.net",), mode=None, hosts=(host("mx.elsewhere.net"),))
    report = run(outbound.partner_dropped_policy, o, moved)
    assert hits(report) == [("SendConnector", "To Contoso", Severity.HIGH)]
    assert "mx.elsewhere.net" in report.findings[0].message
    assert hits(run(outbound.partner_dropped_policy, o, posture("contoso.com", ("mail.contoso.com",)))) == []
    assert skipped(run(outbound.partner_dropped_policy, o)) == ["To Contoso"]
    assert skipped(run(outbound.partner_dropped_policy, o, posture("contoso.com", sts_status="error"))) == [
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
    report = run(outbound.exo_outbound_vs_partner, org(outbound_connectors=(off,)), partner)
    assert [f.property for f in report.findings] == ["MtaStsMode", "SmtpDaneMode"]
    assert (
        report.findings[0].fix[0].render()
        == "Set-OutboundConnector -Identity 'To Contoso' -MtaStsMode 'Opportunistic'"
    )
    moved = posture(
        "contoso.com", ("x.mail.protection.outlook.com",), patterns=("*.mail.protection.outlook.com",)
    )
    report = run(outbound.exo_outbound_vs_partner, org(outbound_connectors=(exo_out(),)), moved)
    assert [f.property for f in report.findings] == ["TlsDomain"]
    assert "-TlsDomain '*.mail.protection.outlook.com'" in report.findings[0].fix[0].render()


def test_w011_quiet_and_cannot_judge() -> None:
    partner = posture("contoso.com", ("mail.contoso.com",))
    assert hits(run(outbound.exo_outbound_vs_partner, org(outbound_connectors=(exo_out(),)), partner)) == []
    smart = exo_out(use_mx_record=False, mta_sts_mode="None")
    assert hits(run(outbound.exo_outbound_vs_partner, org(outbound_connectors=(smart,)), partner)) == []
    unknown = exo_out(mta_sts_mode=UNKNOWN)
    assert skipped(run(outbound.exo_outbound_vs_partner, org(outbound_connectors=(unknown,)), partner)) == [
        "To Contoso"
    ]


def test_w011_with_smart_hosts_observes_the_smart_hosts_domain() -> None:
    # Exchange Online checks MTA-STS against the smart host's domain, not the recipient's.
    relay = posture("relay-partner.com", ("mx.relay-partner.com",))
    smart = exo_out(
        use_mx_record=False,
        smart_hosts=("smtp.relay-partner.com", "192.0.2.7"),
        recipient_domains=("contoso.com",),
        mta_sts_mode="None",
        smtp_dane_mode="None",
    )
    report = run(outbound.exo_outbound_vs_partner, org(outbound_connectors=(smart,)), relay)
    assert [f.property for f in report.findings] == ["MtaStsMode"]
    assert "relay-partner.com" in report.findings[0].message
    assert outbound.smart_host_domain("192.0.2.7") is None
    # The recipient's own policy does not apply to the smart host hop.
    recipient = posture("contoso.com", ("mail.contoso.com",), dane="valid")
    assert hits(run(outbound.exo_outbound_vs_partner, org(outbound_connectors=(smart,)), recipient)) == []


def test_w012_dane_mandatory_towards_a_partner_without_dane() -> None:
    mandatory = exo_out(smtp_dane_mode="Mandatory")
    for status in ("absent", "insecure"):
        partner = posture("contoso.com", ("mail.contoso.com",), dane=status)
        report = run(outbound.exo_dane_mandatory, org(outbound_connectors=(mandatory,)), partner)
        assert hits(report) == [("OutboundConnector", "To Contoso", Severity.HIGH)]
        f = report.findings[0]
        assert "24 hours" in f.message and f.severity >= Severity.MEDIUM
        assert (
            f.fix[0].render() == "Set-OutboundConnector -Identity 'To Contoso' -SmtpDaneMode 'Opportunistic'"
        )
    signed = posture("contoso.com", ("mail.contoso.com",), dane="valid")
    assert hits(run(outbound.exo_dane_mandatory, org(outbound_connectors=(mandatory,)), signed)) == []
    absent = posture("contoso.com", ("mail.contoso.com",), dane="absent")
    assert hits(run(outbound.exo_dane_mandatory, org(outbound_connectors=(exo_out(),)), absent)) == []
    failed = posture("contoso.com", ("mail.contoso.com",), dane="error")
    assert skipped(run(outbound.exo_dane_mandatory, org(outbound_connectors=(mandatory,)), failed)) == [
        "To Contoso"
    ]
