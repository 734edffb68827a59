"""What the cross-check rules read from an observed domain posture (EXC-W…).

One place decides when a part of the posture counts as known: a missing or failed observation is
reported as not judged, never as a pass. `our_postures` and `partner_postures` are the iterations the
inbound and outbound rules share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from exconn.posture.errors import ProbeError
from exconn.posture.facts import (
    DaneStatus,
    DomainPosture,
    MtaStsPolicy,
    MtaStsStatus,
    MxHostFacts,
    MxStatus,
    ProbeStatus,
)
from exconn.posture.view import observation_failed
from exconn.rules.base import CannotJudge, Context, Each, Target
from exconn.scope import is_ours, our_observable_domains


def domain_target(domain: str) -> Target:
    return Target("Domain", domain)


def posture_of(ctx: Context, domain: str) -> DomainPosture | None:
    """The observed posture of `domain`; None when none was observed, or the observation failed
    (a resolver without the public view: nothing may be concluded from it)."""
    found = ctx.posture.get(domain)
    if not isinstance(found, DomainPosture) or observation_failed(found):
        return None
    return found


def unobserved_reason(ctx: Context, domain: str) -> str:
    """Why `domain` has no posture to judge (for a CannotJudge)."""
    found = ctx.posture.get(domain)
    if isinstance(found, DomainPosture) and observation_failed(found):
        return "the posture could not be observed: " + errors_text(found.errors)
    return "no posture observed for this accepted domain"


def errors_text(errors: Sequence[ProbeError]) -> str:
    texts = [f"{e.type}: {e.detail}" for e in errors]
    return "; ".join(texts) if texts else "no detail recorded"


def mx_problem(p: DomainPosture) -> str | None:
    """Why the MX set of `p` cannot be judged (None: the hosts are known)."""
    if p.mx.status in (MxStatus.OK, MxStatus.IMPLICIT) and p.mx.hosts:
        return None
    if p.mx.status == MxStatus.NULL:
        return "the domain publishes a null MX (RFC 7505): it receives no mail"
    return f"MX lookup status {p.mx.status} ({errors_text(p.mx.errors)})"


def sts_problem(p: DomainPosture) -> str | None:
    """Why we cannot tell whether `p` has an MTA-STS policy (None: we can)."""
    if p.mta_sts.status == MtaStsStatus.ERROR:
        return f"MTA-STS could not be observed ({errors_text(p.mta_sts.errors)})"
    return None


def valid_policy(p: DomainPosture) -> MtaStsPolicy | None:
    return p.mta_sts.policy if p.mta_sts.status == MtaStsStatus.VALID else None


def enforced_policy(p: DomainPosture) -> MtaStsPolicy | None:
    policy = valid_policy(p)
    return policy if policy is not None and policy.mode == "enforce" else None


def dane_secure(p: DomainPosture) -> bool:
    """Usable TLSA records in a DNSSEC-validated zone for every MX (RFC 7672 §2.2): DANE applies."""
    return p.dane.status in (DaneStatus.VALID, DaneStatus.UNVERIFIED)


@dataclass(frozen=True, slots=True)
class HostVerdict:
    passing: bool | None  # None: the probe did not get far enough to tell
    reason: str


def host_verdict(h: MxHostFacts) -> HostVerdict:
    """Would an MTA-STS-validating sender (RFC 8461 §4) deliver to this MX host?"""
    if h.probe != ProbeStatus.DONE:
        return HostVerdict(None, f"not probed ({h.probe}: {errors_text(h.errors)})")
    if h.starttls is False:
        return HostVerdict(False, "STARTTLS not offered")
    if h.tls_established is False:
        return HostVerdict(False, f"TLS handshake failed ({errors_text(h.errors)})")
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


def our_postures(ctx: Context) -> Iterator[DomainPosture | CannotJudge]:
    """Our observed domains; a CannotJudge for each accepted domain that should have been observed."""
    names = our_observable_domains(ctx.org)
    for name in names:
        p = posture_of(ctx, name)
        if p is None:
            yield CannotJudge(domain_target(name), unobserved_reason(ctx, name))
        else:
            yield p
    # Domains named by --domains that are accepted but not Authoritative (e.g. InternalRelay).
    for domain in sorted(ctx.posture):
        if domain not in names and is_ours(ctx.org, domain):
            p = posture_of(ctx, domain)
            if p is not None:
                yield p


def partner_postures(ctx: Context) -> Iterator[DomainPosture]:
    """Every observed domain that is not ours, in name order: what the outbound rules judge."""
    for domain in sorted(ctx.posture):
        p = posture_of(ctx, domain)
        if p is not None and not is_ours(ctx.org, domain):
            yield p


def _posture_target(item: DomainPosture | CannotJudge) -> Target:
    return item.target if isinstance(item, CannotJudge) else domain_target(item.domain)


# The cross-check rules judge one domain at a time: a failure on one domain's posture leaves the
# others' findings standing. A CannotJudge item is an accepted domain that was not observed.
EACH_OUR_DOMAIN = Each("domain", our_postures, _posture_target)
EACH_PARTNER_DOMAIN = Each("partner domain", partner_postures, _posture_target)
