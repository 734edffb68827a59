"""Send connector rules (EXC-S…): how Exchange protects the mail it sends."""

from __future__ import annotations

from collections.abc import Iterator

from exconn.fix import Fix, certificate_lookup_fix
from exconn.model import (
    UNKNOWN,
    SendConnector,
    SmartHostAuthMechanism,
    TlsAuthLevel,
)
from exconn.names import normalize
from exconn.rules.base import EACH_SEND_CONNECTOR, CannotJudge, Context, Hit, Severity, Target, rule
from exconn.rules.certs import (
    CertVerdict,
    certificate_name_of,
    certificates_of_server,
    expired,
    find_by_name,
    usable_for_name,
)
from exconn.rules.helpers import (
    EXO_TLS_DOMAIN,
    fixes,
    is_exo_host,
    missing,
    send_reach,
    set_fix,
    smart_host_tls_domain,
    tls_domain_problem,
    transport_config,
)
from exconn.rules.refs import (
    GET_CERT,
    NEW_SEND,
    RFC3207_4,
    RFC4954_4,
    RFC7435_3,
    SET_SEND,
    SET_TRANSPORT,
)

Result = Iterator[Hit | CannotJudge]


def _exo_bound(c: SendConnector) -> bool | None:
    """Sends to Exchange Online (HCW shape); None when the export cannot tell."""
    if c.cloud_services_mail_enabled is True:
        return True
    if c.smart_hosts is not UNKNOWN and any(is_exo_host(h) for h in c.smart_hosts):
        return True
    if c.cloud_services_mail_enabled is UNKNOWN or c.smart_hosts is UNKNOWN:
        return None
    return False


def _uses_smart_hosts(c: SendConnector) -> bool | None:
    if c.dns_routing_enabled is UNKNOWN or c.smart_hosts is UNKNOWN:
        return None
    return not c.dns_routing_enabled and bool(c.smart_hosts)


@rule(
    id="EXC-S001",
    title="Send connector never uses STARTTLS (IgnoreSTARTTLS $true)",
    severity=Severity.CRITICAL,
    rationale="""With IgnoreSTARTTLS $true Exchange never issues STARTTLS, even when the remote server
        offers it, so every message on this connector crosses the network in plaintext.""",
    references=[SET_SEND, RFC3207_4],
    remediation="Set-SendConnector -IgnoreSTARTTLS $false (opportunistic TLS, Exchange's default).",
    each=EACH_SEND_CONNECTOR,
)
def ignore_starttls(ctx: Context, c: SendConnector) -> Result:
    if c.ignore_starttls is UNKNOWN:
        yield missing(c, "IgnoreSTARTTLS")
        return
    if not c.ignore_starttls:
        return
    reach = send_reach(c)
    yield Hit(
        Target.of(c),
        "IgnoreSTARTTLS",
        True,
        f"STARTTLS is never used: mail leaves in plaintext ({reach.describe()}).",
        severity=reach.severity(Severity.CRITICAL),
        fix=fixes(set_fix("Set-SendConnector", c.identity, [("IgnoreSTARTTLS", False, True)])),
    )


