"""Does the resolver give the public view of DNS? When not, nothing is concluded from its answers.

On an admin workstation the resolver is often an AD DNS server holding an internal copy of the
company zone: every public name under it is NXDOMAIN there. An MX look-up that ends NXDOMAIN or in
failure for one of *our* accepted domains (which must exist publicly to receive mail), or for every
domain asked, is therefore an observation error (`resolver-not-public`, in `DomainPosture.errors`),
never an absence the rules could draw a finding from. A resolver that never answers counts alike.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from exconn.posture.errors import ProbeError
from exconn.posture.facts import DomainPosture, MxStatus, PostureReport

__all__ = ["RESOLVER_NOT_PUBLIC", "ViewVerdict", "judge_view", "observation_failed"]

RESOLVER_NOT_PUBLIC = "resolver-not-public"

_HOW = (
    "pass --resolver ADDR[:PORT] with a resolver that answers as the internet does "
    "(e.g. --resolver 1.1.1.1 or your ISP's)"
)


@dataclass(frozen=True, slots=True)
class ViewVerdict:
    report: PostureReport  # the domains that were not observed carry a `resolver-not-public` error
    unobserved: tuple[str, ...]  # their names, in the report's order
    nothing_observed: bool  # every domain asked (and at least one) is unobserved
    message: str | None  # one line for the user, None when the view looks public


def observation_failed(posture: DomainPosture) -> bool:
    """Was this domain's posture not observed (resolver without the public view)?"""
    return any(e.type == RESOLVER_NOT_PUBLIC for e in posture.errors)


def _failed_lookup(posture: DomainPosture) -> bool:
    return posture.mx.status in (MxStatus.NXDOMAIN, MxStatus.ERROR)


def _how_it_failed(posture: DomainPosture) -> str:
    if posture.mx.status == MxStatus.NXDOMAIN:
        return "NXDOMAIN"
    kinds = list(dict.fromkeys(e.type for e in posture.mx.errors)) or ["error"]
    return ", ".join(kinds)


def judge_view(report: PostureReport, *, resolver: str, ours: Collection[str] = ()) -> ViewVerdict:
    """Mark the domains whose observation says the resolver `resolver` (for messages) does not give
    the public view: a failed MX look-up of one of `ours`, or failed MX look-ups of every domain."""
    failed = [d for d in report.domains if _failed_lookup(d)]
    every = bool(report.domains) and len(failed) == len(report.domains)
    own = {o.lower().rstrip(".") for o in ours}
    marked = [d for d in failed if every or d.domain in own]
    if not marked:
        return ViewVerdict(report, (), False, None)
    shown = ", ".join(f"{d.domain} ({_how_it_failed(d)})" for d in marked[:3])
    shown += f" and {len(marked) - 3} more" if len(marked) > 3 else ""
    whose = "every domain asked" if every else "our own accepted domain(s)"
    message = (
        f"the MX look-up failed for {whose}: {shown}; the resolver {resolver} does not give the public "
        f"view of DNS (an internal DNS server with its own copy of the zone, or one that does not answer), "
        f"so nothing is concluded for these domains; {_HOW}"
    )
    error = ProbeError(RESOLVER_NOT_PUBLIC, message)
    names = {d.domain for d in marked}
    domains = tuple(replace(d, errors=(*d.errors, error)) if d.domain in names else d for d in report.domains)
    return ViewVerdict(replace(report, domains=domains), tuple(d.domain for d in marked), every, message)
