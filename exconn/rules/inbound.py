"""Inbound cross-check rules (EXC-W001..W007): our own domains against what they publish and do.

They judge our accepted domains that were observed: does the MTA-STS policy name the real MX hosts,
do the receive connectors behind those hosts offer STARTTLS with a certificate for the MX name, is
the mode right, is TLS-RPT there. A domain whose posture is missing, or whose needed part could not
be observed, is reported as not judged: missing facts never pass.
"""

from __future__ import annotations

from collections.abc import Iterator

from exconn.names import wildcard_matches
from exconn.posture.facts import DomainPosture, MtaStsPolicy, MtaStsStatus, MxStatus, TlsRptStatus
from exconn.rules.base import CannotJudge, Context, Hit, Severity, Target, rule
from exconn.rules.evidence_view import report_failures
from exconn.rules.mx import connector_failures, connector_problems, serving_connectors
from exconn.rules.policy import MAX_AGE_ENFORCE, mx_pattern_for, proposed_policy, publish_fix, same_policy
from exconn.rules.posture_view import (
    EACH_OUR_DOMAIN,
    HostVerdict,
    all_hosts_pass,
    dane_secure,
    domain_target,
    enforced_policy,
    errors_text,
    host_facts,
    host_verdict,
    mx_problem,
    our_postures,
    sts_problem,
    valid_policy,
)
from exconn.rules.refs import (
    EXO_MTA_STS,
    RFC3207_4,
    RFC8460_3,
    RFC8461_3_1,
    RFC8461_3_2,
    RFC8461_4_1,
    RFC8461_5,
    RFC8461_8_3,
    RFC8461_10_2,
    SET_RECEIVE,
)
from exconn.scope import is_exo_mx