@rule(
    id="EXC-S002",
    title="Send connector requires TLS but checks no certificate",
    severity=Severity.HIGH,
    rationale="""RequireTLS with TlsAuthLevel EncryptionOnly or unset encrypts but accepts any
        certificate, so anyone who can intercept the connection can present their own and read the
        mail. Only CertificateValidation or DomainValidation make the forced TLS authenticated.""",
    references=[SET_SEND, RFC7435_3],
    remediation="""Set TlsAuthLevel DomainValidation with a TlsDomain naming the smart hosts when they
        share one; otherwise CertificateValidation (trusted chain, no name check).""",
    each=EACH_SEND_CONNECTOR,
)
def require_tls_without_validation(ctx: Context, c: SendConnector) -> Result:
    if c.require_tls is UNKNOWN:
        yield missing(c, "RequireTLS")
        return
    if not c.require_tls:
        return
    if c.tls_auth_level is UNKNOWN or c.domain_secure_enabled is UNKNOWN:
        yield missing(c, "TlsAuthLevel/DomainSecureEnabled")
        return
    # Domain security authenticates both ends itself; EXO-bound connectors are EXC-S007's.
    if c.tls_auth_level not in (None, TlsAuthLevel.ENCRYPTION_ONLY) or c.domain_secure_enabled:
        return
    if _exo_bound(c) is True:
        return
    reach = send_reach(c)
    smart = _uses_smart_hosts(c)
    domain = smart_host_tls_domain(c.smart_hosts) if smart and c.smart_hosts is not UNKNOWN else None
    if domain is not None:
        fix = set_fix(
            "Set-SendConnector",
            c.identity,
            [
                ("TlsAuthLevel", TlsAuthLevel.DOMAIN_VALIDATION, c.tls_auth_level),
                ("TlsDomain", domain, c.tls_domain),
            ],
        )
    else:
        fix = set_fix(
            "Set-SendConnector",
            c.identity,
            [("TlsAuthLevel", TlsAuthLevel.CERTIFICATE_VALIDATION, c.tls_auth_level)],
        )
    level = c.tls_auth_level.value if c.tls_auth_level else "$null"
    yield Hit(
        Target.of(c),
        "TlsAuthLevel",
        level,
        f"TLS is required but TlsAuthLevel is {level}: any certificate is accepted ({reach.describe()}).",
        severity=reach.severity(Severity.HIGH, scoped_steps=0),
        fix=fixes(fix),
    )


@rule(
    id="EXC-S003",
    title="DomainValidation without a usable TlsDomain",
    severity=Severity.HIGH,
    rationale="""DomainValidation checks the remote certificate's name against TlsDomain (or, when it
        is empty, the address-space domain). With smart hosts and no TlsDomain, or a TlsDomain that
        names nothing (a bare `*`, a malformed value), the name check does not protect the mail.""",
    references=[SET_SEND],
    remediation="""Set TlsDomain to the name on the smart hosts' certificate (derived from the smart
        host names when they share a domain); with DNS routing, clear it so the address-space domain
        is used. none when no name can be derived: set it by hand.""",
    each=EACH_SEND_CONNECTOR,
)
def domain_validation_without_tls_domain(ctx: Context, c: SendConnector) -> Result:
    if c.tls_auth_level is UNKNOWN:
        yield missing(c, "TlsAuthLevel")
        return
    if c.tls_auth_level is not TlsAuthLevel.DOMAIN_VALIDATION or _exo_bound(c) is True:
        return
    if c.tls_domain is UNKNOWN:
        yield missing(c, "TlsDomain")
        return
    smart = _uses_smart_hosts(c)
    problem = tls_domain_problem(c.tls_domain) if c.tls_domain is not None else None
    if c.tls_domain is None:
        if smart is None:
            yield missing(c, "DNSRoutingEnabled/SmartHosts")
            return
        if not smart:
            return
        problem = "is empty while the connector routes to smart hosts"
    if problem is None:
        return
    if smart and c.smart_hosts is not UNKNOWN:
        new = smart_host_tls_domain(c.smart_hosts)
        fix = (
            None
            if new is None
            else set_fix("Set-SendConnector", c.identity, [("TlsDomain", new, c.tls_domain)])
        )
    else:
        fix = set_fix("Set-SendConnector", c.identity, [("TlsDomain", None, c.tls_domain)])
    reach = send_reach(c)
    yield Hit(
        Target.of(c),
        "TlsDomain",
        c.tls_domain,
        f"TlsDomain {problem}: the certificate name is not checked as intended ({reach.describe()}).",
        severity=reach.severity(Severity.HIGH, scoped_steps=0),
        fix=fixes(fix),
    )


