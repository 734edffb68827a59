"""Which certificate Exchange presents on a connector: the one model the certificate rules read.

From the 2013/2016 transport (EXCHANGE.md, "Which certificate"):
- TlsCertificateName set: the certificates in the machine store with that issuer *and* subject (the
  first one in the store wins, and the export does not say which is first). The name pins: a renewed
  certificate under another issuer is never picked up.
- TlsCertificateName empty: the connector's Fqdn, else the server's FQDN; certificates carrying that
  exact name first, and only when there are none, wildcards (`*.contoso.com` covers any depth below
  contoso.com, unless OneLevelWildcardMatchForCertSelection is set, which no export shows). No
  filter on the SMTP service at selection. Among the matches: the newest valid CA-issued certificate,
  then one whose revocation check is offline, then an expired CA-issued one, then a self-signed one.
- An expired certificate is still presented and STARTTLS still offered (events 12016/12018); only
  "not found" (12014) stops STARTTLS.

Pure functions of the model; the rules decide what a result means.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exconn.model import (
    UNKNOWN,
    CertificateName,
    CertificateNameStatus,
    ExchangeCertificate,
    Maybe,
    Organization,
    ReceiveConnector,
)
from exconn.names import normalize, wildcard_matches

__all__ = [
    "CertLookup",
    "CertVerdict",
    "Selection",
    "Tier",
    "certificate_matches",
    "certificate_name_of",
    "certificates_of_server",
    "expired",
    "find_by_name",
    "names_for_senders",
    "newer_same_subject",
    "normalize_dn",
    "pinned",
    "receive_selection",
    "same_server",
    "select_for_fqdn",
    "smtp_enabled",
    "tier",
    "usable_for_name",
]

# Exchange's Status when the revocation list could not be fetched.
_REVOCATION_OFFLINE = frozenset({"revocationcheckfailure"})


def split_dn(dn: str) -> list[str]:
    """The RDNs of a distinguished name: commas inside quotes or escaped with a backslash stay."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in dn:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def normalize_dn(dn: str) -> str:
    """`CN=a, O=B` and `cn=a,o=b` compare equal (Exchange compares X.500 names, not strings)."""
    rdns = []
    for part in split_dn(dn):
        key, sep, value = part.partition("=")
        rdns.append(f"{key.strip().upper()}{sep}{' '.join(value.split()).casefold()}")
    return ",".join(r for r in rdns if r)


def same_server(a: str, b: str) -> bool:
    """`EX01` and `ex01.contoso.com` are the same server."""
    return a.strip().lower().split(".")[0] == b.strip().lower().split(".")[0]


def certificates_of_server(
    org: Organization, server: Maybe[str | None]
) -> tuple[ExchangeCertificate, ...] | None:
    """The exported certificates of `server`; None when none of its certificates were exported.

    An export that does not say which server a certificate is from (one-server exports) is
    taken to cover every server.
    """
    if not org.certificates:
        return None
    located = [c for c in org.certificates if c.server is not UNKNOWN and c.server is not None]
    if not located or server is UNKNOWN or server is None:
        return org.certificates
    mine = tuple(
        c
        for c in org.certificates
        if c.server is UNKNOWN or c.server is None or same_server(c.server, server)
    )
    return mine if any(c in located for c in mine) else None


def expired(cert: ExchangeCertificate, now: dt.datetime) -> bool | None:
    if cert.not_after is UNKNOWN:
        return None
    return cert.not_after < now


def smtp_enabled(cert: ExchangeCertificate) -> bool | None:
    if cert.services is UNKNOWN:
        return None
    return "SMTP" in {s.upper() for s in cert.services}


class Tier(enum.IntEnum):
    """Exchange's preference among the certificates matching a name (lower wins)."""

    VALID = 0  # CA-issued, within its dates
    REVOCATION_OFFLINE = 1
    EXPIRED = 2  # CA-issued, outside its dates
    SELF_SIGNED = 3


def _self_signed(cert: ExchangeCertificate) -> bool | None:
    if cert.subject is UNKNOWN or cert.issuer is UNKNOWN:
        return None
    return normalize_dn(cert.subject) == normalize_dn(cert.issuer)


def tier(cert: ExchangeCertificate, now: dt.datetime) -> Tier | None:
    """Where Exchange ranks `cert`; None when the export lacks what decides it."""
    self_signed = _self_signed(cert)
    if self_signed is None or cert.not_after is UNKNOWN:
        return None
    if self_signed:
        return Tier.SELF_SIGNED
    if cert.not_after < now or (cert.not_before is not UNKNOWN and cert.not_before > now):
        return Tier.EXPIRED
    if cert.status is not UNKNOWN and cert.status.lower() in _REVOCATION_OFFLINE:
        return Tier.REVOCATION_OFFLINE
    return Tier.VALID


