"""Outbound routing: which send connector Exchange picks for a partner, what the partner demands of
senders, and the connector settings that come closest to it (`exconn.rules.emulation`).

Exchange Server honours neither MTA-STS nor DANE, so a partner that demands authenticated TLS needs a
send connector that emulates its policy; EXC-W008..W011 use these pieces to judge and propose one.
"""

from __future__ import annotations

from dataclasses import dataclass

from exconn.fix import Fix, NewCommand
from exconn.model import UNKNOWN, AddressSpace, Maybe, Organization, SendConnector
from exconn.names import normalize, tls_domain_matches
from exconn.posture.facts import DomainPosture
from exconn.pwsh import PsValue
from exconn.rules.emulation import Emulation, Fidelity, emulate
from exconn.rules.helpers import set_fix, transport_config
from exconn.rules.posture_view import dane_secure, enforced_policy, host_facts, host_verdict

# New-SendConnector takes address-space costs from 1 to 100; 1 ties with the lowest possible cost.
NEW_CONNECTOR_COST = 1
CONNECTOR_NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class Route:
    connector: SendConnector
    space: AddressSpace


def _space_rank(space: AddressSpace, domain: str) -> int | None:
    """How specifically an SMTP address space matches `domain` (higher wins); None: no match."""
    if not space.is_smtp:
        return None
    if space.is_internet:
        return 0
    address = normalize(space.address)
    if address == domain:
        return 1000
    if address.startswith("*."):
        parent = address[2:]
        if domain == parent or domain.endswith("." + parent):
            return 1 + parent.count(".")
    return None


def route_to(org: Organization, domain: str) -> Route | None | str:
    """The send connector Exchange picks for `domain`: the most specific address space first, then
    the lowest cost (Exchange's connector selection). A str is why it cannot be told."""
    best: tuple[int, int] | None = None
    chosen: Route | None = None
    for c in org.send_connectors:
        if c.enabled is UNKNOWN or c.address_spaces is UNKNOWN:
            return f"send connector {c.identity}: Enabled/AddressSpaces not in the export"
        if not c.enabled:
            continue
        for space in c.address_spaces:
            rank = _space_rank(space, domain)
            if rank is None:
                continue
            key = (rank, -(space.cost if space.cost is not None else 1))
            if best is None or key > best:
                best, chosen = key, Route(c, space)
    return chosen


@dataclass(frozen=True, slots=True)
class Demand:
    """What the partner demands of senders, and how Exchange can come closest to it."""

    kind: str  # "MTA-STS enforce" | "DANE"
    patterns: tuple[str, ...]
    emulation: Emulation
    usable: bool  # False: the emulation would queue mail that the partner's own rules accept
    note: str = ""


def partner_demand(p: DomainPosture) -> Demand | None:
    policy = enforced_policy(p)
    if policy is not None:
        return Demand("MTA-STS enforce", policy.mx, emulate(policy.mx), usable=True)
    if dane_secure(p) and p.mx.hosts:
        # DANE-EE (usage 3) authenticates the key, not a name or a public CA: requiring a WebPKI
        # chain and name would queue mail to an MX that DANE senders accept. Only when every MX
        # presents a trusted certificate for its name is the name check a fair stand-in.
        verdicts = [host_verdict(h).passing if (h := host_facts(p, x)) else None for x in p.mx.hosts]
        usable = all(v is True for v in verdicts)
        if usable:
            note = ""
        elif any(v is False for v in verdicts):
            note = (
                "its MX certificates are not all publicly trusted for their names (DANE does not need "
                "that), so a validating connector would queue the mail; Exchange Server cannot do DANE"
            )
        else:
            note = (
                "its MX certificates could not all be checked, so a validating connector might queue the mail"
            )
        return Demand("DANE", tuple(p.mx.hosts), emulate(p.mx.hosts), usable=usable, note=note)
    return None


def fidelity_text(emu: Emulation) -> str:
    if emu.fidelity is Fidelity.EXACT:
        return f"Exact: {emu.explanation}."
    if emu.fidelity is Fidelity.LOOSER:
        return f"Looser than the policy: {emu.explanation}."
    return f"No name check possible: {emu.explanation}."


def connector_name(partner: str) -> str:
    name = f"TLS to {partner}"
    if len(name) <= CONNECTOR_NAME_MAX:
        return name
    # Exchange limits connector names to 64 characters; keep the distinctive end of the domain.
    return "TLS to ..." + partner[-(CONNECTOR_NAME_MAX - len("TLS to ...")) :]


@dataclass(frozen=True, slots=True)
class Takeover:
    """The proposed connector, and the properties of the route it replaces that the export lacked
    (New-SendConnector then uses Exchange's defaults for them)."""

    command: NewCommand
    unread: tuple[str, ...]