@rule(
    id="EXC-S004",
    title="Smart host Basic authentication may be sent in plaintext",
    severity=Severity.HIGH,
    rationale="""SmartHostAuthMechanism BasicAuth sends the connector's credentials with AUTH; with
        opportunistic TLS a failed or stripped STARTTLS makes Exchange retry in plaintext, so the
        password can cross the network in clear.""",
    references=[SET_SEND, RFC4954_4],
    remediation="""Set SmartHostAuthMechanism BasicAuthRequireTLS and RequireTLS $true (and
        IgnoreSTARTTLS $false, which RequireTLS needs).""",
    each=EACH_SEND_CONNECTOR,
)
def smart_host_basic_auth(ctx: Context, c: SendConnector) -> Result:
    if c.smart_host_auth_mechanism is UNKNOWN:
        yield missing(c, "SmartHostAuthMechanism")
        return
    if c.smart_host_auth_mechanism is not SmartHostAuthMechanism.BASIC_AUTH:
        return
    if c.require_tls is UNKNOWN or c.ignore_starttls is UNKNOWN:
        yield missing(c, "RequireTLS/IgnoreSTARTTLS")
        return
    if c.require_tls:
        return  # no plaintext retry: credentials only ever travel inside TLS
    plaintext = c.ignore_starttls
    fix = None
    if c.authentication_credential_set is not False:
        fix = set_fix(
            "Set-SendConnector",
            c.identity,
            [
                (
                    "SmartHostAuthMechanism",
                    SmartHostAuthMechanism.BASIC_AUTH_REQUIRE_TLS,
                    c.smart_host_auth_mechanism,
                ),
                ("RequireTLS", True, c.require_tls),
                ("IgnoreSTARTTLS", False, c.ignore_starttls),
            ],
        )
    reach = send_reach(c)
    how = "always (IgnoreSTARTTLS is on)" if plaintext else "whenever STARTTLS fails or is stripped"
    yield Hit(
        Target.of(c),
        "SmartHostAuthMechanism",
        "BasicAuth",
        f"Smart host credentials are sent in plaintext {how} ({reach.describe()}).",
        # The smart-host session is the same whatever the address space; only a lab scope or a
        # disabled connector makes the exposure smaller.
        severity=reach.severity(Severity.CRITICAL if plaintext else Severity.HIGH, scoped_steps=0),
        fix=fixes(fix),
    )


def _certificate_results(ctx: Context, c: SendConnector, *, want: CertVerdict) -> Result:
    """Shared by EXC-S005 (certificate missing) and EXC-S006 (certificate unusable)."""
    if c.tls_certificate_name is UNKNOWN:
        yield missing(c, "TlsCertificateName")
        return
    name = c.tls_certificate_name
    if name is None:
        return
    if not ctx.org.certificates:
        yield CannotJudge(Target.of(c), "no certificates were exported (Get-ExchangeCertificate)")
        return
    servers: list[str | None] = (
        list(c.source_transport_servers)
        if c.source_transport_servers is not UNKNOWN and c.source_transport_servers
        else [None]
    )
    judged = False
    for server in servers:
        certs = certificates_of_server(ctx.org, server)
        if certs is None:
            continue
        judged = True
        where = f" on {server}" if server else ""
        found = find_by_name(certs, name)
        if found.verdict is CertVerdict.CANNOT_TELL:
            yield CannotJudge(Target.of(c), found.reason + where)
            return
        if found.verdict is CertVerdict.MISSING and want is CertVerdict.MISSING:
            yield Hit(
                Target.of(c),
                "TlsCertificateName",
                name.raw,
                f"{found.reason}{where}: the connector cannot present its certificate, so TLS "
                f"sessions that need it fail ({send_reach(c).describe()}).",
                severity=send_reach(c).severity(Severity.MEDIUM, scoped_steps=0),
            )
            return
        if found.verdict is CertVerdict.FOUND and want is CertVerdict.FOUND:
            problems: list[str] = []
            states = [expired(cert, ctx.now) for cert in found.certificates]
            if any(s is None for s in states):
                yield CannotJudge(Target.of(c), "certificate NotAfter not exported" + where)
                return
            if all(states):
                problems.append("expired")
            known = [cert.services for cert in found.certificates if cert.services is not UNKNOWN]
            if known and not any("SMTP" in {s.upper() for s in svc} for svc in known):
                problems.append("not enabled for the SMTP service")
            if problems:
                yield Hit(
                    Target.of(c),
                    "TlsCertificateName",
                    name.raw,
                    f"The certificate{where} is {' and '.join(problems)} "
                    f"(thumbprint {found.certificates[0].thumbprint}).",
                    severity=send_reach(c).severity(Severity.MEDIUM, scoped_steps=0),
                )
                return
    if not judged:
        yield CannotJudge(Target.of(c), "no certificates exported from the connector's source servers")


