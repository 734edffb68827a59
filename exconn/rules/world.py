"""Cross-check rules (EXC-W…): the organisation's connectors against what domains publish and do.

Inbound rules judge our own domains (the accepted domains that were observed): does the MTA-STS
policy name the real MX hosts, do the receive connectors behind those hosts offer STARTTLS with a
certificate for the MX name, is the mode right, is TLS-RPT there. Outbound rules judge partner
domains (every other observed domain): when a partner demands authenticated TLS (MTA-STS `enforce`,
or DANE), Exchange Server honours neither, so the route to it must be a send connector that
emulates the policy (`exconn.rules.emulation`).

A domain whose posture is missing, or whose needed part could not be observed, is reported as not
judged: missing facts never pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from exconn.fix import Fix, NewCommand, PublishMtaSts
from exconn.model import (
    UNKNOWN,
    AddressSpace,
    AuthMechanism,
    ExchangeCertificate,
    Maybe,
    Organization,
    OutboundConnector,
    ReceiveConnector,
    SendConnector,
    TlsAuthLevel,
)
from exconn.posture.errors import ProbeError
from exconn.posture.facts import DomainPosture, MtaStsPolicy, MxHostFacts
from exconn.pwsh import PsValue
from exconn.rules.base import CannotJudge, Context, Hit, Severity, Target, rule
from exconn.rules.emulation import (
    Emulation,
    Fidelity,
    emulate,
    mtasts_pattern_matches,
    tls_domain_covers_pattern,
    tls_domain_matches,
)
from exconn.rules.helpers import (
    CertVerdict,
    certificates_for_fqdn,
    certificates_of_server,
    expired,
    find_by_name,
    flags_value,
    is_anonymous_smtp,
    set_fix,
    transport_config,
)
from exconn.rules.refs import (
    EXO_DANE,
    EXO_MTA_STS,
    NEW_SEND,
    RFC3207_4,
    RFC7672_2_2,
    RFC8460_3,
    RFC8461_3_1,
    RFC8461_3_2,
    RFC8461_4_1,
    RFC8461_5,
    RFC8461_8_3,
    RFC8461_10_2,
    SEND_CONNECTORS,
    SET_OUTBOUND,
    SET_RECEIVE,
    SET_SEND,
)
from exconn.scope import is_exo_mx, is_exo_routing, is_ours, our_observable_domains

Result = Iterator[Hit | CannotJudge]


# RFC 8461 §3.2 gives no values; these are what the big senders' guidance and our fix use: a day while
# testing (a mistake is corrected quickly), a week once enforced.
MAX_AGE_ENFORCE = 604800
MAX_AGE_TESTING = 86400
# New-SendConnector takes address-space costs from 1 to 100; 1 ties with the lowest possible cost.
NEW_CONNECTOR_COST = 1
CONNECTOR_NAME_MAX = 64


# --- facts access -------------------------------------------------------------------------------


def domain_target(domain: str) -> Target:
    return Target("Domain", domain)


def posture_of(ctx: Context, domain: str) -> DomainPosture | None:
    found = ctx.posture.get(domain)
    return found if isinstance(found, DomainPosture) else None


def _errors(errors: Sequence[ProbeError]) -> str:
    texts = [f"{e.type}: {e.detail}" for e in errors]
    return "; ".join(texts) if texts else "no detail recorded"


def mx_problem(p: DomainPosture) -> str | None:
    """Why the MX set of `p` cannot be judged (None: the hosts are known)."""
    if p.mx.status in ("ok", "implicit") and p.mx.hosts:
        return None
    if p.mx.status == "null":
        return "the domain publishes a null MX (RFC 7505): it receives no mail"
    return f"MX lookup status {p.mx.status} ({_errors(p.mx.errors)})"


def sts_problem(p: DomainPosture) -> str | None:
    """Why we cannot tell whether `p` has an MTA-STS policy (None: we can)."""
    if p.mta_sts.status == "error":
        return f"MTA-STS could not be observed ({_errors(p.mta_sts.errors)})"
    return None


def valid_policy(p: DomainPosture) -> MtaStsPolicy | None:
    return p.mta_sts.policy if p.mta_sts.status == "valid" else None


def enforced_policy(p: DomainPosture) -> MtaStsPolicy | None:
    policy = valid_policy(p)
    return policy if policy is not None and policy.mode == "enforce" else None


def dane_secure(p: DomainPosture) -> bool:
    """Usable TLSA records in a DNSSEC-validated zone for every MX (RFC 7672 §2.2): DANE applies."""
    return p.dane.status in ("valid", "unverified")


@dataclass(frozen=True, slots=True)
class HostVerdict:
    passing: bool | None  # None: the probe did not get far enough to tell
    reason: str


def host_verdict(h: MxHostFacts) -> HostVerdict:
    """Would an MTA-STS-validating sender (RFC 8461 §4) deliver to this MX host?"""
    if h.probe != "done":
        return HostVerdict(None, f"not probed ({h.probe}: {_errors(h.errors)})")
    if h.starttls is False:
        return HostVerdict(False, "STARTTLS not offered")
    if h.tls_established is False:
        return HostVerdict(False, f"TLS handshake failed ({_errors(h.errors)})")
    cert = h.certificate
    if h.starttls is None or h.tls_established is None or cert is None:
        return HostVerdict(None, "the probe did not complete TLS")
    if cert.expired:
        return HostVerdict(False, f"certificate expired ({cert.not_after})")
    if cert.trusted is False:
        return HostVerdict(False, f"certificate not trusted (issuer {cert.issuer})")
    if cert.name_matches is False:
        names = ", ".join(cert.sans) or cert.subject
        return HostVerdict(False, f"certificate does not name {h.host} (it names {names})")
    if cert.expired is None or cert.trusted is None or cert.name_matches is None:
        return HostVerdict(None, "the certificate could not be fully checked")
    return HostVerdict(True, "STARTTLS with a trusted, current certificate for the MX name")


def host_facts(p: DomainPosture, host: str) -> MxHostFacts | None:
    return next((h for h in p.mx_hosts if h.host == host), None)


def all_hosts_pass(p: DomainPosture) -> bool | None:
    """Every MX host passes (True), one fails (False), or some could not be checked (None)."""
    verdicts = [host_verdict(h).passing if (h := host_facts(p, x)) else None for x in p.mx.hosts]
    if any(v is False for v in verdicts):
        return False
    if not verdicts or any(v is None for v in verdicts):
        return None
    return True


# --- the policy we would publish ------------------------------------------------------------------


def mx_pattern_for(host: str) -> str:
    """Exchange Online hosts change within Microsoft's zone: name the zone's label, not the host."""
    host = host.lower().rstrip(".")
    if is_exo_mx(host):
        return "*." + host.split(".", 1)[1]
    return host


@dataclass(frozen=True, slots=True)
class ModeChoice:
    mode: str  # "enforce" | "testing"
    why: str  # a sentence for the DNS README


def mode_choice(ctx: Context, p: DomainPosture, *, tlsrpt_rua: str | None = None) -> ModeChoice:
    """The mode EXC-W003/EXC-W004/EXC-W007 and the DNS fix propose for our domain `p`.

    Testing while an MX fails, by the probe or by EXC-W002's view of the receive connectors behind it
    (the probe reaches one server per MX name). From testing to enforce only when every MX and every
    connector behind it is known to pass, and TLS reports can show it: a valid TLS-RPT record, or
    `tlsrpt_rua` (default: the context's --tlsrpt-rua) for the record the fix writes. An enforced
    policy stays enforced unless an MX fails.
    """
    if tlsrpt_rua is None:
        tlsrpt_rua = ctx.tlsrpt_rua
    failing = [
        f"{h}: {v.reason}"
        for h in p.mx.hosts
        if (f := host_facts(p, h)) is not None and (v := host_verdict(f)).passing is False
    ]
    connectors = connector_failures(ctx, p)
    failing += connectors or []
    if failing:
        return ModeChoice("testing", f"Mode testing until the MX is fixed: {'; '.join(failing)}.")
    policy = valid_policy(p)
    if policy is not None and policy.mode == "enforce":
        return ModeChoice("enforce", "Mode enforce is kept: no MX is known to fail.")
    if policy is None or policy.mode != "testing":
        return ModeChoice("testing", "A new policy starts in mode testing.")
    if all_hosts_pass(p) is not True or connectors is None:
        return ModeChoice(
            "testing",
            "Mode testing: not every MX, or not every receive connector behind it, could be checked.",
        )
    if p.tlsrpt.status != "valid" and tlsrpt_rua is None:
        return ModeChoice(
            "testing",
            "Mode testing although every MX passes: there is no valid TLS-RPT record (and no "
            "--tlsrpt-rua), and enforce is safe only once TLS reports show no failures; without "
            "TLS-RPT nobody sends any. Publish _smtp._tls first.",
        )
    return ModeChoice("enforce", "Mode enforce: every MX and every receive connector behind it passes.")


def proposed_mode(ctx: Context, p: DomainPosture, *, tlsrpt_rua: str | None = None) -> str:
    return mode_choice(ctx, p, tlsrpt_rua=tlsrpt_rua).mode


def proposed_policy(ctx: Context, p: DomainPosture, *, tlsrpt_rua: str | None = None) -> MtaStsPolicy:
    """The policy built from the real MX set (RFC 8461 §3.2), with the mode the findings propose."""
    return _policy_of(p, proposed_mode(ctx, p, tlsrpt_rua=tlsrpt_rua))


def _policy_of(p: DomainPosture, mode: str) -> MtaStsPolicy:
    patterns = sorted(dict.fromkeys(mx_pattern_for(h) for h in p.mx.hosts))
    max_age = MAX_AGE_ENFORCE if mode == "enforce" else MAX_AGE_TESTING
    return MtaStsPolicy(version="STSv1", mode=mode, mx=tuple(patterns), max_age=max_age)


def publication(ctx: Context, p: DomainPosture) -> PublishMtaSts | None:
    """The DNS side of the fix for our domain `p`: the proposed policy (mode from `mode_choice`, so
    every rule proposing it proposes the same one) and what the records to publish need to know.
    None when the MX set is not known: no policy can be built from it."""
    if mx_problem(p) is not None:
        return None
    choice = mode_choice(ctx, p)
    policy = _policy_of(p, choice.mode)
    current = valid_policy(p)
    return PublishMtaSts(
        domain=p.domain,
        mode=policy.mode,
        mx=policy.mx,
        max_age=policy.max_age,
        why=choice.why,
        tlsrpt_rua=ctx.tlsrpt_rua,
        published_rua=tuple(p.tlsrpt.rua) if p.tlsrpt.status == "valid" else None,
        sts_status=p.mta_sts.status,
        record_exists=(
            True if p.mta_sts.record is not None else False if p.mta_sts.status == "absent" else None
        ),
        current_mode=current.mode if current is not None else None,
        current_max_age=current.max_age if current is not None else None,
        current_id=p.mta_sts.id if current is not None else None,
    )


def _publish(ctx: Context, p: DomainPosture) -> tuple[Fix, ...]:
    found = publication(ctx, p)
    return (found,) if found is not None else ()


def _same_policy(a: MtaStsPolicy, b: MtaStsPolicy) -> bool:
    return (
        a.mode == b.mode
        and a.max_age == b.max_age
        and sorted(m.lower() for m in a.mx) == sorted(m.lower() for m in b.mx)
    )


# --- our domains: the iteration every inbound rule shares -----------------------------------------


def _our_postures(ctx: Context) -> Iterator[DomainPosture | CannotJudge]:
    """Our observed domains; a CannotJudge for each accepted domain that should have been observed."""
    names = our_observable_domains(ctx.org)
    for name in names:
        p = posture_of(ctx, name)
        if p is None:
            yield CannotJudge(domain_target(name), "no posture observed for this accepted domain")
        else:
            yield p
    # Domains named by --domains that are accepted but not Authoritative (e.g. InternalRelay).
    for domain in sorted(ctx.posture):
        if domain not in names and is_ours(ctx.org, domain):
            p = posture_of(ctx, domain)
            if p is not None:
                yield p


# --- inbound rules --------------------------------------------------------------------------------


@rule(
    id="EXC-W001",
    title="MTA-STS policy does not cover every MX host",
    severity=Severity.HIGH,
    rationale="""RFC 8461 §4.1: a sender applying the policy delivers only to MX hosts that match one of
        its mx patterns (`*.` stands for exactly one label). With mode enforce, Google, Microsoft, Yahoo
        and other MTA-STS senders refuse to deliver to an MX the policy does not name.""",
    references=[RFC8461_4_1, RFC8461_3_2],
    remediation="""DNS side: publish dns/<domain>/mta-sts.txt (built from the real MX set) and then the
        new id in records.txt, both written by --fix-out.""",
    needs_posture=True,
)
def policy_covers_mx(ctx: Context) -> Result:
    for p in _our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        target = domain_target(p.domain)
        if (why := sts_problem(p) or mx_problem(p)) is not None:
            if p.mx.status != "null":
                yield CannotJudge(target, why)
            continue
        policy = valid_policy(p)
        if policy is None or policy.mode == "none":
            continue
        # Exchange Online MX hosts are judged by EXC-W002, which says what Microsoft's side needs.
        uncovered = [
            h
            for h in p.mx.hosts
            if not is_exo_mx(h) and not any(mtasts_pattern_matches(pat, h) for pat in policy.mx)
        ]
        stale = [pat for pat in policy.mx if not any(mtasts_pattern_matches(pat, h) for h in p.mx.hosts)]
        if not uncovered:
            continue
        enforce = policy.mode == "enforce"
        consequence = (
            "senders that enforce MTA-STS will not deliver to "
            if enforce
            else "mode testing: senders deliver anyway but report failures for "
        )
        text = (
            f"MX host(s) {', '.join(uncovered)} match no mx pattern of the policy ({', '.join(policy.mx)}): "
        )
        text += consequence + ("them" if len(uncovered) > 1 else "it") + "."
        if stale:
            text += f" Pattern(s) matching no current MX: {', '.join(stale)}."
        yield Hit(
            target,
            "mta-sts.mx",
            list(policy.mx),
            text,
            severity=Severity.HIGH if enforce else Severity.MEDIUM,
            fix=_publish(ctx, p),
        )


def _connector_certificates(
    org: Organization, c: ReceiveConnector, host: str
) -> tuple[list[ExchangeCertificate], str] | None:
    """The certificates the connector would present, and what selected them; None: cannot tell."""
    certs = certificates_of_server(org, c.server)
    if certs is None or c.tls_certificate_name is UNKNOWN:
        return None
    if c.tls_certificate_name is not None:
        found = find_by_name(certs, c.tls_certificate_name)
        if found.verdict is CertVerdict.CANNOT_TELL:
            return None
        return list(found.certificates), f"TlsCertificateName {c.tls_certificate_name.raw}"
    if c.fqdn is UNKNOWN:
        return None
    fqdn = c.fqdn or host
    sure, maybe = certificates_for_fqdn(certs, fqdn)
    if maybe and not sure:
        return None
    return sure, f"the SMTP certificate matching Fqdn {fqdn}"


def _serves(org: Organization, c: ReceiveConnector, host: str) -> bool | None:
    """Does this connector answer for MX `host`: Fqdn equal, or its certificate names the host?"""
    anonymous = is_anonymous_smtp(c)
    if anonymous is None or c.enabled is UNKNOWN or c.fqdn is UNKNOWN:
        return None
    if not anonymous or c.enabled is False:
        return False
    if c.fqdn is not None and c.fqdn.lower().rstrip(".") == host:
        return True
    if c.tls_certificate_name is UNKNOWN or c.tls_certificate_name is None:
        return False
    selected = _connector_certificates(org, c, host)
    if selected is None:
        return None
    sure, _ = certificates_for_fqdn(selected[0], host)
    return bool(sure)


def _replacement(org: Organization, c: ReceiveConnector, host: str, ctx: Context) -> Fix | None:
    """Set-ReceiveConnector -TlsCertificateName naming a current SMTP certificate for `host` on the
    connector's server, when the export has one and the connector names another."""
    if c.tls_certificate_name is UNKNOWN or c.tls_certificate_name is None:
        return None
    certs = certificates_of_server(org, c.server) or ()
    sure, _ = certificates_for_fqdn(certs, host)
    good = [x for x in sure if expired(x, ctx.now) is False and x.subject is not UNKNOWN]
    if not good:
        return None
    best = max(good, key=lambda x: x.not_after if x.not_after is not UNKNOWN else ctx.now)
    assert best.subject is not UNKNOWN
    name = f"<I>{best.issuer}<S>{best.subject}" if best.issuer is not UNKNOWN else best.subject
    return set_fix(
        "Set-ReceiveConnector", c.identity, [("TlsCertificateName", name, c.tls_certificate_name.raw)]
    )


@dataclass(frozen=True, slots=True)
class ConnectorProblems:
    starttls_off: bool  # AuthMechanism lacks Tls
    certificate: str | None  # what is wrong with the certificate it presents
    fixes: tuple[Fix, ...]

    def describe(self) -> list[str]:
        texts = ["AuthMechanism lacks Tls, so STARTTLS is never offered"] if self.starttls_off else []
        return texts + ([self.certificate] if self.certificate else [])


def _connector_problems(ctx: Context, c: ReceiveConnector, host: str) -> ConnectorProblems | CannotJudge:
    if c.auth_mechanism is UNKNOWN:
        return CannotJudge(Target.of(c), "AuthMechanism not in the export")
    selected = _connector_certificates(ctx.org, c, host)
    if selected is None:
        return CannotJudge(
            Target.of(c), "the certificate this connector presents cannot be told from the export"
        )
    fixes: list[Fix] = []
    starttls_off = not c.auth_mechanism & AuthMechanism.TLS
    if starttls_off:
        mech = c.auth_mechanism
        fix = set_fix(
            "Set-ReceiveConnector",
            c.identity,
            [("AuthMechanism", flags_value(mech | AuthMechanism.TLS), flags_value(mech))],
        )
        fixes += [fix] if fix is not None else []
    certs, how = selected
    current = [x for x in certs if expired(x, ctx.now) is False]
    problem: str | None = None
    if not certs:
        problem = f"{how} selects no exported certificate: Exchange offers no STARTTLS without one"
    elif not current:
        problem = f"{how} selects only expired certificates, which senders that validate refuse"
    elif not certificates_for_fqdn(current, host)[0]:
        problem = f"{how} selects a certificate that does not name {host}"
    if problem is not None and (better := _replacement(ctx.org, c, host, ctx)) is not None:
        fixes.append(better)
    return ConnectorProblems(starttls_off, problem, tuple(fixes))


def _serving_connectors(
    org: Organization, host: str
) -> tuple[list[ReceiveConnector], list[ReceiveConnector]]:
    """The receive connectors that answer as MX `host`, and those that cannot be told either way."""
    serving: list[ReceiveConnector] = []
    undecided: list[ReceiveConnector] = []
    for c in org.receive_connectors:
        serves = _serves(org, c, host)
        if serves is None:
            undecided.append(c)
        elif serves:
            serving.append(c)
    return serving, undecided


def connector_failures(ctx: Context, p: DomainPosture) -> list[str] | None:
    """EXC-W002's judgement of the receive connectors behind `p`'s Exchange MX hosts, as lines
    "host: connector: problem" ([]: none found). None: a connector that answers (or may answer) for
    an MX cannot be judged from the export.

    The probe reaches one server per MX name; the export shows every server behind it, so a policy
    must not go to enforce while one of them would fail TLS (missing facts never pass).
    """
    failures: list[str] = []
    unknown = False
    for host in p.mx.hosts:
        if is_exo_mx(host):
            continue  # Microsoft's TLS, not our connectors'
        serving, undecided = _serving_connectors(ctx.org, host)
        unknown = unknown or bool(undecided)
        for c in serving:
            found = _connector_problems(ctx, c, host)
            if isinstance(found, CannotJudge):
                unknown = True
            elif problems := found.describe():
                failures.append(f"{host}: {c.identity}: " + "; ".join(problems))
    if failures:
        return failures
    return None if unknown else []


@rule(
    id="EXC-W002",
    title="MX host served by receive connectors without STARTTLS or a valid certificate for its name",
    severity=Severity.HIGH,
    rationale="""Senders applying MTA-STS (RFC 8461 §4) or DANE deliver only over TLS with a current
        certificate that names the MX host. Exchange offers STARTTLS only when AuthMechanism has Tls
        and a current certificate is found; for an Exchange Online MX the TLS is Microsoft's, and only
        the policy's mx patterns are ours to get right.""",
    references=[RFC8461_4_1, RFC3207_4, SET_RECEIVE, EXO_MTA_STS],
    remediation="""Add Tls to AuthMechanism, or point TlsCertificateName at a current SMTP certificate
        naming the MX host (when the export has one); otherwise enrol such a certificate.""",
    needs_posture=True,
)
def mx_served_with_tls(ctx: Context) -> Result:
    # Several of our domains often share one MX: judge each host once, naming every domain.
    shared: dict[str, list[DomainPosture]] = {}
    for p in _our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        if (why := mx_problem(p)) is not None:
            if p.mx.status != "null":
                yield CannotJudge(domain_target(p.domain), why)
            continue
        policy = valid_policy(p)
        for host in p.mx.hosts:
            if is_exo_mx(host):
                yield from _exo_mx(p, host, policy)
            else:
                shared.setdefault(host, []).append(p)
    for host, postures in shared.items():
        yield from _exchange_mx(ctx, postures, host)


def _exo_mx(p: DomainPosture, host: str, policy: MtaStsPolicy | None) -> Result:
    if policy is None or policy.mode == "none":
        return
    if any(mtasts_pattern_matches(pat, host) for pat in policy.mx):
        return
    yield Hit(
        domain_target(p.domain),
        "mta-sts.mx",
        list(policy.mx),
        f"MX {host} is Exchange Online: inbound TLS there is Microsoft's, not your receive "
        f"connectors'. The policy's mx patterns ({', '.join(policy.mx)}) do not cover it; add "
        f"`mx: {mx_pattern_for(host)}`.",
        severity=Severity.HIGH if policy.mode == "enforce" else Severity.MEDIUM,
    )


def _exchange_mx(ctx: Context, postures: list[DomainPosture], host: str) -> Result:
    """`host` is an MX of every domain in `postures`; its TLS facts come from the first probe that ran."""
    verdicts = [host_verdict(f) for p in postures if (f := host_facts(p, host)) is not None]
    verdict = next((v for v in verdicts if v.passing is not None), HostVerdict(None, "not probed"))
    enforce = any((pol := valid_policy(p)) is not None and pol.mode == "enforce" for p in postures)
    severity = Severity.HIGH if enforce else Severity.MEDIUM
    domains = ", ".join(p.domain for p in postures)
    serving, undecided = _serving_connectors(ctx.org, host)
    explained = False
    for c in serving:
        found = _connector_problems(ctx, c, host)
        if isinstance(found, CannotJudge):
            yield found
            continue
        problems = found.describe()
        if not problems:
            continue
        explained = True
        seen = f" The probe saw: {verdict.reason}." if verdict.passing is False else ""
        yield Hit(
            Target.of(c),
            "AuthMechanism" if found.starttls_off else "TlsCertificateName",
            "; ".join(problems),
            f"Connector answers as MX {host} of {domains}: " + "; ".join(problems) + "." + seen,
            severity=severity,
            fix=found.fixes,
        )
    if verdict.passing is False and not explained:
        who = (
            "no exported receive connector explains it (a gateway or load balancer in front of Exchange?)"
            if not serving
            else "the serving connectors look right in the export (changed since, or another server answers?)"
        )
        for p in postures:
            yield Hit(
                domain_target(p.domain),
                "mx_hosts",
                host,
                f"MX {host}: {verdict.reason}; {who}.",
                severity=severity,
            )
    elif verdict.passing is None and not serving:
        reason = f"MX {host}: {verdict.reason}, and no exported receive connector answers for it"
        if undecided:
            reason += " (" + ", ".join(c.identity for c in undecided) + " could not be matched)"
        for p in postures:
            yield CannotJudge(domain_target(p.domain), reason)


@rule(
    id="EXC-W003",
    title="MTA-STS in mode testing although every MX passes",
    severity=Severity.LOW,
    rationale="""In mode testing (RFC 8461 §5) senders report failures but still deliver over plaintext
        or to an impostor, so the policy protects nothing yet. Once every MX (and every receive
        connector behind it) passes and the TLS reports (RFC 8460: a TLS-RPT record is needed) show no
        failures, enforce makes the protection real.""",
    references=[RFC8461_5, RFC8460_3],
    remediation="""DNS side: publish the enforce policy from dns/<domain>/mta-sts.txt, then the new id
        from records.txt (and the `_smtp._tls` record there first, if it is not published yet).""",
    needs_posture=True,
)
def testing_ready_for_enforce(ctx: Context) -> Result:
    for p in _our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        policy = valid_policy(p)
        if policy is None or policy.mode != "testing":
            continue
        target = domain_target(p.domain)
        if (why := mx_problem(p)) is not None:
            yield CannotJudge(target, why)
            continue
        verdict = all_hosts_pass(p)
        if verdict is None:
            yield CannotJudge(target, "not every MX host could be probed, so we cannot say all pass")
            continue
        if not verdict or not all(any(mtasts_pattern_matches(x, h) for x in policy.mx) for h in p.mx.hosts):
            continue
        # The probe reached one server per MX name; EXC-W002 judges every connector behind it.
        connectors = connector_failures(ctx, p)
        if connectors is None:
            yield CannotJudge(
                target, "a receive connector that answers (or may answer) for an MX cannot be judged"
            )
            continue
        if connectors or (p.tlsrpt.status != "valid" and ctx.tlsrpt_rua is None):
            continue  # EXC-W002 / EXC-W005 say what must come first
        first = (
            f" Publish _smtp._tls.{p.domain} (records.txt, rua {ctx.tlsrpt_rua}) first."
            if p.tlsrpt.status != "valid"
            else ""
        )
        yield Hit(
            target,
            "mta-sts.mode",
            policy.mode,
            f"Every MX ({', '.join(p.mx.hosts)}) offers STARTTLS with a trusted certificate for its "
            "name, so do the receive connectors behind it, and the policy matches: switch to mode "
            f"enforce (max_age {MAX_AGE_ENFORCE}) once the TLS reports for a couple of weeks show no "
            "failures." + first,
            fix=_publish(ctx, p),
        )


@rule(
    id="EXC-W004",
    title="MTA-STS in mode enforce with an MX host that fails TLS",
    severity=Severity.HIGH,
    rationale="""With mode enforce (RFC 8461 §5) a sender must not deliver to an MX that fails STARTTLS or
        certificate validation (seen by the probe, or by EXC-W002 on a receive connector behind the
        MX); if every MX fails, mail to the domain is deferred and then bounced.
        Until the MX is fixed, mode testing keeps mail flowing while the TLS reports show the failure.""",
    references=[RFC8461_5, RFC8461_8_3],
    remediation="""DNS side: publish the testing policy from dns/<domain>/mta-sts.txt and then the new id
        (senders keep the enforce policy cached until they see a new id); go back to enforce when the
        MX passes.""",
    needs_posture=True,
)
def enforce_with_failing_mx(ctx: Context) -> Result:
    for p in _our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        policy = enforced_policy(p)
        if policy is None:
            continue
        target = domain_target(p.domain)
        if (why := mx_problem(p)) is not None:
            yield CannotJudge(target, why)
            continue
        failing = []
        for host in p.mx.hosts:
            facts = host_facts(p, host)
            verdict = host_verdict(facts) if facts is not None else HostVerdict(None, "not probed")
            if verdict.passing is False:
                failing.append(f"{host}: {verdict.reason}")
        # Every MX answering by the probe does not make a failing server behind it pass (EXC-W002).
        everything = bool(failing) and len(failing) == len(p.mx.hosts)
        failing += connector_failures(ctx, p) or []
        if failing:
            yield Hit(
                target,
                "mta-sts.mode",
                policy.mode,
                "Mode enforce, but "
                + "; ".join(failing)
                + ". "
                + ("No MX passes: MTA-STS senders cannot deliver at all. " if everything else "")
                + "Publish mode testing until the MX is fixed.",
                severity=Severity.CRITICAL if everything else None,
                fix=_publish(ctx, p),
            )
        elif all_hosts_pass(p) is None:
            yield CannotJudge(target, "not every MX host could be probed")


@rule(
    id="EXC-W005",
    title="MTA-STS without a TLS-RPT record",
    severity=Severity.LOW,
    rationale="""Without TLS-RPT (RFC 8460) no sender tells you when TLS to your MX fails, so a broken
        certificate or a policy mistake stays invisible until mail bounces. It is one TXT record.""",
    references=[RFC8460_3, RFC8461_10_2],
    remediation="""DNS side: publish the `_smtp._tls` TXT record from dns/<domain>/records.txt (rua from
        --tlsrpt-rua).""",
    needs_posture=True,
)
def mta_sts_without_tlsrpt(ctx: Context) -> Result:
    for p in _our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        if valid_policy(p) is None:
            continue
        target = domain_target(p.domain)
        if p.tlsrpt.status == "error":
            yield CannotJudge(target, f"TLS-RPT could not be observed ({_errors(p.tlsrpt.errors)})")
            continue
        if p.tlsrpt.status == "valid":
            continue
        detail = "no _smtp._tls record" if p.tlsrpt.status == "absent" else _errors(p.tlsrpt.errors)
        text = (
            f"MTA-STS is published but TLS-RPT is {p.tlsrpt.status} ({detail}): nobody reports TLS "
            f"failures to you. Publish _smtp._tls.{p.domain} (see records.txt)."
        )
        if (policy := valid_policy(p)) is not None and policy.mode == "testing":
            text += (
                " Until then (or until --fix-out is given --tlsrpt-rua) the proposed policy stays in "
                "mode testing: enforce is safe only once TLS reports show no failures."
            )
        yield Hit(target, "tlsrpt", p.tlsrpt.status, text, fix=_publish(ctx, p))


@rule(
    id="EXC-W006",
    title="Our domain publishes no valid MTA-STS policy",
    severity=Severity.MEDIUM,
    rationale="""Without MTA-STS (or DANE) a sender cannot know that your MX supports TLS, so an attacker on
        the path can strip STARTTLS or answer as your MX. Publishing a policy in mode testing costs a
        web file and a TXT record and breaks nothing.""",
    references=[RFC8461_3_1, RFC8461_3_2, EXO_MTA_STS],
    remediation="""DNS side: publish dns/<domain>/mta-sts.txt at
        https://mta-sts.<domain>/.well-known/mta-sts.txt, then the records in records.txt.""",
    needs_posture=True,
)
def no_mta_sts(ctx: Context) -> Result:
    for p in _our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        target = domain_target(p.domain)
        if p.mx.status == "null":
            continue
        if (why := sts_problem(p)) is not None:
            yield CannotJudge(target, why)
            continue
        if p.mta_sts.status == "valid" and p.mta_sts.policy is not None and p.mta_sts.policy.mode != "none":
            continue
        if dane_secure(p):
            continue  # DANE already tells senders to require authenticated TLS
        if p.mta_sts.status == "absent":
            text = "No _mta-sts TXT record"
        elif p.mta_sts.status == "valid":
            text = "The policy's mode is none (it withdraws MTA-STS)"
        else:
            text = f"The MTA-STS policy is invalid ({_errors(p.mta_sts.errors)}), so senders ignore it"
        yield Hit(
            target,
            "mta_sts",
            p.mta_sts.status,
            text + ": senders fall back to opportunistic TLS, which an attacker on the path can strip. "
            "Publish the policy in dns/" + p.domain + "/ (mode testing first).",
            fix=_publish(ctx, p),
        )


@rule(
    id="EXC-W007",
    title="Served MTA-STS policy differs from the one the MX set calls for",
    severity=Severity.LOW,
    rationale="""Senders cache a policy for max_age seconds and fetch it again only when the `id` in the
        `_mta-sts` TXT record changes (RFC 8461 §3.1, §5.1); a policy file edited without a new id stays
        unseen by every sender that cached the old one.""",
    references=[RFC8461_3_1, RFC8461_8_3],
    remediation="""DNS side: publish dns/<domain>/mta-sts.txt first, then the `_mta-sts` TXT record with
        the fresh id from records.txt (replace the old record, do not add a second one).""",
    needs_posture=True,
)
def policy_out_of_date(ctx: Context) -> Result:
    for p in _our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        current = valid_policy(p)
        if current is None:
            continue
        target = domain_target(p.domain)
        if (why := mx_problem(p)) is not None:
            yield CannotJudge(target, why)
            continue
        wanted = proposed_policy(ctx, p)
        if _same_policy(current, wanted):
            continue
        changes = []
        if current.mode != wanted.mode:
            changes.append(f"mode {current.mode} -> {wanted.mode}")
        if sorted(current.mx) != sorted(wanted.mx):
            changes.append(f"mx {', '.join(current.mx)} -> {', '.join(wanted.mx)}")
        if current.max_age != wanted.max_age:
            changes.append(f"max_age {current.max_age} -> {wanted.max_age}")
        yield Hit(
            target,
            "mta-sts.id",
            p.mta_sts.id,
            f"The policy should change ({'; '.join(changes)}). Senders that cached the current one "
            f"(id {p.mta_sts.id}) keep it for up to {current.max_age} s unless the id changes: publish "
            "the new file, then the new id.",
            fix=_publish(ctx, p),
        )


# --- outbound: routing ----------------------------------------------------------------------------


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
    address = space.address.strip().lower().rstrip(".")
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


def _partner_postures(ctx: Context) -> Iterator[DomainPosture]:
    for domain in sorted(ctx.posture):
        p = posture_of(ctx, domain)
        if p is not None and not is_ours(ctx.org, domain):
            yield p


def _fidelity_text(emu: Emulation) -> str:
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


def emulating_connector(partner: str, demand: Demand, internet: SendConnector) -> NewCommand | str:
    """`New-SendConnector` for `partner` modelled on the internet connector; a str says why not."""
    if internet.source_transport_servers is UNKNOWN or not internet.source_transport_servers:
        return f"the SourceTransportServers of {internet.identity} are not in the export"
    emu = demand.emulation
    params: list[tuple[str, PsValue]] = [
        ("AddressSpaces", [f"SMTP:{partner};{NEW_CONNECTOR_COST}"]),
        # Internet, like the connector it takes over from for this domain: same header handling.
        ("Usage", "Internet"),
        ("DNSRoutingEnabled", True),
        ("SourceTransportServers", list(internet.source_transport_servers)),
    ]
    if internet.fqdn is not UNKNOWN and internet.fqdn:
        params.append(("Fqdn", internet.fqdn))
    if internet.tls_certificate_name is not UNKNOWN and internet.tls_certificate_name is not None:
        params.append(("TlsCertificateName", internet.tls_certificate_name.raw))
    params += [("RequireTLS", True), ("TlsAuthLevel", emu.tls_auth_level)]
    if emu.tls_domain is not None:
        params.append(("TlsDomain", emu.tls_domain))
    params.append(("Comment", f"exconn: emulates the {demand.kind} policy of {partner}"))
    return NewCommand("New-SendConnector", connector_name(partner), tuple(params))


def _settings_fix(c: SendConnector, emu: Emulation) -> Fix | None:
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
    return domain in {d.lower().rstrip(".") for d in config.tls_send_domain_secure_list}


def _domain_secure_text(domain: str) -> str:
    return (
        "No Set-SendConnector is proposed: the connector has DomainSecureEnabled $true, and Exchange "
        "refuses TlsAuthLevel with it. Domain security (mutual TLS) authenticates the partner once "
        f"{domain} is in TLSSendDomainSecureList (agree it with the partner; see EXC-S009); or turn "
        "DomainSecureEnabled off and require TLS with the emulation: "
    )


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
)
def partner_route_opportunistic(ctx: Context) -> Result:
    for p in _partner_postures(ctx):
        target = domain_target(p.domain)
        demand = partner_demand(p)
        if demand is None:
            if (why := sts_problem(p)) is not None and p.dane.status not in ("valid", "unverified"):
                yield CannotJudge(target, why)
            continue
        route = route_to(ctx.org, p.domain)
        if isinstance(route, str):
            yield CannotJudge(target, route)
            continue
        if route is None:
            continue  # no connector sends there: nothing leaves unprotected
        c = route.connector
        if c.ignore_starttls is UNKNOWN or c.require_tls is UNKNOWN or c.dns_routing_enabled is UNKNOWN:
            yield CannotJudge(Target.of(c), "IgnoreSTARTTLS/RequireTLS/DNSRoutingEnabled not in the export")
            continue
        if c.require_tls and not c.ignore_starttls:
            continue  # EXC-W009 compares its TLS settings with the policy
        secured = domain_secured(ctx.org, c, p.domain)
        if secured is None:
            yield CannotJudge(
                Target.of(c),
                "DomainSecureEnabled/TLSSendDomainSecureList (Get-TransportConfig) not in the export",
            )
            continue
        if secured:
            continue  # domain security (mutual TLS) already authenticates the partner
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
            continue
        if not demand.usable:
            yield Hit(
                target,
                "route",
                c.identity,
                f"{p.domain} publishes {demand.kind}, and our route ({c.identity}) {how}. No connector is "
                f"proposed: {demand.note}.",
                severity=severity,
            )
            continue
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
                continue
            text += (
                f"Proposed: connector {made.name!r} with SMTP:{p.domain};{NEW_CONNECTOR_COST}; "
                "Exchange picks the most specific address space first and the lowest cost only "
                f"among equals, so it wins over {route.space.raw}. "
            )
            yield Hit(
                target,
                "route",
                c.identity,
                text + _fidelity_text(demand.emulation),
                severity=severity,
                fix=(made,),
            )
            continue
        if c.domain_secure_enabled:
            yield Hit(
                Target.of(c),
                "DomainSecureEnabled",
                True,
                text + _domain_secure_text(p.domain) + _fidelity_text(demand.emulation),
                severity=severity,
            )
            continue
        fix = _settings_fix(c, demand.emulation)
        yield Hit(
            Target.of(c),
            "RequireTLS",
            c.require_tls,
            text + _fidelity_text(demand.emulation),
            severity=severity,
            fix=(fix,) if fix is not None else (),
        )


