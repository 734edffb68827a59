"""Outbound cross-check rules (EXC-W008..W011): our routes to partner domains against their posture.

They judge every observed domain that is not ours: when a partner demands authenticated TLS (MTA-STS
`enforce`, or DANE), Exchange Server honours neither, so the route to it must be a send connector that
emulates the policy (`exconn.rules.routing`, `exconn.rules.emulation`); Exchange Online's outbound
connectors must not switch its own MTA-STS and DANE checks off. Missing facts never pass.
"""

from __future__ import annotations

from collections.abc import Iterator

from exconn.model import UNKNOWN, Maybe, OutboundConnector, SendConnector, TlsAuthLevel
from exconn.posture.facts import DaneStatus, DomainPosture, MtaStsStatus, ProbeStatus
from exconn.pwsh import PsValue
from exconn.rules.base import (
    EACH_OUTBOUND_CONNECTOR,
    EACH_SEND_CONNECTOR,
    CannotJudge,
    Context,
    Hit,
    Severity,
    Target,
    rule,
)
from exconn.rules.emulation import emulate, tls_domain_covers_pattern
from exconn.rules.helpers import set_fix
from exconn.rules.posture_view import (
    EACH_PARTNER_DOMAIN,
    dane_secure,
    domain_target,
    enforced_policy,
    host_facts,
    posture_of,
    sts_problem,
    valid_policy,
)
from exconn.rules.refs import (
    EXO_DANE,
    EXO_MTA_STS,
    NEW_SEND,
    RFC7672_2_2,
    RFC8461_4_1,
    RFC8461_5,
    SEND_CONNECTORS,
    SET_OUTBOUND,
    SET_SEND,
)
from exconn.rules.routing import (
    NEW_CONNECTOR_COST,
    Demand,
    Route,
    domain_secure_text,
    domain_secured,
    effective_tls_domain,
    emulating_connector,
    fidelity_text,
    mx_names_outside,
    partner_demand,
    route_to,
    settings_fix,
)
from exconn.scope import is_exo_routing, is_ours, smart_host_domain

Result = Iterator[Hit | CannotJudge]


