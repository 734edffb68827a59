"""Receive connector rules (EXC-R…): what Exchange offers to the servers and clients that connect."""

from __future__ import annotations

from collections.abc import Iterator

from exconn.fix import SetCommand
from exconn.model import (
    UNKNOWN,
    AuthMechanism,
    ExchangeCertificate,
    Maybe,
    ReceiveConnector,
)
from exconn.names import normalize
from exconn.pwsh import PsValue
from exconn.rules.base import EACH_RECEIVE_CONNECTOR, CannotJudge, Context, Hit, Severity, Target, rule
from exconn.rules.certs import (
    Selection,
    certificate_name_of,
    certificates_of_server,
    expired,
    newer_same_subject,
    receive_selection,
    usable_for_name,
)
from exconn.rules.helpers import (
    Scope,
    fixes,
    flags_value,
    is_anonymous_smtp,
    missing,
    receive_reach,
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


def _selection(ctx: Context, c: ReceiveConnector) -> Selection | CannotJudge | None:
    """The certificate STARTTLS would use (`exconn.rules.certs`); None when no TLS is offered."""
    if c.auth_mechanism is UNKNOWN:
        return missing(c, "AuthMechanism")
    if not c.auth_mechanism & AuthMechanism.TLS:
        return None
    found = receive_selection(ctx.org, c, ctx.now)
    return CannotJudge(Target.of(c), found) if isinstance(found, str) else found


def _pin_fix(c: ReceiveConnector, cert: ExchangeCertificate) -> SetCommand | None:
    name = certificate_name_of(cert)
    if name is None or c.tls_certificate_name is UNKNOWN:
        return None
    observed = c.tls_certificate_name.raw if c.tls_certificate_name is not None else None
    return set_fix("Set-ReceiveConnector", c.identity, [("TlsCertificateName", name, observed)])


@rule(
    id="EXC-R005",
    title="Receive connector certificate not found",
    severity=Severity.HIGH,
    rationale="""STARTTLS is advertised only when the connector finds a certificate: the one
        TlsCertificateName names (issuer and subject), else one carrying the connector's FQDN (exact
        name first, then wildcards; the SMTP service is not required at selection). Without one
        (event 12014) the connector silently stops offering TLS and mail arrives in plaintext.""",
    references=[SET_RECEIVE, GET_CERT],
    remediation="none: install or enable (Enable-ExchangeCertificate -Services SMTP) a certificate "
    "for the connector's FQDN on that server, or correct TlsCertificateName.",
    each=EACH_RECEIVE_CONNECTOR,
)
def receive_certificate_missing(ctx: Context, c: ReceiveConnector) -> Result:
    found = _selection(ctx, c)
    if isinstance(found, CannotJudge):
        yield found
    elif found is not None and not found.found:
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
    rationale="""Exchange keeps presenting the expired certificate and still offers STARTTLS (event
        12016, STARTTLSCertificateExpired; 12018 warns ahead): opportunistic senders still encrypt,
        but every sender that validates (MTA-STS enforce, DANE, Exchange Online and other
        TLS-enforcing connectors) refuses to deliver. Without TlsCertificateName Exchange prefers a
        valid CA-issued certificate, so an expired one is chosen only when no valid one matches.""",
    references=[SET_RECEIVE, GET_CERT],
    remediation="""Set-ReceiveConnector -TlsCertificateName to the valid SMTP certificate for the same
        name when the export holds one; otherwise none: renew the certificate, enable it for SMTP and
        update TlsCertificateName.""",
    each=EACH_RECEIVE_CONNECTOR,
)
def receive_certificate_expired(ctx: Context, c: ReceiveConnector) -> Result:
    found = _selection(ctx, c)
    if isinstance(found, CannotJudge):
        yield found
        return
    if found is None or found.certificate is None:
        return  # missing is EXC-R005's to report
    judged = found.candidates if c.tls_certificate_name is not None else (found.certificate,)
    states = [expired(cert, ctx.now) for cert in judged]
    if any(s is None for s in states):
        yield missing(c, "certificate NotAfter")
        return
    if not all(states):
        return
    reach = receive_reach(c)
    cert = found.certificate
    certs = certificates_of_server(ctx.org, c.server) or ()
    better = newer_same_subject(certs, found, ctx.now)
    if better is None:
        names = [n for n in (c.fqdn if c.fqdn is not UNKNOWN else None, *_cert_names(cert)) if n]
        better = next((u[0] for n in names if (u := usable_for_name(certs, n, ctx.now))), None)
    text = (
        f"The certificate {found.how} selects (thumbprint {cert.thumbprint}) expired on "
        f"{cert.not_after.date() if cert.not_after is not UNKNOWN else '?'}. Exchange still presents "
        "it and offers STARTTLS (event 12016), so opportunistic senders encrypt, but senders that "
        f"validate certificates (MTA-STS, DANE, TLS-enforcing connectors) refuse it ({reach.describe()})."
    )
    fix = _pin_fix(c, better) if better is not None else None
    if better is not None:
        text += (
            f" The valid certificate {better.thumbprint} for the same name is installed: proposed to pin it."
        )
    yield Hit(
        Target.of(c),
        "TlsCertificateName",
        cert.thumbprint,
        text,
        severity=reach.severity(Severity.HIGH),
        fix=fixes(fix),
        fix_note=None
        if fix is not None
        else "no automatic fix: no valid certificate for the same "
        "name was exported; renew the certificate, enable it for SMTP and update TlsCertificateName",
    )