@rule(
    id="EXC-S005",
    title="Send connector names a certificate that no exported certificate matches",
    severity=Severity.MEDIUM,
    rationale="""When TlsCertificateName is set, Exchange uses exactly that certificate (matched by
        issuer and subject); if the source server does not have it, TLS sessions that need it fail
        and mail to that destination queues or falls back.""",
    references=[SET_SEND, GET_CERT],
    remediation="none: install the certificate on every source server, or point TlsCertificateName "
    "at one that is installed (<I>issuer<S>subject).",
    each=EACH_SEND_CONNECTOR,
)
def send_certificate_missing(ctx: Context, c: SendConnector) -> Result:
    yield from _certificate_results(ctx, c, want=CertVerdict.MISSING)


@rule(
    id="EXC-S006",
    title="Send connector certificate is expired or not enabled for SMTP",
    severity=Severity.MEDIUM,
    rationale="""The certificate named by TlsCertificateName is what Exchange presents (mutual TLS,
        Exchange Online's on-premises connector); an expired one is rejected by the remote side.""",
    references=[SET_SEND, GET_CERT],
    remediation="none: renew the certificate, enable it for SMTP (Enable-ExchangeCertificate "
    "-Services SMTP) and update TlsCertificateName.",
    each=EACH_SEND_CONNECTOR,
)
def send_certificate_unusable(ctx: Context, c: SendConnector) -> Result:
    yield from _certificate_results(ctx, c, want=CertVerdict.FOUND)


@rule(
    id="EXC-S007",
    title="Connector to Exchange Online does not validate its TLS certificate",
    severity=Severity.HIGH,
    rationale="""The Hybrid Configuration Wizard's connector requires TLS with DomainValidation of
        mail.protection.outlook.com. Without it mail to Exchange Online uses opportunistic or
        unauthenticated TLS and can be intercepted or silently sent in plaintext.""",
    references=[
        SET_SEND,
        "https://learn.microsoft.com/exchange/hybrid-deployment/hybrid-configuration-wizard",
    ],
    remediation="""Set RequireTLS $true, TlsAuthLevel DomainValidation, TlsDomain
        mail.protection.outlook.com (and IgnoreSTARTTLS $false, DomainSecureEnabled $false, which
        conflict with them).""",
    each=EACH_SEND_CONNECTOR,
)
def exo_connector_tls(ctx: Context, c: SendConnector) -> Result:
    bound = _exo_bound(c)
    if bound is None:
        yield missing(c, "SmartHosts/CloudServicesMailEnabled")
        return
    if not bound:
        return
    if (
        c.require_tls is UNKNOWN
        or c.tls_auth_level is UNKNOWN
        or c.tls_domain is UNKNOWN
        or c.ignore_starttls is UNKNOWN
        or c.domain_secure_enabled is UNKNOWN
    ):
        yield missing(c, "RequireTLS/TlsAuthLevel/TlsDomain/IgnoreSTARTTLS/DomainSecureEnabled")
        return
    wrong: list[str] = []
    if not c.require_tls:
        wrong.append("RequireTLS is $false")
    if c.tls_auth_level is not TlsAuthLevel.DOMAIN_VALIDATION:
        wrong.append(f"TlsAuthLevel is {c.tls_auth_level.value if c.tls_auth_level else '$null'}")
    if normalize(c.tls_domain or "") != EXO_TLS_DOMAIN:
        wrong.append(f"TlsDomain is {c.tls_domain or '$null'}")
    if not wrong:
        return
    fix = set_fix(
        "Set-SendConnector",
        c.identity,
        [
            ("RequireTLS", True, c.require_tls),
            ("IgnoreSTARTTLS", False, c.ignore_starttls),
            ("DomainSecureEnabled", False, c.domain_secure_enabled),
            ("TlsAuthLevel", TlsAuthLevel.DOMAIN_VALIDATION, c.tls_auth_level),
            ("TlsDomain", EXO_TLS_DOMAIN, c.tls_domain),
        ],
    )
    reach = send_reach(c)
    yield Hit(
        Target.of(c),
        "RequireTLS" if not c.require_tls else "TlsAuthLevel",
        "; ".join(wrong),
        "Mail to Exchange Online is not protected by validated TLS: " + "; ".join(wrong) + ".",
        severity=reach.severity(Severity.HIGH, scoped_steps=0),
        fix=fixes(fix),
    )