@rule(
    id="EXC-W008",
    title="Partner demands authenticated TLS but our route to it is opportunistic",
    severity=Severity.HIGH,
    rationale="""Exchange Server implements neither MTA-STS nor DANE: on an opportunistic route it
        validates no certificate and retries in plaintext when STARTTLS fails, so the partner's
        enforce policy (RFC 8461 §5) or TLSA records (RFC 7672 §2.2) do not protect our mail to it.
        A connector with domain security (mutual TLS) for the partner already authenticates it and is
        left alone; on one with DomainSecureEnabled Exchange refuses TlsAuthLevel, so no Set-* is
        proposed there.""",
    references=[RFC8461_5, RFC7672_2_2, NEW_SEND, SEND_CONNECTORS],
    remediation="""A send connector scoped to the partner with RequireTLS and the TlsAuthLevel/TlsDomain
        that emulate its policy (New-SendConnector), or those settings on the existing scoped
        connector (Set-SendConnector).""",
    needs_posture=True,
    each=EACH_PARTNER_DOMAIN,
)
def partner_route_opportunistic(ctx: Context, p: DomainPosture) -> Result:
    target = domain_target(p.domain)
    demand = partner_demand(p)
    if demand is None:
        if (why := sts_problem(p)) is not None and p.dane.status not in (
            DaneStatus.VALID,
            DaneStatus.UNVERIFIED,
        ):
            yield CannotJudge(target, why)
        return
    route = route_to(ctx.org, p.domain)
    if isinstance(route, str):
        yield CannotJudge(target, route)
        return
    if route is None:
        return  # no connector sends there: nothing leaves unprotected
    c = route.connector
    if c.ignore_starttls is UNKNOWN or c.require_tls is UNKNOWN or c.dns_routing_enabled is UNKNOWN:
        yield CannotJudge(Target.of(c), "IgnoreSTARTTLS/RequireTLS/DNSRoutingEnabled not in the export")
        return
    if c.require_tls and not c.ignore_starttls:
        return  # EXC-W009 compares its TLS settings with the policy
    secured = domain_secured(ctx.org, c, p.domain)
    if secured is None:
        yield CannotJudge(
            Target.of(c),
            "DomainSecureEnabled/TLSSendDomainSecureList (Get-TransportConfig) not in the export",
        )
        return
    if secured:
        return  # domain security (mutual TLS) already authenticates the partner
    how = "never uses STARTTLS (IgnoreSTARTTLS)" if c.ignore_starttls else "is opportunistic"
    severity = Severity.CRITICAL if c.ignore_starttls else None
    if not c.dns_routing_enabled:
        yield Hit(
            Target.of(c),
            "SmartHosts",
            list(c.smart_hosts) if c.smart_hosts is not UNKNOWN else "unknown",
            f"{p.domain} publishes {demand.kind}; mail to it leaves through smart host(s) on "
            f"{c.identity}, which {how}: whether the policy is honoured depends on that relay.",
            severity=Severity.LOW,
        )
        return
    if not demand.usable:
        yield Hit(
            target,
            "route",
            c.identity,
            f"{p.domain} publishes {demand.kind}, and our route ({c.identity}) {how}. No connector is "
            f"proposed: {demand.note}.",
            severity=severity,
        )
        return
    text = (
        f"{p.domain} publishes {demand.kind} (mx {', '.join(demand.patterns)}), but our route to it "
        f"({c.identity}, {route.space.raw}) {how}: Exchange accepts any certificate and falls back "
        "to plaintext. "
    )
    if route.space.is_internet:
        made = emulating_connector(p.domain, demand, c)
        if isinstance(made, str):
            yield Hit(
                target, "route", c.identity, text + f"No connector proposed: {made}.", severity=severity
            )
            return
        text += (
            f"Proposed: connector {made.command.name!r} with SMTP:{p.domain};{NEW_CONNECTOR_COST}, "
            f"a copy of {c.identity}'s routing (egress, DNS, port, size limit, logging, timeout) with "
            "the partner's TLS; Exchange picks the most specific address space first and the lowest "
            f"cost only among equals, so it wins over {route.space.raw}. "
        )
        if made.unread:
            text += (
                f"Not in the export, so not copied (Exchange's defaults apply; check them against "
                f"{c.identity} before applying): {', '.join(made.unread)}. "
            )
        yield Hit(
            target,
            "route",
            c.identity,
            text + fidelity_text(demand.emulation),
            severity=severity,
            fix=(made.command,),
        )
        return
    if c.domain_secure_enabled:
        yield Hit(
            Target.of(c),
            "DomainSecureEnabled",
            True,
            text + domain_secure_text(p.domain) + fidelity_text(demand.emulation),
            severity=severity,
        )
        return
    fix = settings_fix(c, demand.emulation)
    yield Hit(
        Target.of(c),
        "RequireTLS",
        c.require_tls,
        text + fidelity_text(demand.emulation),
        severity=severity,
        fix=(fix,) if fix is not None else (),
    )