def _newest_key(cert: ExchangeCertificate) -> tuple[dt.datetime, dt.datetime]:
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    before = cert.not_before if cert.not_before is not UNKNOWN else floor
    after = cert.not_after if cert.not_after is not UNKNOWN else floor
    return before, after


def _names(cert: ExchangeCertificate) -> tuple[str, ...]:
    names: tuple[str, ...] = cert.certificate_domains if cert.certificate_domains is not UNKNOWN else ()
    if not names and cert.subject is not UNKNOWN:
        names = tuple(
            v.split("=", 1)[1].strip() for v in split_dn(cert.subject) if v.strip().upper().startswith("CN=")
        )
    return tuple(normalize(n) for n in names)


def _wildcard_covers(name: str, fqdn: str) -> bool:
    # Exchange's selection: `*.contoso.com` covers any depth below contoso.com (not contoso.com).
    return name.startswith("*.") and fqdn.endswith(name[1:]) and len(fqdn) > len(name) - 1


def _name_match(cert: ExchangeCertificate, fqdn: str) -> str | None:
    """ "exact", "wildcard" or None."""
    names = _names(cert)
    if fqdn in names:
        return "exact"
    return "wildcard" if any(_wildcard_covers(n, fqdn) for n in names) else None


@dataclass(frozen=True, slots=True)
class Selection:
    """What a connector presents: the certificate, how it was chosen, and the other candidates."""

    certificate: ExchangeCertificate | None  # None: nothing matches, STARTTLS is not offered
    how: str
    candidates: tuple[ExchangeCertificate, ...] = ()  # every certificate the same way would select
    reason: str = ""  # why nothing matched

    @property
    def found(self) -> bool:
        return self.certificate is not None


def select_for_fqdn(certs: Iterable[ExchangeCertificate], fqdn: str, now: dt.datetime) -> Selection | str:
    """The certificate an empty TlsCertificateName selects for `fqdn`; a str: cannot tell why."""
    host = normalize(fqdn)
    exact: list[ExchangeCertificate] = []
    wild: list[ExchangeCertificate] = []
    for cert in certs:
        match = _name_match(cert, host)
        if match == "exact":
            exact.append(cert)
        elif match == "wildcard":
            wild.append(cert)
    if exact:
        group, how = exact, f"the certificate named {host}"
    else:
        group, how = wild, f"a wildcard certificate for {host}"
    if not group:
        return Selection(None, f"a certificate for {host}", reason=f"no exported certificate names {host}")
    ranked: list[tuple[Tier, ExchangeCertificate]] = []
    for cert in group:
        t = tier(cert, now)
        if t is None:
            return f"certificates for {host} lack Subject/Issuer/NotAfter in the export"
        ranked.append((t, cert))
    best_tier = min(t for t, _ in ranked)
    best = sorted((c for t, c in ranked if t == best_tier), key=_newest_key, reverse=True)
    return Selection(best[0], how, tuple(c for _, c in ranked))


class CertVerdict(enum.Enum):
    FOUND = "found"
    MISSING = "missing"
    CANNOT_TELL = "cannot-tell"


@dataclass(frozen=True, slots=True)
class CertLookup:
    verdict: CertVerdict
    certificates: tuple[ExchangeCertificate, ...]
    reason: str


def certificate_matches(cert: ExchangeCertificate, name: CertificateName) -> bool | None:
    """Does `cert` carry the issuer and subject that TlsCertificateName names? None: cannot tell."""
    if name.subject is None:
        return False
    if cert.subject is UNKNOWN or (name.issuer is not None and cert.issuer is UNKNOWN):
        return None
    if normalize_dn(cert.subject) != normalize_dn(name.subject):
        return False
    return name.issuer is None or (
        cert.issuer is not UNKNOWN and normalize_dn(cert.issuer) == normalize_dn(name.issuer)
    )


def find_by_name(certs: Sequence[ExchangeCertificate], name: CertificateName) -> CertLookup:
    """The certificates TlsCertificateName selects among `certs` (one server's)."""
    if name.status is not CertificateNameStatus.OK:
        return CertLookup(CertVerdict.MISSING, (), f"TlsCertificateName {name.raw!r} is {name.status.value}")
    results = [(c, certificate_matches(c, name)) for c in certs]
    found = tuple(c for c, ok in results if ok)
    if found:
        return CertLookup(CertVerdict.FOUND, found, "")
    if any(ok is None for _, ok in results):
        return CertLookup(CertVerdict.CANNOT_TELL, (), "some exported certificates lack Subject/Issuer")
    return CertLookup(CertVerdict.MISSING, (), f"no exported certificate has issuer+subject {name.raw!r}")


