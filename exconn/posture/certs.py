"""Judging an MX certificate as a sending MTA would: trust, expiry and name, after the handshake.

The probe's handshake never aborts on a bad certificate (so the version, the cipher and the chain are
recorded); this module then judges the presented chain against one `TrustStore`, loaded once per run
(reading and parsing the system store costs about 18 ms), and reports the RFC 8460 result types
(`certificate-not-trusted`, `certificate-expired`, `certificate-host-mismatch`). Names follow RFC 6125 /
RFC 7672 §3.2.3.

Trust is one notion on both paths (issue 9 §3): OpenSSL's chain validation, as the MTA-STS fetch's
`ssl` context applies it and as Postfix, Exim and (Schannel, alike here) Exchange Online apply it. A
chain OpenSSL accepts but the stricter CA/B Web PKI profile (cryptography's verifier) refuses, e.g. a
private CA's leaf with a critical subjectAltName, is trusted, with a `certificate-webpki-deviation`
warning beside it: senders deliver to it, a browser-grade client would not.
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
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from exconn.names import normalize, wildcard_matches
from exconn.posture.errors import ProbeError
from exconn.posture.facts import CertificateFacts

__all__ = [
    "WEBPKI_DEVIATION",
    "TrustStore",
    "assess_chain",
    "certificate_name_matches",
    "is_ip",
    "webpki_deviation",
]

#: The warning type of a chain OpenSSL trusts but the CA/B Web PKI profile refuses (never a trust failure).
WEBPKI_DEVIATION = "certificate-webpki-deviation"

_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True, slots=True, eq=False)
class TrustStore:
    """The roots both probes judge against, loaded once: the `--ca-file` or the system store.

    `roots` empty means nothing can be trusted, and `error` says why. `https_context()` is the
    verifying client context of the MTA-STS policy fetch, built once from the same file (SSL contexts
    are thread-safe); `openssl` holds the same roots for the SMTP probe's chain (`openssl_verify`), so
    both paths trust alike; `store` is cryptography's store of them, for the Web PKI profile warning.
    """

    ca_file: str | None
    roots: tuple[x509.Certificate, ...]
    error: str | None
    store: verification.Store | None
    openssl: crypto.X509Store | None = field(default=None, repr=False)
    _https: list[ssl.SSLContext] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The store's verification time is the store's own parameter: one verification at a time.
    _verify_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, ca_file: str | None = None) -> TrustStore:
        roots, error = _load_roots(ca_file)
        store = verification.Store(list(roots)) if roots else None
        openssl = _openssl_store(roots) if roots else None
        return cls(ca_file, tuple(roots), error, store, openssl)

    def openssl_verify(
        self, leaf: x509.Certificate, issuers: Sequence[x509.Certificate], when: dt.datetime
    ) -> str | None:
        """OpenSSL's chain validation of `leaf` (with the presented `issuers`) at `when`: None when
        it chains to the store, else OpenSSL's reason. Names are not checked here."""
        if self.openssl is None:
            return self.error or "trust store is empty"
        untrusted = [crypto.X509.from_cryptography(c) for c in issuers]
        with self._verify_lock:
            self.openssl.set_time(when)
            context = crypto.X509StoreContext(self.openssl, crypto.X509.from_cryptography(leaf), untrusted)
            try:
                context.verify_certificate()
            except crypto.X509StoreContextError as exc:
                return str(exc)
        return _server_purpose_problem(leaf, issuers)

    def https_context(self) -> ssl.SSLContext:
        with self._lock:
            if not self._https:
                if self.ca_file is None:
                    context = ssl.create_default_context()
                else:
                    # From the roots already read: the file is not read twice, and one that holds
                    # no certificate (`error`) trusts nothing instead of raising here.
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    if self.roots:
                        der = b"".join(c.public_bytes(serialization.Encoding.DER) for c in self.roots)
                        context.load_verify_locations(cadata=der)
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
    elif (warning := webpki_deviation(host, chain_der, trust, name_matches=name_matches)) is not None:
        errors.append(warning)
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
    """Does the leaf chain to the trust store, by OpenSSL's rules, whatever its name and validity?

    Name and expiry are reported on their own, so the chain is checked at a moment inside the
    leaf's validity period.
    """
    roots = list(trust.roots)
    if trust.openssl is None:
        return False, trust.error or "trust store is empty"
    failure = trust.openssl_verify(leaf, issuers, _inside_validity(leaf, now))
    if failure is None:
        return True, ""
    if now > leaf.not_valid_after_utc or now < leaf.not_valid_before_utc:
        # The leaf is outside its validity period and an issuer was not valid at any moment of it:
        # fall back to following signatures alone.
        if "expired" in failure or "not yet valid" in failure:
            if _walk_signatures(leaf, issuers, roots)[0]:
                return True, ""
    return False, _untrusted_detail(leaf, issuers, roots, failure)