@rule(
    id="EXC-W009",
    title="Scoped send connector's TLS settings do not match the partner's current policy",
    severity=Severity.MEDIUM,
    rationale="""A connector that requires TLS without the name check the partner's MTA-STS policy calls
        for accepts an impostor's certificate; one whose TlsDomain no longer covers the policy's mx
        patterns queues mail (`454 4.7.5`) as soon as the partner's certificate names move outside it.
        A DANE partner (RFC 7672) whose MX certificate no public CA vouches for is fine for DANE
        senders, but a validating connector queues the mail to it. Domain security (mutual TLS)
        already authenticates a partner, and Exchange refuses TlsAuthLevel with DomainSecureEnabled.""",
    references=[RFC8461_4_1, RFC7672_2_2, SET_SEND, SEND_CONNECTORS],
    remediation="""Set-SendConnector -TlsAuthLevel/-TlsDomain to the emulation of the partner's policy;
        for a DANE partner without a publicly trusted certificate, -TlsAuthLevel EncryptionOnly (RequireTLS
        kept): encryption without authentication is the best Exchange Server can do there. None on a
        domain-secured connector.""",
    needs_posture=True,
    each=EACH_PARTNER_DOMAIN,
)
def scoped_connector_mismatch(ctx: Context, p: DomainPosture) -> Result:
    demand = partner_demand(p)
    if demand is None:
        return
    route = route_to(ctx.org, p.domain)
    if not isinstance(route, Route) or route.space.is_internet:
        return
    c = route.connector
    if c.require_tls is not True or c.ignore_starttls is not False or c.dns_routing_enabled is not True:
        return  # not a TLS-requiring MX route: EXC-W008's case
    if c.tls_auth_level is UNKNOWN or c.tls_domain is UNKNOWN or c.domain_secure_enabled is UNKNOWN:
        yield CannotJudge(Target.of(c), "TlsAuthLevel/TlsDomain/DomainSecureEnabled not in the export")
        return
    if not demand.usable:
        yield from _validating_against_dane(p, demand, c)
        return
    if c.domain_secure_enabled:
        secured = domain_secured(ctx.org, c, p.domain)
        if secured is None:
            yield CannotJudge(Target.of(c), "TLSSendDomainSecureList (Get-TransportConfig) not in the export")
        elif not secured:
            yield Hit(
                Target.of(c),
                "DomainSecureEnabled",
                True,
                f"{p.domain} publishes {demand.kind} (mx {', '.join(demand.patterns)}), but this "
                f"connector checks no certificate: domain security applies only to domains in "
                f"TLSSendDomainSecureList. " + domain_secure_text(p.domain) + fidelity_text(demand.emulation),
            )
        return  # listed: domain security (mutual TLS) already authenticates the partner
    emu = demand.emulation
    level = c.tls_auth_level
    if level is TlsAuthLevel.DOMAIN_VALIDATION:
        td = effective_tls_domain(c.tls_domain, p.domain)
        uncovered = [x for x in demand.patterns if not tls_domain_covers_pattern(td, x)]
        if not uncovered:
            return
        outside = mx_names_outside(p, td)
        problem = f"TlsDomain {td} does not cover the partner's mx pattern(s) {', '.join(uncovered)}" + (
            f"; the certificates of {', '.join(outside)} are outside it: mail is queuing now"
            if outside
            else ""
        )
        severity = Severity.HIGH if outside else None
    elif emu.tls_auth_level is TlsAuthLevel.DOMAIN_VALIDATION or level in (
        None,
        TlsAuthLevel.ENCRYPTION_ONLY,
    ):
        shown = level.value if level is not None else "not set"
        problem = f"TlsAuthLevel {shown} checks less than the partner's policy asks for"
        severity = None
    else:
        return  # CertificateValidation already is the best a single TlsDomain allows
    fix = settings_fix(c, emu)
    yield Hit(
        Target.of(c),
        "TlsDomain" if level is TlsAuthLevel.DOMAIN_VALIDATION else "TlsAuthLevel",
        c.tls_domain if level is TlsAuthLevel.DOMAIN_VALIDATION else (level.value if level else None),
        f"{p.domain} publishes {demand.kind} (mx {', '.join(demand.patterns)}): {problem}. "
        + fidelity_text(emu),
        severity=severity,
        fix=(fix,) if fix is not None else (),
    )


