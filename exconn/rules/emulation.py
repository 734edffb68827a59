"""Expressing a partner's MTA-STS policy as an Exchange send connector.

Exchange Server implements neither MTA-STS nor DANE for outbound mail. The closest it gets is a
send connector scoped to the partner's domain with RequireTLS, TlsAuthLevel DomainValidation and
a TlsDomain: the remote certificate must then chain to a trusted root and carry a name within
TlsDomain. The two pattern languages differ:

- MTA-STS (RFC 8461 §4.1): `*.example.com` matches exactly one extra label, `mx1.example.com`
  matches that host only.
- Exchange TlsDomain: `*.example.com` matches example.com and every subdomain at any depth; a
  plain name matches that name only; one TlsDomain per connector.

So a policy is expressed exactly when it has one pattern that is a plain host; it is expressed
more loosely (`*.parent`) when every pattern sits under one registrable domain; and it cannot be
expressed by a name at all when its patterns span registrable domains (then CertificateValidation
is the best Exchange can do: a trusted chain, no name check).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from exconn.model import TlsAuthLevel
from exconn.names import normalize, registrable_domain, tls_domain_matches


class Fidelity(enum.StrEnum):
    EXACT = "exact"
    LOOSER = "looser"  # Exchange accepts more certificate names than the policy's MX patterns
    NO_NAME_CHECK = "no-name-check"  # no single TlsDomain: chain validation only


@dataclass(frozen=True, slots=True)
class Emulation:
    tls_auth_level: TlsAuthLevel
    tls_domain: str | None
    fidelity: Fidelity
    explanation: str


def _labels(name: str) -> list[str]:
    return normalize(name).split(".")


def tls_domain_covers_pattern(tls_domain: str, pattern: str) -> bool:
    """Would every host the MTA-STS pattern admits also pass Exchange's TlsDomain check?"""
    base = pattern[2:] if pattern.startswith("*.") else pattern
    probe = "x." + base if pattern.startswith("*.") else base
    return tls_domain_matches(tls_domain, probe)


def emulate(patterns: Sequence[str]) -> Emulation:
    """The send-connector TLS settings that come closest to an MTA-STS policy's mx patterns."""
    cleaned = sorted({normalize(p) for p in patterns if p.strip()})
    if not cleaned:
        return Emulation(
            TlsAuthLevel.CERTIFICATE_VALIDATION,
            None,
            Fidelity.NO_NAME_CHECK,
            "the policy lists no mx patterns; only the certificate chain can be required",
        )
    if len(cleaned) == 1 and not cleaned[0].startswith("*."):
        return Emulation(
            TlsAuthLevel.DOMAIN_VALIDATION,
            cleaned[0],
            Fidelity.EXACT,
            f"TlsDomain {cleaned[0]} requires exactly the host the policy allows",
        )
    bases = [p[2:] if p.startswith("*.") else p for p in cleaned]
    registrable = {registrable_domain(b) for b in bases}
    if None in registrable or len(registrable) != 1:
        return Emulation(
            TlsAuthLevel.CERTIFICATE_VALIDATION,
            None,
            Fidelity.NO_NAME_CHECK,
            "the policy's mx patterns ("
            + ", ".join(cleaned)
            + ") span several registrable domains and a connector takes one TlsDomain; "
            "CertificateValidation requires a trusted chain but checks no name",
        )
    # The deepest common parent of all patterns, but never above the registrable domain.
    split = [_labels(b)[::-1] for b in bases]
    common: list[str] = []
    for column in zip(*split, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    parent = ".".join(reversed(common))
    floor = next(iter(registrable))
    assert floor is not None
    if len(common) < len(_labels(floor)):
        parent = floor
    tls_domain = "*." + parent
    return Emulation(
        TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain,
        Fidelity.LOOSER,
        f"TlsDomain {tls_domain} covers every mx pattern ("
        + ", ".join(cleaned)
        + ") but is looser: Exchange's *. matches any depth and the parent itself, "
        "MTA-STS's *. exactly one label",
    )
