"""A test certificate authority made at fixture time (never committed keys).

Every loopback server in the test suite (nginx for MTA-STS policies, the SMTP servers) gets its
certificate from here, so tests can pass `ca.pem` as exconn's `--ca-file` and get a trusted chain,
while an "untrusted" certificate comes from a second CA that is never handed to exconn.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class IssuedCert:
    cert_path: Path
    key_path: Path
    chain_path: Path  # leaf + issuing CA, what a server should present
    der: bytes
    spki_der: bytes

    def tlsa_data(self, selector: int, matching: int) -> str:
        """The hex association data of a TLSA record (RFC 6698 §2.1) for this leaf."""
        data = self.der if selector == 0 else self.spki_der
        if matching == 0:
            return data.hex()
        if matching == 1:
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha512(data).hexdigest()


class TestCA:
    """A CA that writes its files under `directory` and issues server certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "exconn Test Root CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem_path = directory / "ca.pem"
        self.pem_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def issue(
        self,
        stem: str,
        names: list[str],
        *,
        expired: bool = False,
        days: int = 365,
        critical_san: bool = False,
    ) -> IssuedCert:
        """Issue a server certificate for `names` (first one is the CN) and write it to disk.

        `critical_san` marks the subjectAltName critical beside a non-empty subject, as private CAs
        (AD CS templates) often do: OpenSSL and Schannel accept it, the CA/B Web PKI profile does not."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        if expired:
            not_before, not_after = now - dt.timedelta(days=60), now - dt.timedelta(days=1)
        else:
            not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=days)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=critical_san
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        chain_path = self.directory / f"{stem}.chain.pem"
        cert_path.write_bytes(cert_pem)
        chain_path.write_bytes(cert_pem + self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return IssuedCert(
            cert_path=cert_path,
            key_path=key_path,
            chain_path=chain_path,
            der=cert.public_bytes(serialization.Encoding.DER),
            spki_der=spki,
        )