def _validating_against_dane(p: DomainPosture, demand: Demand, c: SendConnector) -> Result:
    """A DANE partner whose MX certificate Exchange's chain (and name) check rejects, although DANE-EE
    (RFC 7672 §3.1.1) pins the key and needs neither a public CA nor a current date."""
    level = c.tls_auth_level
    if level is not TlsAuthLevel.DOMAIN_VALIDATION and level is not TlsAuthLevel.CERTIFICATE_VALIDATION:
        return  # encryption without authentication: already the best Exchange Server can do here
    if c.tls_domain is UNKNOWN:
        return  # the caller reports it as not judged
    td = effective_tls_domain(c.tls_domain, p.domain) if level is TlsAuthLevel.DOMAIN_VALIDATION else None
    outside = set(mx_names_outside(p, td)) if td is not None else set()
    rejected: list[str] = []
    unchecked = False
    for name in p.mx.hosts:
        cert = h.certificate if (h := host_facts(p, name)) is not None else None
        if cert is None:
            unchecked = unchecked or h is None or h.probe != ProbeStatus.DONE
            continue
        why = []
        if cert.trusted is False:
            why.append(f"is not publicly trusted (issuer {cert.issuer})")
        if cert.expired is True:
            why.append(f"expired ({cert.not_after})")
        if name in outside:
            why.append(f"names nothing within TlsDomain {td}")
        if why:
            rejected.append(f"the certificate of {name} " + " and ".join(why))
        elif cert.trusted is None or cert.expired is None:
            unchecked = True
    if not rejected:
        if unchecked:
            yield CannotJudge(
                Target.of(c), f"{p.domain} publishes DANE; its MX certificates could not all be checked"
            )
        return
    fix = set_fix(
        "Set-SendConnector",
        c.identity,
        [
            ("RequireTLS", True, c.require_tls),
            ("TlsAuthLevel", TlsAuthLevel.ENCRYPTION_ONLY, level),
            ("TlsDomain", None, c.tls_domain),
        ],
    )
    yield Hit(
        Target.of(c),
        "TlsAuthLevel",
        level.value,
        f"{p.domain} publishes DANE (TLSA in a signed zone), but {'; '.join(rejected)}. DANE-EE pins the "
        f"key and needs no public CA, so DANE senders deliver, while this connector's {level.value} "
        f"rejects it: mail to {p.domain} queues (454 4.7.5). Exchange Server cannot check TLSA records: "
        "proposed TlsAuthLevel EncryptionOnly with RequireTLS kept, encryption without authentication, "
        "the best Exchange Server can do here.",
        severity=Severity.HIGH,
        fix=(fix,) if fix is not None else (),
    )


@rule(
    id="EXC-W010",
    title="Scoped send connector enforces TLS for a partner that no longer publishes a policy",
    severity=Severity.LOW,
    rationale="""A TLS-validating connector made for a partner's MTA-STS policy keeps validating after
        the partner withdraws it; when the partner then moves its MX, our mail to it queues
        (`451 5.7.3` or `454 4.7.5`) while everyone else's is delivered.""",
    references=[RFC8461_5, SET_SEND],
    remediation="""none: ask the partner whether the withdrawal is meant; keep the connector while its MX
        still passes, relax or remove it if not.""",
    needs_posture=True,
    each=EACH_SEND_CONNECTOR,
)
def partner_dropped_policy(ctx: Context, c: SendConnector) -> Result:
    if c.address_spaces is UNKNOWN or c.require_tls is not True or c.dns_routing_enabled is not True:
        return
    level = c.tls_auth_level
    if level is not TlsAuthLevel.DOMAIN_VALIDATION and level is not TlsAuthLevel.CERTIFICATE_VALIDATION:
        return
    for space in c.address_spaces:
        if space.domain is None or is_exo_routing(c, space.domain):
            continue
        p = posture_of(ctx, space.domain)
        if p is None:
            yield CannotJudge(Target.of(c), f"no posture observed for {space.domain}")
            continue
        if (why := sts_problem(p)) is not None:
            yield CannotJudge(Target.of(c), f"{space.domain}: {why}")
            continue
        # An invalid policy is the partner's bug rather than a withdrawal: senders keep their cache.
        if partner_demand(p) is not None or p.mta_sts.status == MtaStsStatus.INVALID:
            continue
        policy = valid_policy(p)
        now = f"mode {policy.mode}" if policy is not None else "no policy"
        text = (
            f"{space.domain} no longer demands authenticated TLS (MTA-STS: {now}; no DANE), but this "
            f"connector still requires {level.value}."
        )
        if level is TlsAuthLevel.DOMAIN_VALIDATION and c.tls_domain is not UNKNOWN:
            td = effective_tls_domain(c.tls_domain, space.domain)
            outside = mx_names_outside(p, td)
            if outside:
                text += f" The certificates of {', '.join(outside)} fall outside TlsDomain {td}: mail queues."
        else:
            outside = []
        yield Hit(
            Target.of(c),
            "TlsAuthLevel",
            level.value,
            text,
            severity=Severity.HIGH if outside else None,
        )


