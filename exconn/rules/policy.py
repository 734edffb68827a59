"""The MTA-STS policy we would publish for one of our domains, and the mode it should carry.

EXC-W001, W003, W004, W005, W006 and W007 and the DNS side of the fix (`exconn.remediate.dns`) all
propose the policy built here, so every finding that asks for one asks for the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

from exconn.fix import Fix, PublishMtaSts
from exconn.names import normalize
from exconn.posture.facts import DomainPosture, MtaStsPolicy, MtaStsStatus, TlsRptStatus
from exconn.rules.base import Context
from exconn.rules.mx import connector_failures
from exconn.rules.posture_view import all_hosts_pass, host_facts, host_verdict, mx_problem, valid_policy
from exconn.scope import is_exo_mx

# RFC 8461 §3.2 gives no values; these are what the big senders' guidance and our fix use: a day while
# testing (a mistake is corrected quickly), a week once enforced.
MAX_AGE_ENFORCE = 604800
MAX_AGE_TESTING = 86400


def mx_pattern_for(host: str) -> str:
    """Exchange Online hosts change within Microsoft's zone: name the zone's label, not the host."""
    host = normalize(host)
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
    if p.tlsrpt.status != TlsRptStatus.VALID and tlsrpt_rua is None:
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
        published_rua=tuple(p.tlsrpt.rua) if p.tlsrpt.status == TlsRptStatus.VALID else None,
        sts_status=p.mta_sts.status,
        record_exists=(
            True
            if p.mta_sts.record is not None
            else False
            if p.mta_sts.status == MtaStsStatus.ABSENT
            else None
        ),
        current_mode=current.mode if current is not None else None,
        current_max_age=current.max_age if current is not None else None,
        current_id=p.mta_sts.id if current is not None else None,
    )


def publish_fix(ctx: Context, p: DomainPosture) -> tuple[Fix, ...]:
    found = publication(ctx, p)
    return (found,) if found is not None else ()


def same_policy(a: MtaStsPolicy, b: MtaStsPolicy) -> bool:
    return (
        a.mode == b.mode
        and a.max_age == b.max_age
        and sorted(m.lower() for m in a.mx) == sorted(m.lower() for m in b.mx)
    )
