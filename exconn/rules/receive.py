"""Receive connector rules (EXC-R…): what Exchange offers to the servers and clients that connect."""

from __future__ import annotations

from collections.abc import Iterator

from exconn.model import (
    UNKNOWN,
    AuthMechanism,
    Maybe,
    ReceiveConnector,
)
from exconn.names import normalize
from exconn.pwsh import PsValue
from exconn.rules.base import EACH_RECEIVE_CONNECTOR, CannotJudge, Context, Hit, Severity, Target, rule
from exconn.rules.helpers import (
    CertLookup,
    CertVerdict,
    Scope,
    certificates_for_fqdn,
    certificates_of_server,
    expired,
    find_by_name,
    fixes,
    flags_value,
    is_anonymous_smtp,
    missing,
    receive_reach,
    same_server,
    set_fix,
    transport_config,
)
from exconn.rules.refs import (
    GET_CERT,
    RECEIVE_CONNECTORS,
    RFC3207_4,
    RFC4954_4,
    SET_RECEIVE,
    SET_TRANSPORT,
)

Result = Iterator[Hit | CannotJudge]


@rule(
    id="EXC-R001",
    title="Internet-facing receive connector never offers STARTTLS",
    severity=Severity.CRITICAL,
    rationale="""Exchange advertises STARTTLS only when AuthMechanism includes Tls. An anonymous
        connector on port 25 without it makes every sending server deliver in plaintext.""",
    references=[SET_RECEIVE, RFC3207_4],
    remediation="Add Tls to the connector's AuthMechanism (Set-ReceiveConnector -AuthMechanism).",
    each=EACH_RECEIVE_CONNECTOR,
)
def no_starttls(ctx: Context, c: ReceiveConnector) -> Result:
    anonymous = is_anonymous_smtp(c)
    if anonymous is None or c.auth_mechanism is UNKNOWN:
        yield missing(c, "PermissionGroups/Bindings/AuthMechanism")
        return
    if not anonymous or c.auth_mechanism & AuthMechanism.TLS:
        return
    reach = receive_reach(c)
    yield Hit(
        Target.of(c),
        "AuthMechanism",
        flags_value(c.auth_mechanism),
        f"Anonymous SMTP on port 25 without Tls: STARTTLS is never offered ({reach.describe()})."
        + (
            " Test with the devices first: old printers and scanners that see STARTTLS may try"
            " it, fail and not fall back to plaintext."
            if reach.scope is not Scope.INTERNET
            else ""
        ),
        # A connector limited to some remote addresses is usually a device relay on the LAN.
        severity=reach.severity(Severity.CRITICAL, scoped_steps=2),
        fix=fixes(
            set_fix(
                "Set-ReceiveConnector",
                c.identity,
                [
                    (
                        "AuthMechanism",
                        flags_value(c.auth_mechanism | AuthMechanism.TLS),
                        flags_value(c.auth_mechanism),
                    )
                ],
            )
        ),
    )


@rule(
    id="EXC-R002",
    title="Basic authentication offered before TLS",
    severity=Severity.HIGH,
    rationale="""With BasicAuth but not BasicAuthRequireTLS the connector offers AUTH on the
        unencrypted session, so clients can send their user name and password in clear.""",
    references=[SET_RECEIVE, RFC4954_4],
    remediation="Add BasicAuthRequireTLS (and Tls, which it needs) to AuthMechanism.",
    each=EACH_RECEIVE_CONNECTOR,
)
def basic_auth_without_tls(ctx: Context, c: ReceiveConnector) -> Result:
    if c.auth_mechanism is UNKNOWN:
        yield missing(c, "AuthMechanism")
        return
    mech = c.auth_mechanism
    if not mech & AuthMechanism.BASIC_AUTH or mech & AuthMechanism.BASIC_AUTH_REQUIRE_TLS:
        return
    wanted = mech | AuthMechanism.BASIC_AUTH_REQUIRE_TLS | AuthMechanism.TLS
    reach = receive_reach(c)
    yield Hit(
        Target.of(c),
        "AuthMechanism",
        flags_value(mech),
        f"AUTH with passwords is offered before STARTTLS ({reach.describe()}).",
        severity=reach.severity(Severity.HIGH),
        fix=fixes(
            set_fix(
                "Set-ReceiveConnector",
                c.identity,
                [("AuthMechanism", flags_value(wanted), flags_value(mech))],
            )
        ),
    )