Result = Iterator[Hit | CannotJudge]


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
    each=EACH_OUR_DOMAIN,
)
def policy_covers_mx(ctx: Context, p: DomainPosture | CannotJudge) -> Result:
    if isinstance(p, CannotJudge):
        yield p
        return
    target = domain_target(p.domain)
    if (why := sts_problem(p) or mx_problem(p)) is not None:
        if p.mx.status != MxStatus.NULL:
            yield CannotJudge(target, why)
        return
    policy = valid_policy(p)
    if policy is None or policy.mode == "none":
        return
    # Exchange Online MX hosts are judged by EXC-W002, which says what Microsoft's side needs.
    uncovered = [
        h for h in p.mx.hosts if not is_exo_mx(h) and not any(wildcard_matches(pat, h) for pat in policy.mx)
    ]
    stale = [pat for pat in policy.mx if not any(wildcard_matches(pat, h) for h in p.mx.hosts)]
    if not uncovered:
        return
    enforce = policy.mode == "enforce"
    consequence = (
        "senders that enforce MTA-STS will not deliver to "
        if enforce
        else "mode testing: senders deliver anyway but report failures for "
    )
    text = f"MX host(s) {', '.join(uncovered)} match no mx pattern of the policy ({', '.join(policy.mx)}): "
    text += consequence + ("them" if len(uncovered) > 1 else "it") + "."
    if stale:
        text += f" Pattern(s) matching no current MX: {', '.join(stale)}."
    yield Hit(
        target,
        "mta-sts.mx",
        list(policy.mx),
        text,
        severity=Severity.HIGH if enforce else Severity.MEDIUM,
        fix=publish_fix(ctx, p),
    )


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
    for p in our_postures(ctx):
        if isinstance(p, CannotJudge):
            yield p
            continue
        if (why := mx_problem(p)) is not None:
            if p.mx.status != MxStatus.NULL:
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
    if any(wildcard_matches(pat, host) for pat in policy.mx):
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
    serving, undecided = serving_connectors(ctx, host)
    explained = False
    for c in serving:
        found = connector_problems(ctx, c, host)
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
    each=EACH_OUR_DOMAIN,
)
def testing_ready_for_enforce(ctx: Context, p: DomainPosture | CannotJudge) -> Result:
    if isinstance(p, CannotJudge):
        yield p
        return
    policy = valid_policy(p)
    if policy is None or policy.mode != "testing":
        return
    target = domain_target(p.domain)
    if (why := mx_problem(p)) is not None:
        yield CannotJudge(target, why)
        return
    verdict = all_hosts_pass(p)
    if verdict is None:
        yield CannotJudge(target, "not every MX host could be probed, so we cannot say all pass")
        return
    if not verdict or not all(any(wildcard_matches(x, h) for x in policy.mx) for h in p.mx.hosts):
        return
    # The probe reached one server per MX name; EXC-W002 judges every connector behind it.
    connectors = connector_failures(ctx, p)
    if connectors is None:
        yield CannotJudge(
            target, "a receive connector that answers (or may answer) for an MX cannot be judged"
        )
        return
    if connectors or (p.tlsrpt.status != TlsRptStatus.VALID and ctx.tlsrpt_rua is None):
        return  # EXC-W002 / EXC-W005 say what must come first
    if report_failures(ctx, p.domain):
        return  # enforce only once the period's TLS reports show no failure (EXC-E008 names them)
    first = (
        f" Publish _smtp._tls.{p.domain} (records.txt, rua {ctx.tlsrpt_rua}) first."
        if p.tlsrpt.status != TlsRptStatus.VALID
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
        fix=publish_fix(ctx, p),
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
    each=EACH_OUR_DOMAIN,
)
def enforce_with_failing_mx(ctx: Context, p: DomainPosture | CannotJudge) -> Result:
    if isinstance(p, CannotJudge):
        yield p
        return
    policy = enforced_policy(p)
    if policy is None:
        return
    target = domain_target(p.domain)
    if (why := mx_problem(p)) is not None:
        yield CannotJudge(target, why)
        return
    failing = []
    for host in p.mx.hosts:
        facts = host_facts(p, host)
        verdict = host_verdict(facts) if facts is not None else HostVerdict(None, "not probed")
        if verdict.passing is False:
            failing.append(f"{host}: {verdict.reason}")
    # Every MX answering by the probe does not make a failing server behind it pass (EXC-W002).
    everything = bool(failing) and len(failing) == len(p.mx.hosts)
    failing += connector_failures(ctx, p) or []
    # What the senders report (TLS-RPT) counts as much as what the probe saw.
    failing += [f"TLS reports: {f.result_type} at {f.mx} x{f.count}" for f in report_failures(ctx, p.domain)]
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
            fix=publish_fix(ctx, p),
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
    each=EACH_OUR_DOMAIN,
)
def mta_sts_without_tlsrpt(ctx: Context, p: DomainPosture | CannotJudge) -> Result:
    if isinstance(p, CannotJudge):
        yield p
        return
    if valid_policy(p) is None:
        return
    target = domain_target(p.domain)
    if p.tlsrpt.status == TlsRptStatus.ERROR:
        yield CannotJudge(target, f"TLS-RPT could not be observed ({errors_text(p.tlsrpt.errors)})")
        return
    if p.tlsrpt.status == TlsRptStatus.VALID:
        return
    detail = (
        "no _smtp._tls record" if p.tlsrpt.status == TlsRptStatus.ABSENT else errors_text(p.tlsrpt.errors)
    )
    text = (
        f"MTA-STS is published but TLS-RPT is {p.tlsrpt.status} ({detail}): nobody reports TLS "
        f"failures to you. Publish _smtp._tls.{p.domain} (see records.txt)."
    )
    if (policy := valid_policy(p)) is not None and policy.mode == "testing":
        text += (
            " Until then (or until --fix-out is given --tlsrpt-rua) the proposed policy stays in "
            "mode testing: enforce is safe only once TLS reports show no failures."
        )
    yield Hit(target, "tlsrpt", p.tlsrpt.status, text, fix=publish_fix(ctx, p))


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
    each=EACH_OUR_DOMAIN,
)
def no_mta_sts(ctx: Context, p: DomainPosture | CannotJudge) -> Result:
    if isinstance(p, CannotJudge):
        yield p
        return
    target = domain_target(p.domain)
    if p.mx.status == MxStatus.NULL:
        return
    if (why := sts_problem(p)) is not None:
        yield CannotJudge(target, why)
        return
    if (
        p.mta_sts.status == MtaStsStatus.VALID
        and p.mta_sts.policy is not None
        and p.mta_sts.policy.mode != "none"
    ):
        return
    if dane_secure(p):
        return  # DANE already tells senders to require authenticated TLS
    if p.mta_sts.status == MtaStsStatus.ABSENT:
        text = "No _mta-sts TXT record"
    elif p.mta_sts.status == MtaStsStatus.VALID:
        text = "The policy's mode is none (it withdraws MTA-STS)"
    else:
        text = f"The MTA-STS policy is invalid ({errors_text(p.mta_sts.errors)}), so senders ignore it"
    yield Hit(
        target,
        "mta_sts",
        p.mta_sts.status,
        text + ": senders fall back to opportunistic TLS, which an attacker on the path can strip. "
        "Publish the policy in dns/" + p.domain + "/ (mode testing first).",
        fix=publish_fix(ctx, p),
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
    each=EACH_OUR_DOMAIN,
)
def policy_out_of_date(ctx: Context, p: DomainPosture | CannotJudge) -> Result:
    if isinstance(p, CannotJudge):
        yield p
        return
    current = valid_policy(p)
    if current is None:
        return
    target = domain_target(p.domain)
    if (why := mx_problem(p)) is not None:
        yield CannotJudge(target, why)
        return
    wanted = proposed_policy(ctx, p)
    if same_policy(current, wanted):
        return
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
        fix=publish_fix(ctx, p),
    )
