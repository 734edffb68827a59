"""Exchange Online connector rules (EXC-O…): Get-OutboundConnector and Get-InboundConnector.

Outbound connectors decide how Exchange Online authenticates the servers it sends to (TlsSettings,
TlsDomain); inbound connectors decide which mail Exchange Online trusts as coming from your
on-premises organisation or a partner (RequireTls, TlsSenderCertificateName, SenderIPAddresses).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from exconn.model import UNKNOWN, InboundConnector, Maybe, OutboundConnector, TlsAuthLevel
from exconn.names import normalize, tls_domain_matches
from exconn.rules.base import (
    EACH_INBOUND_CONNECTOR,
    EACH_OUTBOUND_CONNECTOR,
    CannotJudge,
    Context,
    Hit,
    Severity,
    Target,
    rule,
)
from exconn.rules.helpers import (
    Reachability,
    Scope,
    fixes,
    is_lab_domain,
    missing,
    set_fix,
    smart_host_tls_domain,
    tls_domain_problem,
)
from exconn.rules.refs import EXO_CONNECTORS, NEW_OUTBOUND, RFC7435_3, SET_INBOUND, SET_OUTBOUND

Result = Iterator[Hit | CannotJudge]


ON_PREMISES = "onpremises"
PARTNER = "partner"


def _type(c: InboundConnector | OutboundConnector) -> str | None:
    """`onpremises` / `partner` (lower-case); None when the export lacks ConnectorType."""
    return None if c.connector_type is UNKNOWN else c.connector_type.strip().lower()


def _domain(raw: str) -> str:
    """`contoso.com`, `*.contoso.com`, `*`; also the address-space form `smtp:*;1` EXO prints."""
    text = raw.strip()
    head, sep, rest = text.partition(":")
    if sep and head.isalnum():
        text = rest
    return normalize(text.split(";", 1)[0])


def _enabled(c: InboundConnector | OutboundConnector) -> tuple[bool, tuple[str, ...]]:
    if c.enabled is UNKNOWN:
        return True, ("Enabled",)
    return c.enabled, ()


def outbound_reach(c: OutboundConnector) -> Reachability:
    """INTERNET: RecipientDomains `*` (every domain no more specific connector takes)."""
    enabled, assumed = _enabled(c)
    if c.recipient_domains is UNKNOWN:
        return Reachability(Scope.INTERNET, enabled, (*assumed, "RecipientDomains"))
    domains = [_domain(d) for d in c.recipient_domains if d.strip()]
    if "*" in domains:
        scope = Scope.INTERNET
    elif domains and all(is_lab_domain(d) for d in domains):
        scope = Scope.LAB
    else:
        scope = Scope.SCOPED
    return Reachability(scope, enabled, assumed)


def inbound_reach(c: InboundConnector) -> Reachability:
    """Anyone on the internet can connect to the tenant's MX and try to match an inbound connector."""
    enabled, assumed = _enabled(c)
    return Reachability(Scope.INTERNET, enabled, assumed)


def _is_address(host: str) -> bool:
    """An IP literal or CIDR range (SmartHosts takes both): no name a certificate could carry."""
    h = host.strip().lower()
    return h.startswith("[") or ":" in h or not re.search(r"[a-z]", h)


def _covers(tls_domain: str, hosts: Sequence[str]) -> bool:
    """Does TlsDomain cover every named smart host (Exchange's semantics, `tls_domain_matches`)?"""
    return all(tls_domain_matches(tls_domain, h.strip()) for h in hosts if h.strip() and not _is_address(h))


def _uses_smart_hosts(c: OutboundConnector) -> bool | None:
    if c.use_mx_record is UNKNOWN or c.smart_hosts is UNKNOWN:
        return None
    return not c.use_mx_record and bool(c.smart_hosts)


def _level(value: TlsAuthLevel | None) -> str:
    return value.value if value is not None else "$null"


def _cert_name(value: Maybe[str | None]) -> Maybe[str | None]:
    """TlsSenderCertificateName with an empty string read as not set."""
    if value is UNKNOWN or value is None:
        return value
    return value.strip() or None


# --- outbound ------------------------------------------------------------------------------------