@rule(
    id="EXC-R003",
    title="Public MX connector requires TLS",
    severity=Severity.MEDIUM,
    rationale="""RFC 3207 §4: a publicly-referenced SMTP server must not require STARTTLS. Senders
        that cannot do TLS get `451 5.7.3` and their mail is lost or delayed; enforced TLS belongs on
        the sending side (MTA-STS, DANE) or on partner-scoped connectors.""",
    references=[RFC3207_4, SET_RECEIVE],
    remediation="""Set RequireTLS $false on the anonymous port-25 connector (and ExtendedProtectionPolicy
        None, which needs RequireTLS); keep Tls in AuthMechanism so STARTTLS stays offered.""",
    each=EACH_RECEIVE_CONNECTOR,
)
def mx_requires_tls(ctx: Context, c: ReceiveConnector) -> Result:
    anonymous = is_anonymous_smtp(c)
    if anonymous is None or c.require_tls is UNKNOWN:
        yield missing(c, "PermissionGroups/Bindings/RequireTLS")
        return
    if not anonymous or not c.require_tls:
        return
    reach = receive_reach(c)
    if reach.scope is not Scope.INTERNET:
        return  # a partner- or device-scoped connector may rightly require TLS
    changes: list[tuple[str, PsValue, Maybe[PsValue]]] = [("RequireTLS", False, True)]
    epp = c.extended_protection_policy
    # Not exported: the script checks at apply time that it is None (a requirement of RequireTLS $false).
    if epp is not UNKNOWN and epp.lower() != "none":
        changes.append(("ExtendedProtectionPolicy", "None", epp))
    yield Hit(
        Target.of(c),
        "RequireTLS",
        True,
        f"The MX-facing connector refuses mail without STARTTLS ({reach.describe()}).",
        severity=reach.severity(Severity.MEDIUM),
        fix=fixes(set_fix("Set-ReceiveConnector", c.identity, changes)),
    )


@rule(
    id="EXC-R004",
    title="Domain-secured receive connector whose partner domain is not in TLSReceiveDomainSecureList",
    severity=Severity.MEDIUM,
    rationale="""Inbound domain security (mutual TLS) applies only to domains listed exactly in the
        transport config's TLSReceiveDomainSecureList; a partner domain missing from it is received
        with plain opportunistic TLS although the connector is DomainSecureEnabled.""",
    references=[SET_TRANSPORT, SET_RECEIVE],
    remediation="Add the partner domains to Set-TransportConfig -TLSReceiveDomainSecureList.",
)
def domain_secure_receive_list(ctx: Context) -> Result:
    config = transport_config(ctx.org)
    # Partners are the domains of domain-secured send connectors (domain security is set up both
    # ways). Not TlsDomainCapabilities: those are certificate names granted capabilities (e.g. the
    # hybrid AcceptCloudServicesMail), not domain-security partners.
    partners: set[str] = set()
    for s in ctx.org.send_connectors:
        if s.domain_secure_enabled is True and s.address_spaces is not UNKNOWN:
            partners |= {a.domain for a in s.address_spaces if a.domain}
    # A domain secured outbound (TLSSendDomainSecureList) is a domain-security partner inbound too.
    if config is not None and config.tls_send_domain_secure_list is not UNKNOWN:
        partners |= {normalize(d) for d in config.tls_send_domain_secure_list}
    for c in ctx.org.receive_connectors:
        if c.domain_secure_enabled is UNKNOWN or c.bindings is UNKNOWN:
            yield missing(c, "DomainSecureEnabled/Bindings")
            continue
        if not c.domain_secure_enabled or not any(b.port == 25 for b in c.bindings):
            continue
        domains = partners
        if not domains:
            continue
        if config is None or config.tls_receive_domain_secure_list is UNKNOWN:
            yield CannotJudge(Target.of(c), "TLSReceiveDomainSecureList not exported (Get-TransportConfig)")
            continue
        listed = {normalize(d) for d in config.tls_receive_domain_secure_list}
        absent = sorted(domains - listed)
        if not absent:
            continue
        observed = list(config.tls_receive_domain_secure_list)
        reach = receive_reach(c)
        yield Hit(
            Target.of(c),
            "DomainSecureEnabled",
            True,
            f"Domain security is enabled but {', '.join(absent)} is not in TLSReceiveDomainSecureList.",
            severity=reach.severity(Severity.MEDIUM, scoped_steps=0),
            fix=fixes(
                set_fix(
                    "Set-TransportConfig",
                    config.identity,
                    [("TLSReceiveDomainSecureList", [*observed, *absent], observed)],
                    singleton=True,
                )
            ),
        )


def _server_fqdn(ctx: Context, c: ReceiveConnector) -> str | None:
    if c.server is UNKNOWN:
        return None
    for s in ctx.org.servers:
        if same_server(s.name, c.server) and s.fqdn is not UNKNOWN:
            return s.fqdn
    return None


def _lookup(ctx: Context, c: ReceiveConnector) -> CertLookup | CannotJudge | None:
    """The certificate STARTTLS would use; None when the connector offers no TLS at all."""
    if c.auth_mechanism is UNKNOWN or c.tls_certificate_name is UNKNOWN:
        return missing(c, "AuthMechanism/TlsCertificateName")
    if not c.auth_mechanism & AuthMechanism.TLS:
        return None
    if not ctx.org.certificates:
        return CannotJudge(Target.of(c), "no certificates were exported (Get-ExchangeCertificate)")
    certs = certificates_of_server(ctx.org, c.server)
    if certs is None:
        return CannotJudge(Target.of(c), f"no certificates exported from server {c.server}")
    if c.tls_certificate_name is not None:
        return find_by_name(certs, c.tls_certificate_name)
    if c.fqdn is UNKNOWN:
        return missing(c, "Fqdn")
    fqdn = c.fqdn or _server_fqdn(ctx, c)
    if fqdn is None:
        return CannotJudge(Target.of(c), "Fqdn is $null and the server's FQDN was not exported")
    sure, maybe = certificates_for_fqdn(certs, fqdn)
    if sure:
        return CertLookup(CertVerdict.FOUND, tuple(sure), "")
    if maybe:
        return CannotJudge(
            Target.of(c), f"certificates for {fqdn} found but their Services were not exported"
        )
    return CertLookup(CertVerdict.MISSING, (), f"no exported certificate for {fqdn} is enabled for SMTP")