def _effective_tls_domain(tls_domain: str | None, partner: str) -> str:
    # DomainValidation with an empty TlsDomain checks the next-hop domain or `*.` + it.
    return tls_domain or f"*.{partner}"


def _mx_names_outside(p: DomainPosture, tls_domain: str) -> list[str]:
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
)
def scoped_connector_mismatch(ctx: Context) -> Result:
    for p in _partner_postures(ctx):
        demand = partner_demand(p)
        if demand is None:
            continue
        route = route_to(ctx.org, p.domain)
        if not isinstance(route, Route) or route.space.is_internet:
            continue
        c = route.connector
        if c.require_tls is not True or c.ignore_starttls is not False or c.dns_routing_enabled is not True:
            continue  # not a TLS-requiring MX route: EXC-W008's case
        if c.tls_auth_level is UNKNOWN or c.tls_domain is UNKNOWN or c.domain_secure_enabled is UNKNOWN:
            yield CannotJudge(Target.of(c), "TlsAuthLevel/TlsDomain/DomainSecureEnabled not in the export")
            continue
        if not demand.usable:
            yield from _validating_against_dane(p, demand, c)
            continue
        if c.domain_secure_enabled:
            secured = domain_secured(ctx.org, c, p.domain)
            if secured is None:
                yield CannotJudge(
                    Target.of(c), "TLSSendDomainSecureList (Get-TransportConfig) not in the export"
                )
            elif not secured:
                yield Hit(
                    Target.of(c),
                    "DomainSecureEnabled",
                    True,
                    f"{p.domain} publishes {demand.kind} (mx {', '.join(demand.patterns)}), but this "
                    f"connector checks no certificate: domain security applies only to domains in "
                    f"TLSSendDomainSecureList. "
                    + _domain_secure_text(p.domain)
                    + _fidelity_text(demand.emulation),
                )
            continue  # listed: domain security (mutual TLS) already authenticates the partner
        emu = demand.emulation
        level = c.tls_auth_level
        if level is TlsAuthLevel.DOMAIN_VALIDATION:
            td = _effective_tls_domain(c.tls_domain, p.domain)
            uncovered = [x for x in demand.patterns if not tls_domain_covers_pattern(td, x)]
            if not uncovered:
                continue
            outside = _mx_names_outside(p, td)
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
            continue  # CertificateValidation already is the best a single TlsDomain allows
        fix = _settings_fix(c, emu)
        yield Hit(
            Target.of(c),
            "TlsDomain" if level is TlsAuthLevel.DOMAIN_VALIDATION else "TlsAuthLevel",
            c.tls_domain if level is TlsAuthLevel.DOMAIN_VALIDATION else (level.value if level else None),
            f"{p.domain} publishes {demand.kind} (mx {', '.join(demand.patterns)}): {problem}. "
            + _fidelity_text(emu),
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
    td = _effective_tls_domain(c.tls_domain, p.domain) if level is TlsAuthLevel.DOMAIN_VALIDATION else None
    outside = set(_mx_names_outside(p, td)) if td is not None else set()
    rejected: list[str] = []
    unchecked = False
    for name in p.mx.hosts:
        cert = h.certificate if (h := host_facts(p, name)) is not None else None
        if cert is None:
            unchecked = unchecked or h is None or h.probe != "done"
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
)
def partner_dropped_policy(ctx: Context) -> Result:
    for c in ctx.org.send_connectors:
        if c.address_spaces is UNKNOWN or c.require_tls is not True or c.dns_routing_enabled is not True:
            continue
        level = c.tls_auth_level
        if level is not TlsAuthLevel.DOMAIN_VALIDATION and level is not TlsAuthLevel.CERTIFICATE_VALIDATION:
            continue
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
            if partner_demand(p) is not None or p.mta_sts.status == "invalid":
                continue
            policy = valid_policy(p)
            now = f"mode {policy.mode}" if policy is not None else "no policy"
            text = (
                f"{space.domain} no longer demands authenticated TLS (MTA-STS: {now}; no DANE), but this "
                f"connector still requires {level.value}."
            )
            if level is TlsAuthLevel.DOMAIN_VALIDATION and c.tls_domain is not UNKNOWN:
                td = _effective_tls_domain(c.tls_domain, space.domain)
                outside = _mx_names_outside(p, td)
                if outside:
                    text += (
                        f" The certificates of {', '.join(outside)} fall outside TlsDomain {td}: mail queues."
                    )
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
)
def exo_outbound_vs_partner(ctx: Context) -> Result:
    for c in ctx.org.outbound_connectors:
        if c.enabled is False or c.recipient_domains is UNKNOWN:
            continue
        for raw in c.recipient_domains:
            domain = raw.strip().lower().removeprefix("*.").rstrip(".")
            p = posture_of(ctx, domain)
            if p is None or is_ours(ctx.org, domain):
                continue
            yield from _exo_checks(c, p)


def _exo_checks(c: OutboundConnector, p: DomainPosture) -> Result:
    target = Target.of(c)
    if c.use_mx_record is UNKNOWN:
        yield CannotJudge(target, "UseMXRecord not in the export")
        return
    if not c.use_mx_record:
        return  # smart hosts: the partner's MX policy does not apply to this hop
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
                "Online delivers without checking the policy.",
                fix=(fix,) if fix else (),
            )
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
            "mail queues when the partner's certificates carry those names. " + _fidelity_text(emu),
            fix=(fix,) if fix else (),
        )