@rule(
    id="EXC-O001",
    title="Outbound connector checks no certificate (TlsSettings $null or EncryptionOnly)",
    severity=Severity.HIGH,
    rationale="""With TlsSettings $null Exchange Online uses opportunistic TLS and falls back to
        plaintext; with EncryptionOnly it requires TLS but accepts any certificate. Either way anyone
        who can intercept the connection to your on-premises servers or the partner can read the mail.""",
    references=[SET_OUTBOUND, NEW_OUTBOUND, RFC7435_3],
    remediation="""Set TlsSettings DomainValidation with a TlsDomain naming the smart hosts when they
        share one; otherwise CertificateValidation (trusted chain, no name check), clearing TlsDomain.
        none for a RecipientDomains `*` connector using MX records: forcing a trusted certificate on
        every internet domain bounces mail, so rely on the recipients' MTA-STS or DANE.""",
    each=EACH_OUTBOUND_CONNECTOR,
)
def outbound_without_certificate_check(ctx: Context, c: OutboundConnector) -> Result:
    if c.tls_settings is UNKNOWN:
        yield missing(c, "TlsSettings")
        return
    if c.tls_settings not in (None, TlsAuthLevel.ENCRYPTION_ONLY):
        return
    reach = outbound_reach(c)
    smart = _uses_smart_hosts(c)
    fix = None
    if smart and c.smart_hosts is not UNKNOWN:
        domain = smart_host_tls_domain(c.smart_hosts)
        if domain is not None and _covers(domain, c.smart_hosts):
            fix = set_fix(
                "Set-OutboundConnector",
                c.identity,
                [
                    ("TlsSettings", TlsAuthLevel.DOMAIN_VALIDATION, c.tls_settings),
                    ("TlsDomain", domain, c.tls_domain),
                ],
            )
        else:
            fix = set_fix(
                "Set-OutboundConnector",
                c.identity,
                [
                    ("TlsSettings", TlsAuthLevel.CERTIFICATE_VALIDATION, c.tls_settings),
                    ("TlsDomain", None, c.tls_domain),
                ],
            )
    elif c.use_mx_record is True and reach.scope is not Scope.INTERNET:
        fix = set_fix(
            "Set-OutboundConnector",
            c.identity,
            [
                ("TlsSettings", TlsAuthLevel.CERTIFICATE_VALIDATION, c.tls_settings),
                ("TlsDomain", None, c.tls_domain),
            ],
        )
    kind = _type(c)
    to = {ON_PREMISES: "your on-premises servers", PARTNER: "the partner"}.get(kind or "", "its hosts")
    if reach.scope is Scope.INTERNET and kind != ON_PREMISES:
        to = "every internet domain"
    how = (
        "opportunistic TLS, plaintext when STARTTLS fails or is stripped"
        if c.tls_settings is None
        else "TLS required but any certificate accepted"
    )
    yield Hit(
        Target.of(c),
        "TlsSettings",
        _level(c.tls_settings),
        f"TlsSettings is {_level(c.tls_settings)}: mail to {to} uses {how} ({reach.describe()}).",
        severity=reach.severity(Severity.HIGH),
        fix=fixes(fix),
    )