def webpki_deviation(
    host: str, chain_der: Sequence[bytes], trust: TrustStore, *, name_matches: bool | None = None
) -> ProbeError | None:
    """The warning for a chain OpenSSL trusts that breaks the CA/B Web PKI profile (None: it keeps
    to the profile, or it cannot be told). Never a trust failure: senders validate the OpenSSL way."""
    if trust.store is None or not chain_der:
        return None
    try:
        leaf = x509.load_der_x509_certificate(chain_der[0])
        issuers = [x509.load_der_x509_certificate(d) for d in chain_der[1:]]
    except ValueError:
        return None
    sans = _dns_sans(leaf)
    if name_matches is None:
        cns = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        name_matches = certificate_name_matches(host, sans, cns)
    names = [host] if name_matches and not is_ip(host) else []
    names += ["exconn-probe" + s[1:] if s.startswith("*.") else s for s in sans]
    subject: x509.DNSName | None = None
    for name in names:
        try:
            subject = x509.DNSName(name)
            break
        except ValueError:
            continue
    if subject is None:
        return None  # no DNS name to verify under: the name check reports it
    when = _inside_validity(leaf, dt.datetime.now(dt.UTC))
    try:
        verifier = verification.PolicyBuilder().store(trust.store).time(when).build_server_verifier(subject)
        verifier.verify(leaf, issuers)
    except verification.VerificationError as exc:
        if "validation time" in str(exc):
            return None  # an issuer's dates, not the profile: expiry is reported on its own
        return ProbeError(
            WEBPKI_DEVIATION,
            f"{host}: the chain is trusted (OpenSSL, as senders validate it) but breaks the CA/B Web PKI "
            f"profile: {exc}",
        )
    except ValueError:
        return None
    return None


def _inside_validity(leaf: x509.Certificate, now: dt.datetime) -> dt.datetime:
    if now > leaf.not_valid_after_utc:
        return leaf.not_valid_after_utc - dt.timedelta(seconds=1)
    if now < leaf.not_valid_before_utc:
        return leaf.not_valid_before_utc + dt.timedelta(seconds=1)
    return now


_SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)


def _server_purpose_problem(leaf: x509.Certificate, issuers: Sequence[x509.Certificate]) -> str | None:
    """OpenSSL's `sslserver` purpose, as an SSL client context checks it (pyOpenSSL's store cannot
    set a purpose): an extended key usage, where present, must allow TLS server authentication."""
    for cert in (leaf, *issuers):
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        if not any(oid in usages for oid in _SERVER_AUTH):
            which = "the certificate" if cert is leaf else f"issuer {_rfc4514(cert.subject)}"
            return f"unsupported certificate purpose: {which} does not allow TLS server authentication"
    return None


def _openssl_store(roots: Sequence[x509.Certificate]) -> crypto.X509Store:
    store = crypto.X509Store()
    for root in roots:
        try:
            store.add_cert(crypto.X509.from_cryptography(root))
        except (crypto.Error, ValueError):
            continue  # a duplicate or a root OpenSSL refuses must not empty the store
    return store


def _untrusted_detail(
    leaf: x509.Certificate, issuers: list[x509.Certificate], roots: list[x509.Certificate], failure: str
) -> str:
    reached, top = _walk_signatures(leaf, issuers, roots)
    if reached:
        return f"chain reaches a trusted root but OpenSSL refuses it: {failure}"
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