def pinned(certs: Sequence[ExchangeCertificate], name: CertificateName) -> Selection | str:
    """What a set TlsCertificateName selects: the newest of the matches stands for "the first in the
    store" in `certificate`; `candidates` holds them all. A str: cannot tell why."""
    found = find_by_name(certs, name)
    if found.verdict is CertVerdict.CANNOT_TELL:
        return found.reason
    how = f"TlsCertificateName {name.raw}"
    if found.verdict is CertVerdict.MISSING:
        return Selection(None, how, reason=found.reason)
    best = sorted(found.certificates, key=_newest_key, reverse=True)
    return Selection(best[0], how, tuple(found.certificates))


def newer_same_subject(
    certs: Iterable[ExchangeCertificate], selection: Selection, now: dt.datetime
) -> ExchangeCertificate | None:
    """A valid CA-issued certificate with the subject of the pinned ones, issued after every one of
    them, that the pin does not select: the renewal the connector never picks up."""
    if not selection.candidates:
        return None
    subjects = {normalize_dn(c.subject) for c in selection.candidates if c.subject is not UNKNOWN}
    newest = max(_newest_key(c) for c in selection.candidates)
    chosen = {id(c) for c in selection.candidates}
    renewals = [
        c
        for c in certs
        if id(c) not in chosen
        and c.subject is not UNKNOWN
        and normalize_dn(c.subject) in subjects
        and tier(c, now) is Tier.VALID
        and _newest_key(c) > newest
    ]
    return max(renewals, key=_newest_key) if renewals else None


def usable_for_name(
    certs: Iterable[ExchangeCertificate], fqdn: str, now: dt.datetime
) -> list[ExchangeCertificate]:
    """Valid CA-issued certificates naming `fqdn` (exactly or by wildcard) that are not known to lack
    the SMTP service, newest first: what a fix may pin TlsCertificateName to."""
    host = normalize(fqdn)
    good = [
        c
        for c in certs
        if _name_match(c, host) is not None
        and tier(c, now) is Tier.VALID
        and smtp_enabled(c) is not False
        and c.subject is not UNKNOWN
        and c.issuer is not UNKNOWN
    ]
    return sorted(good, key=_newest_key, reverse=True)


def certificate_name_of(cert: ExchangeCertificate) -> str | None:
    """`<I>issuer<S>subject` as TlsCertificateName takes it; None when the export lacks either."""
    if cert.subject is UNKNOWN or cert.issuer is UNKNOWN:
        return None
    return f"<I>{cert.issuer}<S>{cert.subject}"


def names_for_senders(cert: ExchangeCertificate, host: str) -> bool:
    """Does `cert` name `host` as a validating sender judges it (X.509: a `*.` wildcard stands for
    exactly one left-most label, RFC 6125 §6.4.3)?"""
    return any(wildcard_matches(n, normalize(host)) for n in _names(cert))


def _server_fqdn(org: Organization, server: Maybe[str]) -> str | None:
    if server is UNKNOWN:
        return None
    for s in org.servers:
        if same_server(s.name, server) and s.fqdn is not UNKNOWN:
            return s.fqdn
    return None


def receive_selection(
    org: Organization, c: ReceiveConnector, now: dt.datetime, *, fqdn_default: str | None = None
) -> Selection | str:
    """What STARTTLS on receive connector `c` presents (whether Tls is offered is the caller's);
    a str says why the export cannot tell. `fqdn_default` stands in for a server FQDN the export
    lacks (e.g. the MX name the connector answers as)."""
    if c.tls_certificate_name is UNKNOWN:
        return "TlsCertificateName not in the export"
    if not org.certificates:
        return "no certificates were exported (Get-ExchangeCertificate)"
    certs = certificates_of_server(org, c.server)
    if certs is None:
        return f"no certificates exported from server {c.server}"
    if c.tls_certificate_name is not None:
        return pinned(certs, c.tls_certificate_name)
    if c.fqdn is UNKNOWN:
        return "Fqdn not in the export"
    fqdn = c.fqdn or _server_fqdn(org, c.server) or fqdn_default
    if fqdn is None:
        return "Fqdn is $null and the server's FQDN was not exported"
    return select_for_fqdn(certs, fqdn, now)
