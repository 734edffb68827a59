"""Exchange certificates (`Get-ExchangeCertificate`) from generic PowerShell objects.

The properties Exchange prints come first; what is missing is read from the DER in `RawData`.
cryptography is imported only when a certificate is converted: an export of connectors alone does
not pay for it.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import TYPE_CHECKING

from exconn.clixml.objects import PSValue
from exconn.model import UNKNOWN, ExchangeCertificate, Maybe
from exconn.sources.values import Fields, enum_name, optional_text, text_of, texts, utc

if TYPE_CHECKING:
    import datetime as dt

    from cryptography import x509


def _dotnet_name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    # .NET's names for the attributes it prints in X500DistinguishedName (E=, S=), so a subject
    # read from DER compares equal to the one Exchange prints and to TlsCertificateName.
    dotnet = {NameOID.EMAIL_ADDRESS: "E", NameOID.STATE_OR_PROVINCE_NAME: "S"}
    return ", ".join(rdn.rfc4514_string(dotnet) for rdn in reversed(name.rdns))


def certificate(f: Fields) -> ExchangeCertificate | None:
    # cryptography warns about certificates it still reads (a serial number that is not
    # positive, ...): a note on this object, never a line on the user's stderr.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _certificate(f)
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        f.note(f"property RawData: {message}")
    return result


def _certificate(f: Fields) -> ExchangeCertificate | None:
    raw = f.obj.get("RawData")
    der: x509.Certificate | None = None
    der_error = ""
    if isinstance(raw, bytes):
        from cryptography import x509

        try:
            der = x509.load_der_x509_certificate(raw)
        except ValueError as error:
            der_error = str(error)
    thumbprint = f.text("Thumbprint")
    if thumbprint is None and der is not None and isinstance(raw, bytes):
        # SHA-1 of the DER is what Windows (and so Exchange) calls the thumbprint.
        thumbprint = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
    if thumbprint is None:
        f.note("no Thumbprint and no readable RawData: cannot tell which certificate this is")
        return None
    f.identity = thumbprint.upper()
    if der_error:
        f.note(f"property RawData is not a DER certificate ({der_error}); read from the other properties")

    # Identity (`EX02\\<thumbprint>`) names the server the certificate is installed on;
    # PSComputerName is only the server the session ran on, the same for every file of one run.
    server: Maybe[str | None]
    if "\\" in (identity := f.text("Identity") or ""):
        server = identity.split("\\", 1)[0]
    else:
        server = f.get("PSComputerName", optional_text)
    subject: Maybe[str] = f.get("Subject", text_of)
    issuer: Maybe[str] = f.get("Issuer", text_of)
    not_before: Maybe[dt.datetime] = f.get("NotBefore", utc)
    not_after: Maybe[dt.datetime] = f.get("NotAfter", utc)
    domains: Maybe[tuple[str, ...]] = f.get("CertificateDomains", texts)
    if der is not None:
        try:
            subject = subject if subject is not UNKNOWN else _dotnet_name(der.subject)
            issuer = issuer if issuer is not UNKNOWN else _dotnet_name(der.issuer)
            not_before = not_before if not_before is not UNKNOWN else der.not_valid_before_utc
            not_after = not_after if not_after is not UNKNOWN else der.not_valid_after_utc
            domains = domains if domains is not UNKNOWN else _der_domains(der)
        except ValueError as error:  # cryptography parses names and extensions on first use
            f.note(
                f"property RawData cannot be read past its outer structure ({error}); the rest left unknown"
            )
    return ExchangeCertificate(
        thumbprint=f.identity,
        source=f.source,
        server=server,
        subject=subject,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        certificate_domains=domains,
        services=f.get("Services", _services),
        status=f.get("Status", enum_name),
    )


def _der_domains(der: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of the subject alternative name extension, as the certificate spells them."""
    from cryptography import x509

    try:
        san = der.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.value.get_values_for_type(x509.DNSName))


def _services(value: PSValue) -> frozenset[str]:
    names = (part.strip() for part in enum_name(value).replace(";", ",").split(","))
    return frozenset(name for name in names if name and name.lower() != "none")
