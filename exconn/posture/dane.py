"""DANE for SMTP (RFC 7672): TLSA at `_25._tcp.<mx>`, judged only when a validating resolver vouched.

- The TLSA answer counts only with the AD bit set (RFC 7672 §2.2, RFC 6698 §4): without it the host is
  `insecure` and no DANE judgement is made. `validated_by` names the resolver that set AD.
- A SERVFAIL that resolves with checking disabled (CD) is a bogus answer: `dnssec-invalid`.
- The MX host's own A/AAAA must be validated too (RFC 7672 §2.2.2): a sender that gets an insecure
  address never asks for the TLSA, so a signed TLSA above an insecure address protects nothing. Such a
  host is `insecure` with a `dane-address-insecure` error saying so, not judged on its TLSA alone.
- Usable records (§3.1.3): usage DANE-TA(2) or DANE-EE(3), selector 0 (full certificate) or 1 (SPKI),
  matching type 0 (exact), 1 (SHA-256) or 2 (SHA-512). PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP.
- Matching (§3.1): DANE-EE against the leaf only (names and dates ignored); DANE-TA against an issuer in
  the presented chain, which the leaf must chain to by signature and whose name must match the MX.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import dns.resolver
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from exconn.posture import dns as pdns
from exconn.posture.errors import ProbeError
from exconn.posture.facts import DaneFacts, DaneHost, DaneStatus, TlsaRecord, summarise_dane

USABLE_USAGES = (2, 3)
_DIGEST_LENGTH = {0: None, 1: 32, 2: 64}


def tlsa_name(host: str, port: int = 25) -> str:
    return f"_{port}._tcp.{host.rstrip('.')}"


def to_tlsa_record(usage: int, selector: int, matching: int, data: bytes) -> TlsaRecord:
    usable = usage in USABLE_USAGES and selector in (0, 1) and matching in _DIGEST_LENGTH
    length = _DIGEST_LENGTH.get(matching)
    if usable and length is not None and len(data) != length:
        usable = False  # a digest of the wrong length can never match
    if usable and length is None and not data:
        usable = False
    return TlsaRecord(usage=usage, selector=selector, matching=matching, data=data.hex(), usable=usable)


def _selected(der: bytes, selector: int) -> bytes | None:
    if selector == 0:
        return der
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _digest(data: bytes, matching: int) -> bytes:
    if matching == 1:
        return hashlib.sha256(data).digest()
    if matching == 2:
        return hashlib.sha512(data).digest()
    return data


def record_matches(record: TlsaRecord, der: bytes) -> bool:
    selected = _selected(der, record.selector)
    return selected is not None and _digest(selected, record.matching).hex() == record.data.lower()


def _chains_to(chain: Sequence[bytes], anchor_index: int) -> bool:
    """Does the leaf chain, by signatures along the presented chain, up to chain[anchor_index]?"""
    try:
        certs = [x509.load_der_x509_certificate(d) for d in chain[: anchor_index + 1]]
    except ValueError:
        return False
    for child, parent in zip(certs, certs[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return False
    return True


def match_chain(
    records: Sequence[TlsaRecord], chain: Sequence[bytes], *, name_matches: bool | None
) -> tuple[bool, str]:
    """Whether a usable record matches the presented chain (leaf first), and how."""
    for record in records:
        if not record.usable or not chain:
            continue
        if record.usage == 3 and record_matches(record, chain[0]):
            return True, f"DANE-EE {record.usage} {record.selector} {record.matching} matches the leaf"
        if record.usage == 2:
            for index in range(1, len(chain)):
                if record_matches(record, chain[index]) and _chains_to(chain, index):
                    if name_matches is False:
                        return (
                            False,
                            "DANE-TA matches an issuer, but the certificate name does not match the MX",
                        )
                    return (
                        True,
                        f"DANE-TA {record.usage} {record.selector} {record.matching} matches an issuer",
                    )
    return (
        False,
        f"the presented chain matches none of the {sum(r.usable for r in records)} usable TLSA records",
    )


def lookup_tlsa(resolver: dns.resolver.Resolver, host: str) -> pdns.Lookup:
    """The TLSA question for one MX host (asked while its SMTP probe runs; judged after it)."""
    return pdns.lookup(resolver, tlsa_name(host), "TLSA", check_bogus=True)


def check_dane_host(
    host: str,
    *,
    resolver: dns.resolver.Resolver,
    chain: Sequence[bytes] | None = None,
    name_matches: bool | None = None,
    tlsa: pdns.Lookup | None = None,
) -> DaneHost:
    """TLSA for one MX host (`tlsa` when already looked up), and whether `chain` (what the MX
    presented, leaf first) matches."""
    name = tlsa_name(host)
    result = tlsa if tlsa is not None else lookup_tlsa(resolver, host)
    if result.status == "error":
        return DaneHost(host=host, status=DaneStatus.ERROR, name=name, errors=result.errors)
    records = tuple(
        to_tlsa_record(
            int(getattr(r, "usage", -1)),
            int(getattr(r, "selector", -1)),
            int(getattr(r, "mtype", -1)),
            bytes(getattr(r, "cert", b"")),
        )
        for r in result.records
    )
    if not result.authenticated:
        return DaneHost(host=host, status=DaneStatus.INSECURE, name=name, tlsa=records)
    if result.missing:
        return DaneHost(host=host, status=DaneStatus.ABSENT, name=name, validated_by=result.server)
    insecure = _insecure_addresses(resolver, host)
    if insecure:
        error = ProbeError(
            "dane-address-insecure",
            f"{host}: the TLSA records at {name} are DNSSEC-signed but the host's "
            f"{'/'.join(insecure)} answer is not (no AD bit): senders use DANE only for a host whose "
            "address records validate (RFC 7672 §2.2.2), so DANE is unusable for this host",
        )
        return DaneHost(host, DaneStatus.INSECURE, name, result.server, records, None, (error,))
    if not any(r.usable for r in records):
        error = ProbeError(
            "tlsa-invalid",
            f"{name}: no usable TLSA record (DANE-TA(2)/DANE-EE(3), selector 0/1, matching 0/1/2, "
            "RFC 7672 §3.1.3); mail to this host must fail",
        )
        return DaneHost(host, DaneStatus.INVALID, name, result.server, records, None, (error,))
    if chain is None:
        return DaneHost(host, DaneStatus.UNVERIFIED, name, result.server, records, None)
    matched, how = match_chain(records, chain, name_matches=name_matches)
    if matched:
        return DaneHost(host, DaneStatus.VALID, name, result.server, records, True)
    error = ProbeError("tlsa-invalid", f"{host}: {how}")
    return DaneHost(host, DaneStatus.INVALID, name, result.server, records, False, (error,))


def _insecure_addresses(resolver: dns.resolver.Resolver, host: str) -> list[str]:
    """The address types of `host` that answered without the AD bit (a failed look-up says nothing
    either way, and is the probe's to report)."""
    found = (pdns.lookup(resolver, host, rdtype, check_bogus=False) for rdtype in ("A", "AAAA"))
    return [result.rdtype for result in found if result.ok and not result.authenticated]


def check_dane(
    hosts: Sequence[str],
    *,
    resolver: dns.resolver.Resolver,
    chains: Mapping[str, Sequence[bytes] | None] | None = None,
    name_matches: Mapping[str, bool | None] | None = None,
    tlsa: Mapping[str, pdns.Lookup] | None = None,
) -> DaneFacts:
    """DANE for every MX host; `chains[host]` is the chain its SMTP probe saw (None: not probed),
    `tlsa[host]` its TLSA answer when already looked up."""
    checked = tuple(
        check_dane_host(
            host,
            resolver=resolver,
            chain=(chains or {}).get(host),
            name_matches=(name_matches or {}).get(host),
            tlsa=(tlsa or {}).get(host),
        )
        for host in hosts
    )
    return DaneFacts(status=summarise_dane(checked), hosts=checked)