@rule(
    id="EXC-W011",
    title="Exchange Online outbound connector disagrees with the partner's posture",
    severity=Severity.MEDIUM,
    rationale="""Exchange Online honours MTA-STS and DANE on outbound mail unless a connector turns them
        off (MtaStsMode None, SmtpDaneMode None), and a connector's TlsDomain that no longer covers the
        partner's MX names queues the mail.""",
    references=[SET_OUTBOUND, EXO_MTA_STS, EXO_DANE, RFC8461_5],
    remediation="""Set-OutboundConnector -MtaStsMode Opportunistic / -SmtpDaneMode Opportunistic (the
        defaults), or -TlsDomain to the emulation of the partner's policy.""",
    needs_posture=True,
    each=EACH_OUTBOUND_CONNECTOR,
)
def exo_outbound_vs_partner(ctx: Context, c: OutboundConnector) -> Result:
    if c.enabled is False or c.recipient_domains is UNKNOWN:
        return
    if c.use_mx_record is UNKNOWN:
        yield CannotJudge(Target.of(c), "UseMXRecord not in the export")
        return
    if not c.use_mx_record:
        # With smart hosts Exchange Online validates MTA-STS against the smart host's domain.
        if c.smart_hosts is UNKNOWN:
            yield CannotJudge(Target.of(c), "SmartHosts not in the export")
            return
        for domain in dict.fromkeys(d for h in c.smart_hosts if (d := smart_host_domain(h))):
            p = posture_of(ctx, domain)
            if p is not None and not is_ours(ctx.org, domain):
                yield from _exo_checks(c, p, smart_host=True)
        return
    for raw in c.recipient_domains:
        domain = raw.strip().lower().removeprefix("*.").rstrip(".")
        p = posture_of(ctx, domain)
        if p is None or is_ours(ctx.org, domain):
            continue
        yield from _exo_checks(c, p)


def _exo_checks(c: OutboundConnector, p: DomainPosture, *, smart_host: bool = False) -> Result:
    target = Target.of(c)
    policy = enforced_policy(p)
    if policy is None and (why := sts_problem(p)) is not None:
        yield CannotJudge(target, f"{p.domain}: {why}")
    if policy is not None:
        if c.mta_sts_mode is UNKNOWN:
            yield CannotJudge(target, f"{p.domain} enforces MTA-STS; MtaStsMode not in the export")
        elif (c.mta_sts_mode or "").lower() == "none":
            fix = set_fix(
                "Set-OutboundConnector", c.identity, [("MtaStsMode", "Opportunistic", c.mta_sts_mode)]
            )
            yield Hit(
                target,
                "MtaStsMode",
                c.mta_sts_mode,
                f"{p.domain} publishes MTA-STS enforce, but this connector sets MtaStsMode None: Exchange "
                "Online delivers without checking the policy."
                + (
                    f" (With smart hosts Exchange Online checks the smart host's domain, {p.domain}.)"
                    if smart_host
                    else ""
                ),
                fix=(fix,) if fix else (),
            )
    if smart_host:
        return  # the partner's DANE and MX names are not this hop's
    if dane_secure(p):
        if c.smtp_dane_mode is UNKNOWN:
            yield CannotJudge(target, f"{p.domain} publishes DANE; SmtpDaneMode not in the export")
        elif (c.smtp_dane_mode or "").lower() == "none":
            fix = set_fix(
                "Set-OutboundConnector", c.identity, [("SmtpDaneMode", "Opportunistic", c.smtp_dane_mode)]
            )
            yield Hit(
                target,
                "SmtpDaneMode",
                c.smtp_dane_mode,
                f"{p.domain} publishes DANE (TLSA in a signed zone), but this connector sets SmtpDaneMode "
                "None: Exchange Online does not authenticate its MX.",
                fix=(fix,) if fix else (),
            )
    if policy is None or c.tls_settings is UNKNOWN or c.tls_domain is UNKNOWN:
        return
    if c.tls_settings is TlsAuthLevel.DOMAIN_VALIDATION and c.tls_domain:
        uncovered = [x for x in policy.mx if not tls_domain_covers_pattern(c.tls_domain, x)]
        if not uncovered:
            return
        emu = emulate(policy.mx)
        changes: list[tuple[str, PsValue, Maybe[PsValue]]] = [
            ("TlsSettings", emu.tls_auth_level, c.tls_settings),
            ("TlsDomain", emu.tls_domain, c.tls_domain),
        ]
        fix = set_fix("Set-OutboundConnector", c.identity, changes)
        yield Hit(
            target,
            "TlsDomain",
            c.tls_domain,
            f"TlsDomain {c.tls_domain} does not cover {p.domain}'s mx pattern(s) {', '.join(uncovered)}: "
            "mail queues when the partner's certificates carry those names. " + fidelity_text(emu),
            fix=(fix,) if fix else (),
        )