def _cert_names(cert: ExchangeCertificate) -> tuple[str, ...]:
    return cert.certificate_domains if cert.certificate_domains is not UNKNOWN else ()


@rule(
    id="EXC-R008",
    title="TlsCertificateName pins a certificate that has been renewed",
    severity=Severity.MEDIUM,
    rationale="""TlsCertificateName pins issuer and subject: a renewed certificate from another
        issuer is never picked up, and when old and new carry the same issuer and subject Exchange
        takes the first in the store. The connector keeps presenting the old certificate until it
        expires, and then validating senders refuse it: the classic outage after a renewal.""",
    references=[SET_RECEIVE, GET_CERT],
    remediation="""Set-ReceiveConnector -TlsCertificateName to the renewed certificate's
        <I>issuer<S>subject; when it carries the same issuer and subject, remove the old certificate
        (Remove-ExchangeCertificate) instead.""",
    each=EACH_RECEIVE_CONNECTOR,
)
def receive_certificate_renewed(ctx: Context, c: ReceiveConnector) -> Result:
    if c.tls_certificate_name is UNKNOWN or c.tls_certificate_name is None:
        return
    found = _selection(ctx, c)
    if isinstance(found, CannotJudge):
        yield found
        return
    if found is None or not found.found:
        return
    if all(expired(x, ctx.now) is True for x in found.candidates):
        return  # EXC-R006 reports it, with the renewal as its fix
    reach = receive_reach(c)
    certs = certificates_of_server(ctx.org, c.server) or ()
    renewal = newer_same_subject(certs, found, ctx.now)
    pin = c.tls_certificate_name.raw
    if renewal is not None:
        yield Hit(
            Target.of(c),
            "TlsCertificateName",
            pin,
            f"A renewed certificate with the same subject (thumbprint {renewal.thumbprint}, issuer "
            f"{renewal.issuer}) is installed, but TlsCertificateName {pin} pins the old issuer: the "
            "connector keeps presenting the old certificate and validating senders refuse it once it "
            f"expires ({reach.describe()}).",
            severity=reach.severity(Severity.MEDIUM),
            fix=fixes(_pin_fix(c, renewal)),
        )
        return
    older = [x for x in found.candidates if x is not found.certificate]
    newest = found.certificate
    if older and newest is not None and newest.not_after is not UNKNOWN:
        if all(x.not_after is not UNKNOWN and x.not_after < newest.not_after for x in older):
            yield Hit(
                Target.of(c),
                "TlsCertificateName",
                pin,
                f"The renewed certificate (thumbprint {newest.thumbprint}) and the older "
                f"{', '.join(x.thumbprint for x in older)} carry the same issuer and subject: Exchange "
                "presents the first in the store, which may be the old one until it expires "
                f"({reach.describe()}).",
                severity=reach.severity(Severity.LOW),
                fix_note="no automatic fix: remove the old certificate (Remove-ExchangeCertificate "
                f"-Thumbprint {older[0].thumbprint} -Server {c.server}) once the renewed one works",
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