@rule(
    id="EXC-S008",
    title="Connector to Exchange Online without CloudServicesMailEnabled",
    severity=Severity.MEDIUM,
    rationale="""Without CloudServicesMailEnabled Exchange strips the cross-premises headers, so
        Exchange Online treats the organisation's own mail as anonymous internet mail (spam
        filtering, no attribution to the on-premises organisation).""",
    references=[SET_SEND, NEW_SEND],
    remediation="""none: re-run the Hybrid Configuration Wizard. Microsoft's Set-SendConnector
        documentation says not to set CloudServicesMailEnabled by hand unless directed to; it also
        needs the matching OnPremises inbound connector in Exchange Online.""",
    each=EACH_SEND_CONNECTOR,
)
def exo_connector_cloud_services(ctx: Context, c: SendConnector) -> Result:
    if c.smart_hosts is UNKNOWN or c.cloud_services_mail_enabled is UNKNOWN:
        yield missing(c, "SmartHosts/CloudServicesMailEnabled")
        return
    if c.cloud_services_mail_enabled or not any(is_exo_host(h) for h in c.smart_hosts):
        return
    reach = send_reach(c)
    yield Hit(
        Target.of(c),
        "CloudServicesMailEnabled",
        False,
        "Smart host is Exchange Online but CloudServicesMailEnabled is $false: re-run the Hybrid "
        "Configuration Wizard rather than setting it by hand.",
        severity=reach.severity(Severity.MEDIUM, scoped_steps=0),
    )


@rule(
    id="EXC-S009",
    title="Connector to Exchange Online without TlsCertificateName",
    severity=Severity.LOW,
    rationale="""Exchange Online recognises the on-premises organisation either by the certificate
        it presents (the inbound connector's TlsSenderCertificateName) or by its IP addresses.
        Without TlsCertificateName the connector presents whatever matches its FQDN, so certificate
        attribution is left to chance; with an IP-restricted OnPremises inbound connector (when
        exported) this is fine.""",
    references=[SET_SEND, "https://learn.microsoft.com/powershell/module/exchange/set-inboundconnector"],
    remediation="""Set-SendConnector -TlsCertificateName '<I>issuer<S>subject' of the valid SMTP
        certificate for the name Exchange Online's inbound connector expects (its
        TlsSenderCertificateName, else the connector's Fqdn); when certificates were not exported,
        the script looks it up on each source server when it runs and stops unless exactly one
        matches.""",
    each=EACH_SEND_CONNECTOR,
)
def exo_connector_certificate(ctx: Context, c: SendConnector) -> Result:
    bound = _exo_bound(c)
    if bound is None or c.tls_certificate_name is UNKNOWN:
        yield missing(c, "SmartHosts/CloudServicesMailEnabled/TlsCertificateName")
        return
    if not bound or c.tls_certificate_name is not None or _exo_trusts_our_ips(ctx):
        return
    reach = send_reach(c)
    name, fix, note = _exo_certificate_fix(ctx, c)
    yield Hit(
        Target.of(c),
        "TlsCertificateName",
        None,
        "Connector to Exchange Online presents no named certificate (TlsCertificateName is $null)."
        + (f" Proposed: the certificate for {name}." if fix is not None and name else ""),
        severity=reach.severity(Severity.LOW, scoped_steps=0),
        fix=fixes(fix),
        fix_note=note,
    )


def _expected_name(ctx: Context, c: SendConnector) -> str | None:
    """The name Exchange Online expects on our certificate: the TlsSenderCertificateName of its
    OnPremises inbound connector (when exactly one is exported), else the connector's Fqdn."""
    named = {
        normalize(i.tls_sender_certificate_name)
        for i in ctx.org.inbound_connectors
        if i.connector_type is not UNKNOWN
        and i.connector_type.lower() == "onpremises"
        and i.tls_sender_certificate_name not in (UNKNOWN, None, "")
        and isinstance(i.tls_sender_certificate_name, str)
    }
    if len(named) == 1:
        return named.pop()
    if c.fqdn is not UNKNOWN and c.fqdn:
        return normalize(c.fqdn)
    return None