@rule(
    id="EXC-W012",
    title="Exchange Online outbound connector requires DANE of a partner without DNSSEC/DANE",
    severity=Severity.HIGH,
    rationale="""SmtpDaneMode Mandatory makes Exchange Online deliver only over DANE-authenticated TLS;
        towards a domain whose MX has no TLSA records in a DNSSEC-signed zone it cannot, so the mail
        queues for 24 hours and is then dropped with a non-delivery report: mail is lost.""",
    references=[SET_OUTBOUND, EXO_DANE, RFC7672_2_2],
    remediation="Set-OutboundConnector -SmtpDaneMode Opportunistic (the default) for that partner.",
    needs_posture=True,
    each=EACH_OUTBOUND_CONNECTOR,
)
def exo_dane_mandatory(ctx: Context, c: OutboundConnector) -> Result:
    if c.enabled is False or c.recipient_domains is UNKNOWN or c.use_mx_record is False:
        return
    if c.smtp_dane_mode is UNKNOWN or c.use_mx_record is UNKNOWN:
        if c.smtp_dane_mode is not UNKNOWN and (c.smtp_dane_mode or "").lower() == "mandatory":
            yield CannotJudge(Target.of(c), "UseMXRecord not in the export")
        return  # an export without SmtpDaneMode predates it: the default is Opportunistic
    if (c.smtp_dane_mode or "").lower() != "mandatory":
        return
    for raw in c.recipient_domains:
        domain = raw.strip().lower().removeprefix("*.").rstrip(".")
        if domain == "*" or is_ours(ctx.org, domain):
            continue
        p = posture_of(ctx, domain)
        if p is None:
            yield CannotJudge(Target.of(c), f"SmtpDaneMode Mandatory; no posture observed for {domain}")
            continue
        status = p.dane.status
        if status == DaneStatus.ERROR:
            yield CannotJudge(Target.of(c), f"SmtpDaneMode Mandatory; DANE of {domain} could not be observed")
            continue
        if status not in (DaneStatus.INSECURE, DaneStatus.ABSENT):
            continue  # DANE usable, or broken for every DANE sender alike: not this setting's doing
        why = (
            "its zone is not DNSSEC-signed"
            if status == DaneStatus.INSECURE
            else "it publishes no TLSA records"
        )
        if any(e.type == "dane-address-insecure" for h in p.dane.hosts for e in h.errors):
            why = "its MX hosts' address records are not DNSSEC-signed (RFC 7672 §2.2.2), whatever its TLSA"
        fix = set_fix(
            "Set-OutboundConnector", c.identity, [("SmtpDaneMode", "Opportunistic", c.smtp_dane_mode)]
        )
        yield Hit(
            Target.of(c),
            "SmtpDaneMode",
            c.smtp_dane_mode,
            f"SmtpDaneMode Mandatory towards {domain}, but {why} (DANE {status}): Exchange Online "
            "cannot authenticate its MX with DANE, queues the mail for 24 hours and then drops it.",
            fix=(fix,) if fix else (),
        )
