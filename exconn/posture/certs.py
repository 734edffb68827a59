"""Judging an MX certificate as a sending MTA would: trust, expiry and name, after the handshake.

The probe's handshake never aborts on a bad certificate (so the version, the cipher and the chain are
recorded); this module then judges the presented chain against one `TrustStore`, loaded once per run
(reading and parsing the system store costs about 18 ms), and reports the RFC 8460 result types
(`certificate-not-trusted`, `certificate-expired`, `certificate-host-mismatch`). Names follow RFC 6125 /
RFC 7672 §3.2.3.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import ssl
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from exconn.names import normalize, wildcard_matches
from exconn.posture.errors import ProbeError
from exconn.posture.facts import CertificateFacts

__all__ = ["TrustStore", "assess_chain", "certificate_name_matches", "is_ip"]

_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True, slots=True, eq=False)
class TrustStore:
    """The roots both probes judge against, loaded once: the `--ca-file` or the system store.

    `roots` empty means nothing can be trusted, and `error` says why. `https_context()` is the
    verifying client context of the MTA-STS policy fetch, built once from the same file (SSL contexts
    are thread-safe); `store` is cryptography's store of the same roots.
    """

    ca_file: str | None
    roots: tuple[x509.Certificate, ...]
    error: str | None
    store: verification.Store | None
    _https: list[ssl.SSLContext] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, ca_file: str | None = None) -> TrustStore:
        roots, error = _load_roots(ca_file)
        store = verification.Store(list(roots)) if roots else None
        return cls(ca_file, tuple(roots), error, store)

    def https_context(self) -> ssl.SSLContext:
        with self._lock:
            if not self._https:
                context = (
                    ssl.create_default_context(cafile=self.ca_file)
                    if self.ca_file
                    else (ssl.create_default_context())
                )
                context.check_hostname = True
                context.verify_mode = ssl.CERT_REQUIRED
                self._https.append(context)
            return self._https[0]


def certificate_name_matches(host: str, dns_names: Sequence[str], common_names: Sequence[str] = ()) -> bool:
    """RFC 6125 §6.4 / RFC 7672 §3.2.3 match of `host` against a certificate's names.

    DNS-ID subjectAltNames only; a wildcard is accepted only as the whole left-most label and
    matches exactly one label (not `*.com`, not `f*.example.com`). The CN is consulted only when the
    certificate has no DNS subjectAltName at all.
    """
    target = normalize(host)
    if not target:
        return False
    candidates = list(dns_names) if dns_names else list(common_names)
    for raw in candidates:
        pattern = normalize(raw)
        if not pattern:
            continue
        if "*" not in pattern:
            if pattern == target:
                return True
            continue
        if not pattern.startswith("*.") or "*" in pattern[2:]:
            continue
        base = pattern[2:]
        if base.count(".") < 1:  # "*.com": too broad to honour
            continue
        if wildcard_matches(pattern, target):
            return True
    return False


def is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except OSError:
            continue
        return True
    return False


def assess_chain(
    host: str, chain_der: tuple[bytes, ...], trust: TrustStore, errors: list[ProbeError]
) -> CertificateFacts | None:
    """Judge the chain the server presented (leaf first); each problem is appended to `errors`."""
    try:
        leaf = x509.load_der_x509_certificate(chain_der[0])
    except ValueError as exc:
        errors.append(ProbeError("validation-failure", f"cannot parse the server certificate: {exc}"))
        return None
    issuers: list[x509.Certificate] = []
    for der in chain_der[1:]:
        try:
            issuers.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue

    now = dt.datetime.now(dt.UTC)
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    expired = now > not_after
    sans = _dns_sans(leaf)
    cns = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    name_matches = certificate_name_matches(host, sans, cns)

    trusted, why = _judge_trust(host, leaf, issuers, sans, name_matches, now, trust)
    if not trusted:
        errors.append(ProbeError("certificate-not-trusted", why))
    if expired:
        errors.append(ProbeError("certificate-expired", f"certificate expired on {_iso(not_after)}"))
    elif now < not_before:
        errors.append(ProbeError("certificate-not-yet-valid", f"valid from {_iso(not_before)}"))
    if not name_matches:
        shown = ", ".join(sans) if sans else "CN=" + ", ".join(cns)
        errors.append(ProbeError("certificate-host-mismatch", f"{host} is not among the names: {shown}"))

    return CertificateFacts(
        subject=_rfc4514(leaf.subject),
        issuer=_rfc4514(leaf.issuer),
        sans=tuple(sans),
        not_before=_iso(not_before),
        not_after=_iso(not_after),
        trusted=trusted,
        name_matches=name_matches,
        expired=expired,
        chain_der=chain_der,
    )


def _judge_trust(
    host: str,
    leaf: x509.Certificate,
    issuers: list[x509.Certificate],
    sans: list[str],
    name_matches: bool,
    now: dt.datetime,
    trust: TrustStore,
) -> tuple[bool, str]:
    """Does the leaf chain to the trust store, whatever its name and validity period?

    Name and expiry are reported on their own, so the chain is checked under the name the
    certificate claims (the MX name when it matches) and at a moment inside the leaf's validity.
    """
    roots = list(trust.roots)
    if trust.store is None:
        return False, trust.error or "trust store is empty"
    in_validity = leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    when = now
    if now > leaf.not_valid_after_utc:
        when = leaf.not_valid_after_utc - dt.timedelta(seconds=1)
    elif now < leaf.not_valid_before_utc:
        when = leaf.not_valid_before_utc + dt.timedelta(seconds=1)

    names = [host] if name_matches and not is_ip(host) else []
    names += ["exconn-probe" + s[1:] if s.startswith("*.") else s for s in sans]
    subject: x509.DNSName | None = None
    for name in names:
        try:
            subject = x509.DNSName(name)
            break
        except ValueError:
            continue
    failure = "certificate has no DNS subjectAltName"
    if subject is not None:
        try:
            verifier = (
                verification.PolicyBuilder().store(trust.store).time(when).build_server_verifier(subject)
            )
            verifier.verify(leaf, issuers)
            return True, ""
        except verification.VerificationError as exc:
            failure = str(exc)
        except ValueError as exc:
            failure = f"cannot verify: {exc}"
        if in_validity or "validation time" not in failure:
            return False, _untrusted_detail(leaf, issuers, roots, failure)
    # The leaf is outside its validity period and an issuer was not valid at any moment of it (or
    # there is no SAN to verify under): fall back to following signatures alone.
    if _walk_signatures(leaf, issuers, roots)[0]:
        return True, ""
    return False, _untrusted_detail(leaf, issuers, roots, failure)


def _untrusted_detail(
    leaf: x509.Certificate, issuers: list[x509.Certificate], roots: list[x509.Certificate], failure: str
) -> str:
    reached, top = _walk_signatures(leaf, issuers, roots)
    if reached:
        return f"chain reaches a trusted root but breaks the Web PKI profile: {failure}"
    if top is leaf and leaf.issuer == leaf.subject:
        return f"self-signed certificate ({_rfc4514(leaf.subject)})"
    if top.issuer == top.subject:
        return f"chain ends at {_rfc4514(top.subject)}, a root that is not in the trust store"
    return f"issuer {_rfc4514(top.issuer)} is neither presented nor in the trust store"


def _walk_signatures(
    leaf: x509.Certificate, issuers: list[x509.Certificate], roots: list[x509.Certificate]
) -> tuple[bool, x509.Certificate]:
    """Follow issuer names and signatures from the leaf; (reached a trusted root, last cert)."""
    current = leaf
    pool = list(issuers)
    for _ in range(8):
        for root in roots:
            if root.subject == current.issuer and _issued_by(current, root):
                return True, current
        parent = next(
            (c for c in pool if c != current and c.subject == current.issuer and _issued_by(current, c)),
            None,
        )
        if parent is None:
            return False, current
        pool.remove(parent)
        current = parent
    return False, current


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load_roots(ca_file: str | None) -> tuple[list[x509.Certificate], str | None]:
    if ca_file is not None:
        try:
            with open(ca_file, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return [], f"cannot read CA file {ca_file}: {exc.strerror or exc}"
        certs = _load_pem_certs(data)
        if not certs:
            try:
                certs = [x509.load_der_x509_certificate(data)]
            except ValueError:
                return [], f"no certificate found in CA file {ca_file}"
        return certs, None
    paths = ssl.get_default_verify_paths()
    certs = []
    if paths.cafile:
        try:
            with open(paths.cafile, "rb") as fh:
                certs = _load_pem_certs(fh.read())
        except OSError:
            certs = []
    if not certs and paths.capath and os.path.isdir(paths.capath):
        for entry in sorted(os.listdir(paths.capath)):
            full = os.path.join(paths.capath, entry)
            if not os.path.isfile(full):
                continue
            try:
                with open(full, "rb") as fh:
                    certs.extend(_load_pem_certs(fh.read()))
            except OSError:
                continue
    if not certs:
        return [], "no system trust store found (pass ca_file)"
    return certs, None


def _load_pem_certs(data: bytes) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for block in _PEM_RE.findall(data):
        if block in seen:
            continue
        seen.add(block)
        try:
            with warnings.catch_warnings():  # legacy roots with non-positive serials still load
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            continue  # one unparsable root must not empty the store
    return certs


def _dns_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        return []
    return [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]


def _rfc4514(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return repr(name)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