def _exo_certificate_fix(ctx: Context, c: SendConnector) -> tuple[str | None, Fix | None, str | None]:
    """(the name, the fix, why there is none): the exact command when the export holds exactly one
    valid SMTP certificate for the name on every source server; the apply-time lookup when
    certificates were not exported."""
    name = _expected_name(ctx, c)
    if name is None:
        return (
            None,
            None,
            (
                "no automatic fix: neither Exchange Online's inbound connector (TlsSenderCertificateName) "
                "nor the connector's Fqdn names the certificate to present"
            ),
        )
    if c.source_transport_servers is UNKNOWN or not c.source_transport_servers:
        return name, None, "no automatic fix: the connector's SourceTransportServers are not in the export"
    servers = tuple(c.source_transport_servers)
    per_server = [certificates_of_server(ctx.org, s) for s in servers]
    if any(certs is None for certs in per_server):
        return name, certificate_lookup_fix("Set-SendConnector", c.identity, servers, name, None), None
    found: dict[str, str] = {}  # <I>issuer<S>subject -> the newest thumbprint
    for server, certs in zip(servers, per_server, strict=True):
        usable = usable_for_name(certs or (), name, ctx.now)
        if not usable:
            return (
                name,
                None,
                f"no automatic fix: no valid SMTP certificate for {name} on {server} was exported",
            )
        for cert in usable:
            if (pin := certificate_name_of(cert)) is not None:
                found.setdefault(pin, cert.thumbprint)
    if len(found) != 1:
        return (
            name,
            None,
            (
                f"no automatic fix: {len(found)} certificates for {name} qualify ("
                + ", ".join(found.values())
                + "); choose the one Exchange Online expects and set TlsCertificateName to it"
            ),
        )
    pin = next(iter(found))
    return name, set_fix("Set-SendConnector", c.identity, [("TlsCertificateName", pin, None)]), None


def _exo_trusts_our_ips(ctx: Context) -> bool:
    """An exported OnPremises inbound connector that recognises us by SenderIPAddresses."""
    return any(
        i.connector_type is not UNKNOWN
        and i.connector_type == "OnPremises"
        and i.enabled is not False
        and i.sender_ip_addresses is not UNKNOWN
        and bool(i.sender_ip_addresses)
        for i in ctx.org.inbound_connectors
    )


@rule(
    id="EXC-S010",
    title="Domain-secured send connector whose domain is not in TLSSendDomainSecureList",
    severity=Severity.MEDIUM,
    rationale="""DomainSecureEnabled makes the connector use mutual TLS only for domains listed in
        the transport config's TLSSendDomainSecureList; for any other domain mail goes with plain
        opportunistic TLS, though the connector looks domain-secured.""",
    references=[SET_SEND, SET_TRANSPORT],
    remediation="Add the connector's address-space domains to Set-TransportConfig -TLSSendDomainSecureList.",
)
def domain_secure_send_list(ctx: Context) -> Result:
    config = transport_config(ctx.org)
    for c in ctx.org.send_connectors:
        if c.domain_secure_enabled is UNKNOWN:
            yield missing(c, "DomainSecureEnabled")
            continue
        if not c.domain_secure_enabled:
            continue
        if c.address_spaces is UNKNOWN:
            yield missing(c, "AddressSpaces")
            continue
        if config is None or config.tls_send_domain_secure_list is UNKNOWN:
            yield CannotJudge(Target.of(c), "TLSSendDomainSecureList not exported (Get-TransportConfig)")
            continue
        listed = {normalize(d) for d in config.tls_send_domain_secure_list}
        domains = sorted({s.domain for s in c.address_spaces if s.domain} - listed)
        if not domains:
            continue
        fix = set_fix(
            "Set-TransportConfig",
            config.identity,
            [
                (
                    "TLSSendDomainSecureList",
                    [*config.tls_send_domain_secure_list, *domains],
                    list(config.tls_send_domain_secure_list),
                )
            ],
            singleton=True,
        )
        reach = send_reach(c)
        yield Hit(
            Target.of(c),
            "DomainSecureEnabled",
            True,
            f"Domain security is enabled but {', '.join(domains)} is not in TLSSendDomainSecureList: "
            "that mail uses plain opportunistic TLS.",
            severity=reach.severity(Severity.MEDIUM, scoped_steps=0),
            fix=fixes(fix),
        )