@rule(
    id="EXC-R005",
    title="Receive connector certificate not found",
    severity=Severity.HIGH,
    rationale="""STARTTLS is advertised only when the connector finds its certificate (the one
        TlsCertificateName names, else one matching its FQDN with the SMTP service). Without it
        the connector silently stops offering TLS and mail arrives in plaintext.""",
    references=[SET_RECEIVE, GET_CERT],
    remediation="none: install or enable (Enable-ExchangeCertificate -Services SMTP) a certificate "
    "for the connector's FQDN on that server, or correct TlsCertificateName.",
    each=EACH_RECEIVE_CONNECTOR,
)
def receive_certificate_missing(ctx: Context, c: ReceiveConnector) -> Result:
    found = _lookup(ctx, c)
    if isinstance(found, CannotJudge):
        yield found
    elif found is not None and found.verdict is CertVerdict.CANNOT_TELL:
        yield CannotJudge(Target.of(c), found.reason)
    elif found is not None and found.verdict is CertVerdict.MISSING:
        reach = receive_reach(c)
        yield Hit(
            Target.of(c),
            "TlsCertificateName",
            c.tls_certificate_name.raw if c.tls_certificate_name not in (None, UNKNOWN) else None,
            f"{found.reason} on {c.server}: STARTTLS is not offered ({reach.describe()}).",
            severity=reach.severity(Severity.HIGH),
        )


@rule(
    id="EXC-R006",
    title="Receive connector certificate expired",
    severity=Severity.HIGH,
    rationale="""Exchange keeps presenting the expired certificate (event 12016,
        STARTTLSCertificateExpired): opportunistic senders still encrypt, but every sender that
        validates (MTA-STS enforce, DANE, Exchange Online and other TLS-enforcing connectors) refuses
        to deliver, and the connector is one renewal away from losing STARTTLS altogether.""",
    references=[SET_RECEIVE, GET_CERT],
    remediation="none: renew the certificate, enable it for SMTP and update TlsCertificateName.",
    each=EACH_RECEIVE_CONNECTOR,
)
def receive_certificate_expired(ctx: Context, c: ReceiveConnector) -> Result:
    found = _lookup(ctx, c)
    if isinstance(found, CannotJudge):
        yield found
        return
    if found is None or found.verdict is not CertVerdict.FOUND:
        return  # missing or unknown is EXC-R005's to report
    states = [expired(cert, ctx.now) for cert in found.certificates]
    if any(s is None for s in states):
        yield missing(c, "certificate NotAfter")
        return
    if not all(states):
        return
    reach = receive_reach(c)
    cert = found.certificates[0]
    yield Hit(
        Target.of(c),
        "TlsCertificateName",
        cert.thumbprint,
        f"The certificate (thumbprint {cert.thumbprint}) expired on "
        f"{cert.not_after.date() if cert.not_after is not UNKNOWN else '?'}: senders that validate "
        f"certificates (MTA-STS, DANE, TLS-enforcing connectors) refuse it ({reach.describe()}).",
        severity=reach.severity(Severity.HIGH),
    )


@rule(
    id="EXC-R007",
    title="Externally secured connector open to every remote address",
    severity=Severity.CRITICAL,
    rationale="""AuthMechanism ExternalAuthoritative with the ExchangeServers permission group treats
        every session as an authenticated Exchange server, secured by something outside Exchange
        (IPsec, a dedicated link). Open to every remote address on a public port, anyone on the
        internet can relay through the organisation and send as internal senders.""",
    references=[
        SET_RECEIVE,
        RECEIVE_CONNECTORS,
    ],
    remediation="""none: restrict RemoteIPRanges to the partner or appliance addresses the external
        security really covers (Set-ReceiveConnector -RemoteIPRanges), or remove
        ExternalAuthoritative; only the admin knows which addresses are meant.""",
    each=EACH_RECEIVE_CONNECTOR,
)
def externally_secured_open(ctx: Context, c: ReceiveConnector) -> Result:
    if c.auth_mechanism is UNKNOWN:
        yield missing(c, "AuthMechanism")
        return
    if not c.auth_mechanism & AuthMechanism.EXTERNAL_AUTHORITATIVE:
        return
    reach = receive_reach(c)
    if reach.scope is not Scope.INTERNET:
        return
    yield Hit(
        Target.of(c),
        "RemoteIPRanges",
        c.remote_ip_ranges,
        "ExternalAuthoritative on a public port for every remote address: any host is trusted as an "
        f"Exchange server, so anyone can relay and spoof internal senders ({reach.describe()}).",
        severity=reach.severity(Severity.CRITICAL),
    )