def _copied(internet: SendConnector) -> tuple[list[tuple[str, PsValue]], list[str]]:
    """What the connector taking over must carry of the one it replaces (EXCHANGE.md): the same
    egress (FrontendProxyEnabled, SourceIPAddress: SPF), DNS, port, size limit, logging, timeout."""
    wanted: list[tuple[str, Maybe[PsValue]]] = [
        ("DNSRoutingEnabled", internet.dns_routing_enabled),
        ("SourceTransportServers", internet.source_transport_servers),
        ("Fqdn", internet.fqdn),
        ("FrontendProxyEnabled", internet.frontend_proxy_enabled),
        ("SourceIPAddress", internet.source_ip_address),
        ("UseExternalDNSServersEnabled", internet.use_external_dns_servers_enabled),
        ("Port", internet.port),
        ("MaxMessageSize", internet.max_message_size),
        ("ProtocolLoggingLevel", internet.protocol_logging_level),
        ("ConnectionInactivityTimeOut", internet.connection_inactivity_timeout),
    ]
    params: list[tuple[str, PsValue]] = []
    unread: list[str] = []
    for name, value in wanted:
        if value is UNKNOWN:
            unread.append(name)
        elif value is not None and value != "":
            params.append((name, list(value) if isinstance(value, tuple) else value))
    return params, unread


def emulating_connector(partner: str, demand: Demand, internet: SendConnector) -> Takeover | str:
    """`New-SendConnector` for `partner`, a true copy of the route it replaces with the emulation's
    TLS settings; a str says why not."""
    if internet.source_transport_servers is UNKNOWN or not internet.source_transport_servers:
        return f"the SourceTransportServers of {internet.identity} are not in the export"
    if internet.dns_routing_enabled is not True:
        # The partner's MX names mean nothing to a smart host hop: no emulation through a relay.
        return (
            f"{internet.identity} routes through smart hosts, whose names the partner's policy does not cover"
        )
    emu = demand.emulation
    copied, unread = _copied(internet)
    params: list[tuple[str, PsValue]] = [
        ("AddressSpaces", [f"SMTP:{partner};{NEW_CONNECTOR_COST}"]),
        # Internet, like the connector it takes over from for this domain: same header handling.
        ("Usage", "Internet"),
        *copied,
    ]
    if internet.tls_certificate_name is not UNKNOWN and internet.tls_certificate_name is not None:
        params.append(("TlsCertificateName", internet.tls_certificate_name.raw))
    params += [("RequireTLS", True), ("TlsAuthLevel", emu.tls_auth_level)]
    if emu.tls_domain is not None:
        params.append(("TlsDomain", emu.tls_domain))
    params.append(("Comment", f"exconn: emulates the {demand.kind} policy of {partner}"))
    return Takeover(NewCommand("New-SendConnector", connector_name(partner), tuple(params)), tuple(unread))


def settings_fix(c: SendConnector, emu: Emulation) -> Fix | None:
    """Set-SendConnector to the emulation; TlsDomain is cleared when the level cannot carry it."""
    changes: list[tuple[str, PsValue, Maybe[PsValue]]] = [
        ("IgnoreSTARTTLS", False, c.ignore_starttls),
        ("RequireTLS", True, c.require_tls),
        ("TlsAuthLevel", emu.tls_auth_level, c.tls_auth_level),
        ("TlsDomain", emu.tls_domain, c.tls_domain),
    ]
    return set_fix("Set-SendConnector", c.identity, changes)


def domain_secured(org: Organization, c: SendConnector, domain: str) -> bool | None:
    """Does domain security (mutual TLS) cover mail to `domain` on `c`: DomainSecureEnabled and the
    domain in TLSSendDomainSecureList? Exchange then requires TLS and validates the partner's
    certificate for the domain itself. None: the export cannot tell."""
    if c.domain_secure_enabled is UNKNOWN:
        return None
    if not c.domain_secure_enabled:
        return False
    config = transport_config(org)
    if config is None or config.tls_send_domain_secure_list is UNKNOWN:
        return None
    return domain in {normalize(d) for d in config.tls_send_domain_secure_list}


def domain_secure_text(domain: str) -> str:
    return (
        "No Set-SendConnector is proposed: the connector has DomainSecureEnabled $true, and Exchange "
        "refuses TlsAuthLevel with it. Domain security (mutual TLS) authenticates the partner once "
        f"{domain} is in TLSSendDomainSecureList (agree it with the partner; see EXC-S009); or turn "
        "DomainSecureEnabled off and require TLS with the emulation: "
    )


def effective_tls_domain(tls_domain: str | None, partner: str) -> str:
    # DomainValidation with an empty TlsDomain checks the next-hop domain or `*.` + it.
    return tls_domain or f"*.{partner}"


def mx_names_outside(p: DomainPosture, tls_domain: str) -> list[str]:
    """MX hosts whose observed certificate carries no name within `tls_domain`: mail queues there."""
    outside = []
    for h in p.mx_hosts:
        cert = h.certificate
        if cert is None:
            continue
        names = list(cert.sans) or [cert.subject.removeprefix("CN=")]
        if not any(tls_domain_matches(tls_domain, n.removeprefix("*.")) for n in names):
            outside.append(h.host)
    return outside