@rule(
    id="EXC-O002",
    title="Outbound DomainValidation without a TlsDomain covering the smart hosts",
    severity=Severity.HIGH,
    rationale="""DomainValidation checks the remote certificate's name against TlsDomain, where
        `*.contoso.com` covers contoso.com and every name below it and a plain name only itself. With
        smart hosts and no usable TlsDomain the name check does not protect the mail; a TlsDomain
        that covers none of the smart host names either fails delivery or pins a name other than the
        hosts' own.""",
    references=[SET_OUTBOUND, NEW_OUTBOUND],
    remediation="""Set TlsDomain to the name that covers every smart host (the host itself, or
        `*.parent` when they share a registrable domain). none when no name can be derived (IP
        smart hosts, hosts across domains): set it by hand.""",
    each=EACH_OUTBOUND_CONNECTOR,
)
def outbound_domain_validation_tls_domain(ctx: Context, c: OutboundConnector) -> Result:
    if c.tls_settings is UNKNOWN:
        yield missing(c, "TlsSettings")
        return
    if c.tls_settings is not TlsAuthLevel.DOMAIN_VALIDATION:
        return
    if c.tls_domain is UNKNOWN:
        yield missing(c, "TlsDomain")
        return
    problem = tls_domain_problem(c.tls_domain) if c.tls_domain is not None else None
    smart = _uses_smart_hosts(c)
    severity = Severity.HIGH
    if problem is None:
        if smart is None:
            yield missing(c, "UseMXRecord/SmartHosts")
            return
        if not smart or c.smart_hosts is UNKNOWN:
            return  # MX routing: the recipient domain is what the name check is about
        if c.tls_domain is None:
            problem = "is empty while the connector routes to smart hosts"
        else:
            td = c.tls_domain
            names = [normalize(h) for h in c.smart_hosts if h.strip()]
            uncovered = [h for h in names if not _is_address(h) and not tls_domain_matches(td, h)]
            if uncovered:
                # Assumes each smart host's certificate names the host itself.
                problem = f"{td} does not cover smart host(s) {', '.join(uncovered)}"
                severity = Severity.MEDIUM
            elif any(_is_address(h) for h in names):
                yield CannotJudge(
                    Target.of(c),
                    "smart hosts given as IP addresses: whether TlsDomain names their certificate "
                    "cannot be told from the configuration",
                )
                return
            else:
                return
    fix = None
    if smart and c.smart_hosts is not UNKNOWN:
        new = smart_host_tls_domain(c.smart_hosts)
        if new is not None and _covers(new, c.smart_hosts):
            fix = set_fix("Set-OutboundConnector", c.identity, [("TlsDomain", new, c.tls_domain)])
    elif c.use_mx_record is True:
        fix = set_fix("Set-OutboundConnector", c.identity, [("TlsDomain", None, c.tls_domain)])
    reach = outbound_reach(c)
    yield Hit(
        Target.of(c),
        "TlsDomain",
        c.tls_domain,
        f"TlsDomain {problem}: the certificate name is not checked as intended ({reach.describe()}).",
        severity=reach.severity(severity, scoped_steps=0),
        fix=fixes(fix),
    )


# --- inbound -------------------------------------------------------------------------------------


def _inbound_blocker(c: InboundConnector) -> str | None:
    """Why Exchange would refuse any Set-InboundConnector on this object as it stands."""
    if c.restrict_domains_to_certificate is True and _cert_name(c.tls_sender_certificate_name) is None:
        return "RestrictDomainsToCertificate is $true without TlsSenderCertificateName (EXC-O005) first"
    return None


@rule(
    id="EXC-O003",
    title="On-premises inbound connector identifies its sender by neither certificate nor IP",
    severity=Severity.HIGH,
    rationale="""An OnPremises inbound connector makes Exchange Online treat matching mail as your
        own organisation's, so it can relay to the internet and pass as internal. Without RequireTls
        and a TlsSenderCertificateName, or a SenderIPAddresses restriction, anyone who connects to
        the tenant's MX can claim to be your on-premises servers; Microsoft recommends the
        certificate.""",
    references=[SET_INBOUND, EXO_CONNECTORS],
    remediation="""Set RequireTls $true when TlsSenderCertificateName is already set. Otherwise none:
        set TlsSenderCertificateName to the name on your on-premises certificate with RequireTls $true
        (recommended), or list your servers' public addresses in SenderIPAddresses.""",
    each=EACH_INBOUND_CONNECTOR,
)
def on_premises_inbound_unidentified(ctx: Context, c: InboundConnector) -> Result:
    kind = _type(c)
    if kind is None:
        yield missing(c, "ConnectorType")
        return
    if kind != ON_PREMISES:
        return
    name = _cert_name(c.tls_sender_certificate_name)
    by_cert = c.require_tls is True and isinstance(name, str)
    by_ip = c.sender_ip_addresses is not UNKNOWN and any(a.strip() for a in c.sender_ip_addresses)
    if by_cert or by_ip:
        return
    if c.require_tls is UNKNOWN or name is UNKNOWN or c.sender_ip_addresses is UNKNOWN:
        yield missing(c, "RequireTls/TlsSenderCertificateName/SenderIPAddresses")
        return
    fix = None
    if name is not None and _inbound_blocker(c) is None:
        fix = set_fix("Set-InboundConnector", c.identity, [("RequireTls", True, c.require_tls)])
    reach = inbound_reach(c)
    why = (
        f"TlsSenderCertificateName {name} is set but RequireTls is $false, so it is not enforced"
        if name is not None
        else "no TlsSenderCertificateName"
    )
    yield Hit(
        Target.of(c),
        "TlsSenderCertificateName",
        name,
        f"Mail claiming to be your on-premises organisation is accepted from anyone: {why} and no "
        f"SenderIPAddresses ({reach.describe()}).",
        severity=reach.severity(Severity.HIGH),
        fix=fixes(fix),
    )


def _restricted_domains(domains: Sequence[str]) -> list[str]:
    found = [_domain(d) for d in domains if d.strip()]
    return [] if "*" in found else found


@rule(
    id="EXC-O004",
    title="Partner inbound connector for specific sender domains does not require TLS",
    severity=Severity.MEDIUM,
    rationale="""A Partner inbound connector scoped to a partner's SenderDomains exists to force TLS
        for that partner's mail. With RequireTls $false the partner's messages are accepted in
        plaintext, as from any other sender.""",
    references=[SET_INBOUND, EXO_CONNECTORS],
    remediation="Set-InboundConnector -RequireTls $true.",
    each=EACH_INBOUND_CONNECTOR,
)
def partner_inbound_without_tls(ctx: Context, c: InboundConnector) -> Result:
    kind = _type(c)
    if kind is None:
        yield missing(c, "ConnectorType")
        return
    if kind != PARTNER:
        return
    if c.require_tls is UNKNOWN:
        yield missing(c, "RequireTls")
        return
    if c.require_tls:
        return
    if c.sender_domains is UNKNOWN:
        yield missing(c, "SenderDomains")
        return
    domains = _restricted_domains(c.sender_domains)
    if not domains:
        return
    blocker = _inbound_blocker(c)
    fix = (
        set_fix("Set-InboundConnector", c.identity, [("RequireTls", True, c.require_tls)])
        if blocker is None
        else None
    )
    reach = inbound_reach(c)
    note = f"; no fix until {blocker}" if blocker else ""
    yield Hit(
        Target.of(c),
        "RequireTls",
        False,
        f"Mail from {', '.join(domains)} is accepted without TLS (RequireTls is $false; "
        f"{reach.describe()}){note}.",
        severity=reach.severity(Severity.MEDIUM),
        fix=fixes(fix),
    )


@rule(
    id="EXC-O005",
    title="Inbound connector RestrictDomainsToCertificate without TlsSenderCertificateName",
    severity=Severity.MEDIUM,
    rationale="""RestrictDomainsToCertificate lets mail use the connector only when the sender's
        certificate matches TlsSenderCertificateName. Without that name there is nothing to match,
        so the restriction the connector appears to have is not in force.""",
    references=[SET_INBOUND],
    remediation="none: set TlsSenderCertificateName to the name on the sender's certificate (with "
    "RequireTls $true), or turn RestrictDomainsToCertificate off deliberately.",
    each=EACH_INBOUND_CONNECTOR,
)
def restrict_to_certificate_without_name(ctx: Context, c: InboundConnector) -> Result:
    if c.restrict_domains_to_certificate is UNKNOWN:
        yield missing(c, "RestrictDomainsToCertificate")
        return
    if not c.restrict_domains_to_certificate:
        return
    name = _cert_name(c.tls_sender_certificate_name)
    if name is UNKNOWN:
        yield missing(c, "TlsSenderCertificateName")
        return
    if name is not None:
        return
    reach = inbound_reach(c)
    yield Hit(
        Target.of(c),
        "RestrictDomainsToCertificate",
        True,
        "RestrictDomainsToCertificate is $true but TlsSenderCertificateName is empty: no certificate "
        f"restriction applies ({reach.describe()}).",
        severity=reach.severity(Severity.MEDIUM),
    )
