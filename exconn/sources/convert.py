"""The one converter from generic PowerShell objects to exconn's typed model.

Both sources feed it: the CLIXML reader and the PSRP session. Objects are recognised by their type
names (never by file name), or, for `Select-Object` output that lost them, by their property set.
Every property is read as "string or object", because remoting flattens objects past the
serialization depth to their ToString.

A property the export does not carry is `UNKNOWN`. A property that is there but cannot be read
is also `UNKNOWN`, and the converter adds a `Skipped` entry naming the property and the value, so
rules report "could not judge" for that property while the rest of the object is still judged.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import NameOID

from exconn.clixml.objects import Form, PSObject, PSValue
from exconn.model import (
    UNKNOWN,
    AcceptedDomain,
    AcceptedDomainType,
    AddressSpace,
    AuthMechanism,
    Binding,
    CertificateName,
    CertificateNameStatus,
    ExchangeCertificate,
    ExchangeServer,
    InboundConnector,
    IPRange,
    Maybe,
    ModelObject,
    Organization,
    OutboundConnector,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    Skipped,
    SmartHostAuthMechanism,
    Source,
    TlsAuthLevel,
    TransportConfig,
    TransportRole,
    identity_of,
    kind_of,
    parse_flags,
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

_PS_CUSTOM_OBJECT = "System.Management.Automation.PSCustomObject"

# --- values: every parser takes what the export holds and raises ValueError if it cannot --------


def text_of(value: PSValue) -> str:
    """The text PowerShell would print for a value: ToString for objects, `True` for $true."""
    if value is None:
        raise ValueError("it is $null")
    if isinstance(value, PSObject):
        if value.to_string is not None:
            return value.to_string
        if value.value is not None:
            return text_of(value.value)
        raise ValueError(f"a {value.type_name or 'object'} without ToString")
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise ValueError(f"a {type(value).__name__} is not text")


def _optional_text(value: PSValue) -> str | None:
    return None if value is None else text_of(value)


def _boolean(value: PSValue) -> bool:
    if isinstance(value, PSObject) and isinstance(value.value, bool):
        return value.value
    if isinstance(value, bool):
        return value
    text = text_of(value).strip().lower().lstrip("$")
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError("not a boolean")


def _integer(value: PSValue) -> int:
    if isinstance(value, PSObject) and isinstance(value.value, int) and not isinstance(value.value, bool):
        return value.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(text_of(value).strip())


def _items(value: PSValue) -> list[PSValue]:
    """The elements of a multi-valued property, whichever shape it arrived in."""
    if value is None:
        return []  # an empty MultiValuedProperty is often exported as $null
    if isinstance(value, PSObject):
        if value.items is not None:
            return [item for item in value.items if item is not None]
        if value.dct is not None:
            raise ValueError("a dictionary, not a list")
        if value.to_string is None and value.value is None:
            raise ValueError(f"a {value.type_name or 'object'} without ToString")
        return [value]
    if isinstance(value, str):
        return list(_split(value))
    return [value]


def _split(text: str) -> list[str]:
    """A list flattened to one string: `{a, b}`, `a,b` or `a b` (PowerShell's `"$list"`)."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    parts = text.split(",") if "," in text else text.split()
    return [part.strip() for part in parts if part.strip()]


def _texts(value: PSValue) -> tuple[str, ...]:
    return tuple(text_of(item) for item in _items(value))


def _enum_name(value: PSValue) -> str:
    """An enum's name: the ToString of a live or deserialized enum `Obj`, or a flattened string."""
    return text_of(value).strip()


def _by_name(kind: type[E], text: str) -> E:
    for member in kind:
        if str(member.value).lower() == text.lower():
            return member
    raise ValueError(f"unknown {kind.__name__} value {text!r}")


_TLS_AUTH_NUMBERS = {
    1: TlsAuthLevel.ENCRYPTION_ONLY,
    2: TlsAuthLevel.CERTIFICATE_VALIDATION,
    4: TlsAuthLevel.DOMAIN_VALIDATION,
}


def _tls_auth_level(value: PSValue) -> TlsAuthLevel | None:
    if value is None:
        return None
    name = _enum_name(value)
    if not name:
        return None
    if name.isdigit():
        try:
            return _TLS_AUTH_NUMBERS[int(name)]
        except KeyError:
            raise ValueError(f"unknown TlsAuthLevel number {name}") from None
    return _by_name(TlsAuthLevel, name)


def _smart_host_auth(value: PSValue) -> SmartHostAuthMechanism:
    # Names only: the numeric values of SmtpSendConnectorConfig+AuthMechanisms are not documented.
    return _by_name(SmartHostAuthMechanism, _enum_name(value))


F = TypeVar("F", AuthMechanism, PermissionGroups)


def _flags(kind: type[F]) -> Callable[[PSValue], F]:
    def parse(value: PSValue) -> F:
        # The I32 of a live or deserialized enum is exact; its ToString is only a rendering of it.
        if isinstance(value, PSObject) and isinstance(value.value, int) and not isinstance(value.value, bool):
            return kind(value.value)
        if isinstance(value, int) and not isinstance(value, bool):
            return kind(value)
        return parse_flags(kind, text_of(value))

    return parse


def _transport_role(value: PSValue) -> TransportRole:
    name = _enum_name(value)
    for role in TransportRole:
        if role.value.lower() == name.lower():
            return role
    return TransportRole.OTHER


def _accepted_domain_type(value: PSValue) -> AcceptedDomainType:
    return _by_name(AcceptedDomainType, _enum_name(value))


def _each(parse: Callable[[str], T]) -> Callable[[PSValue], tuple[T, ...]]:
    def wrapped(value: PSValue) -> tuple[T, ...]:
        return tuple(parse(text) for text in _texts(value))

    return wrapped


# --- structured strings ------------------------------------------------------------------------

_COMMON_NAME = re.compile(r"(?:^|,)\s*CN\s*=\s*((?:\\.|\"[^\"]*\"|[^,\\])*)", re.IGNORECASE)


def parse_certificate_name(raw: str) -> CertificateName:
    """`<I>issuer<S>subject`, `<S>subject` or a bare subject; the status says what is wrong."""
    text = raw.strip()
    issuer: str | None = None
    if text.startswith("<I>"):
        issuer, found, subject = text[3:].partition("<S>")
        if not found:
            return CertificateName(raw, None, None, None, CertificateNameStatus.MALFORMED)
        issuer = issuer.strip() or None
    elif text.startswith("<S>"):
        subject = text[3:]
    else:
        subject = text
    subject = subject.strip()
    if not subject or "<I>" in subject or "<S>" in subject:
        return CertificateName(raw, issuer, None, None, CertificateNameStatus.MALFORMED)
    match = _COMMON_NAME.search(subject)
    common_name = match.group(1).strip().strip('"') if match else None
    status = CertificateNameStatus.OK if common_name else CertificateNameStatus.NO_COMMON_NAME
    return CertificateName(raw, issuer, subject, common_name or None, status)


def _certificate_name(value: PSValue) -> CertificateName | None:
    if value is None:
        return None
    text = text_of(value)
    return parse_certificate_name(text) if text.strip() else None


def parse_address_space(raw: str) -> AddressSpace:
    """`type:address;cost`; the type's case is kept as typed (`smtp:` is not `SMTP:` to a reader)."""
    text = raw.strip()
    type_, colon, rest = text.partition(":")
    if not colon or not type_.strip() or not rest.strip():
        raise ValueError(f"{raw!r} is not type:address;cost")
    address, semicolon, cost_text = rest.rpartition(";")
    cost: int | None = int(cost_text) if semicolon and cost_text.strip().isdigit() else None
    if cost is None:
        address = rest
    if not address.strip():
        raise ValueError(f"{raw!r} has no address")
    return AddressSpace(type=type_.strip(), address=address.strip(), cost=cost, raw=text)


def parse_binding(raw: str) -> Binding:
    """`0.0.0.0:25`, `[::]:25` (and `::1:25`, the last colon being the port's)."""
    text = raw.strip()
    if text.startswith("["):
        address, found, port = text[1:].partition("]:")
    else:
        address, found, port = text.rpartition(":")
    if not found or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{raw!r} is not address:port")
    ipaddress.ip_address(address)
    return Binding(address=address, port=int(port), raw=text)


def parse_ip_range(raw: str) -> IPRange:
    """`a-b`, CIDR `a/n`, `a(mask)` or a single address, IPv4 or IPv6."""
    text = raw.strip()
    if "-" in text:
        low, _, high = text.partition("-")
        lower, upper = ipaddress.ip_address(low.strip()), ipaddress.ip_address(high.strip())
        if lower.version != upper.version or int(lower) > int(upper):
            raise ValueError(f"{raw!r} is not a range")
        return IPRange(raw=text, lower=lower, upper=upper)
    if "/" in text or text.endswith(")"):
        network = ipaddress.ip_network(text.replace("(", "/").rstrip(")"), strict=False)
        return IPRange(raw=text, lower=network[0], upper=network[-1])
    address = ipaddress.ip_address(text)
    return IPRange(raw=text, lower=address, upper=address)


def _domain_capabilities(value: PSValue) -> tuple[str, ...]:
    """`domain:Capability[,Capability]` entries; a flattened string is split between domains only."""
    if not isinstance(value, str):
        return _texts(value)
    entries: list[str] = []
    for part in value.strip().strip("{}").split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part or not entries:
            entries.append(part)
        else:
            entries[-1] += "," + part
    return tuple(entries)


def _utc(value: PSValue) -> dt.datetime:
    if isinstance(value, PSObject) and isinstance(value.value, dt.datetime):
        value = value.value
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(text_of(value).strip())
    # A DateTime of kind Unspecified carries no offset; Exchange stores certificate dates in UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


# --- recognising objects -----------------------------------------------------------------------


class _Fields:
    """Reads one object's properties into model fields, noting what it could not read."""

    def __init__(self, obj: PSObject, source: Source, type_name: str) -> None:
        self.obj = obj
        self.source = source
        self.type_name = type_name
        self.identity = ""
        self.notes: list[Skipped] = []

    def get(self, name: str, parse: Callable[[PSValue], T]) -> Maybe[T]:
        if not self.obj.has(name):
            return UNKNOWN
        value = self.obj.get(name)
        try:
            return parse(value)
        except ValueError as error:
            self.note(f"property {name} = {_show(value)} cannot be read ({error}); left unknown")
            return UNKNOWN

    def text(self, name: str) -> str | None:
        """A property's text if it is there and not $null, for identities and names."""
        value = self.get(name, _optional_text)
        return (value.strip() or None) if isinstance(value, str) else None

    def note(self, reason: str) -> None:
        self.notes.append(Skipped(self.source, self.type_name, self.identity, reason))


def _show(value: PSValue) -> str:
    try:
        text = text_of(value)
    except ValueError:
        return type(value).__name__
    return repr(text if len(text) <= 60 else text[:60] + "...")


def _identity(fields: _Fields, *, server_qualified: bool = False) -> str | None:
    identity = fields.text("Identity")
    if identity:
        return identity
    name = fields.text("Name")
    if server_qualified and name:
        server = fields.text("Server")
        if server:
            return f"{server}\\{name}"
    to_string = (fields.obj.to_string or "").strip()
    # A PSCustomObject's ToString is `@{Name=...; ...}`, never an identity.
    if to_string and not to_string.startswith("@{"):
        return to_string
    return name


def _name(fields: _Fields, identity: str) -> str:
    return fields.text("Name") or identity.rsplit("\\", 1)[-1]


def _send_connector(f: _Fields) -> SendConnector:
    return SendConnector(
        identity=f.identity,
        name=_name(f, f.identity),
        source=f.source,
        enabled=f.get("Enabled", _boolean),
        address_spaces=f.get("AddressSpaces", _each(parse_address_space)),
        dns_routing_enabled=f.get("DNSRoutingEnabled", _boolean),
        smart_hosts=f.get("SmartHosts", _texts),
        port=f.get("Port", _integer),
        fqdn=f.get("Fqdn", _optional_text),
        ignore_starttls=f.get("IgnoreSTARTTLS", _boolean),
        require_tls=f.get("RequireTLS", _boolean),
        tls_auth_level=f.get("TlsAuthLevel", _tls_auth_level),
        tls_domain=f.get("TlsDomain", _optional_text),
        tls_certificate_name=f.get("TlsCertificateName", _certificate_name),
        smart_host_auth_mechanism=f.get("SmartHostAuthMechanism", _smart_host_auth),
        authentication_credential_set=f.get("AuthenticationCredential", lambda v: v is not None),
        domain_secure_enabled=f.get("DomainSecureEnabled", _boolean),
        cloud_services_mail_enabled=f.get("CloudServicesMailEnabled", _boolean),
        is_scoped_connector=f.get("IsScopedConnector", _boolean),
        source_transport_servers=f.get("SourceTransportServers", _texts),
        comment=f.get("Comment", _optional_text),
    )


def _receive_connector(f: _Fields) -> ReceiveConnector:
    server: Maybe[str] = f.get("Server", text_of)
    if server is UNKNOWN and "\\" in f.identity:
        server = f.identity.split("\\", 1)[0]
    return ReceiveConnector(
        identity=f.identity,
        name=_name(f, f.identity),
        source=f.source,
        server=server,
        enabled=f.get("Enabled", _boolean),
        auth_mechanism=f.get("AuthMechanism", _flags(AuthMechanism)),
        permission_groups=f.get("PermissionGroups", _flags(PermissionGroups)),
        bindings=f.get("Bindings", _each(parse_binding)),
        remote_ip_ranges=f.get("RemoteIPRanges", _each(parse_ip_range)),
        require_tls=f.get("RequireTLS", _boolean),
        domain_secure_enabled=f.get("DomainSecureEnabled", _boolean),
        transport_role=f.get("TransportRole", _transport_role),
        fqdn=f.get("Fqdn", _optional_text),
        tls_certificate_name=f.get("TlsCertificateName", _certificate_name),
        tls_domain_capabilities=f.get("TlsDomainCapabilities", _domain_capabilities),
        extended_protection_policy=f.get("ExtendedProtectionPolicy", _enum_name),
        comment=f.get("Comment", _optional_text),
    )


def _accepted_domain(f: _Fields) -> AcceptedDomain:
    domain = f.get("DomainName", text_of)
    return AcceptedDomain(
        identity=f.identity,
        domain_name=(domain if domain is not UNKNOWN else f.identity).strip().lower(),
        source=f.source,
        domain_type=f.get("DomainType", _accepted_domain_type),
        default=f.get("Default", _boolean),
    )


def _transport_config(f: _Fields) -> TransportConfig:
    return TransportConfig(
        identity=f.identity,
        source=f.source,
        tls_send_domain_secure_list=f.get("TLSSendDomainSecureList", _texts),
        tls_receive_domain_secure_list=f.get("TLSReceiveDomainSecureList", _texts),
    )


def _inbound_connector(f: _Fields) -> InboundConnector:
    return InboundConnector(
        identity=f.identity,
        name=_name(f, f.identity),
        source=f.source,
        enabled=f.get("Enabled", _boolean),
        connector_type=f.get("ConnectorType", _enum_name),
        require_tls=f.get("RequireTls", _boolean),
        tls_sender_certificate_name=f.get("TlsSenderCertificateName", _optional_text),
        restrict_domains_to_certificate=f.get("RestrictDomainsToCertificate", _boolean),
        restrict_domains_to_ip_addresses=f.get("RestrictDomainsToIPAddresses", _boolean),
        sender_ip_addresses=f.get("SenderIPAddresses", _texts),
        sender_domains=f.get("SenderDomains", _texts),
    )


def _outbound_connector(f: _Fields) -> OutboundConnector:
    return OutboundConnector(
        identity=f.identity,
        name=_name(f, f.identity),
        source=f.source,
        enabled=f.get("Enabled", _boolean),
        connector_type=f.get("ConnectorType", _enum_name),
        use_mx_record=f.get("UseMXRecord", _boolean),
        smart_hosts=f.get("SmartHosts", _texts),
        recipient_domains=f.get("RecipientDomains", _texts),
        tls_settings=f.get("TlsSettings", _tls_auth_level),
        tls_domain=f.get("TlsDomain", _optional_text),
        mta_sts_mode=f.get("MtaStsMode", _optional_text),
        smtp_dane_mode=f.get("SmtpDaneMode", _optional_text),
        cloud_services_mail_enabled=f.get("CloudServicesMailEnabled", _boolean),
    )


def _exchange_server(f: _Fields) -> ExchangeServer:
    return ExchangeServer(
        identity=f.identity,
        name=_name(f, f.identity),
        source=f.source,
        fqdn=f.get("Fqdn", text_of),
        admin_display_version=f.get("AdminDisplayVersion", text_of),
        server_role=f.get("ServerRole", _enum_name),
    )


# .NET's names for the attributes it prints in X500DistinguishedName (E=, S=), so a subject read
# from DER compares equal to the one Exchange prints and to TlsCertificateName.
_DOTNET_ATTRIBUTE_NAMES = {NameOID.EMAIL_ADDRESS: "E", NameOID.STATE_OR_PROVINCE_NAME: "S"}


def _dotnet_name(name: x509.Name) -> str:
    return ", ".join(rdn.rfc4514_string(_DOTNET_ATTRIBUTE_NAMES) for rdn in reversed(name.rdns))


def _certificate(f: _Fields) -> ExchangeCertificate | None:
    raw = f.obj.get("RawData")
    der: x509.Certificate | None = None
    der_error = ""
    if isinstance(raw, bytes):
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
        server = f.get("PSComputerName", _optional_text)
    subject: Maybe[str] = f.get("Subject", text_of)
    issuer: Maybe[str] = f.get("Issuer", text_of)
    not_before: Maybe[dt.datetime] = f.get("NotBefore", _utc)
    not_after: Maybe[dt.datetime] = f.get("NotAfter", _utc)
    domains: Maybe[tuple[str, ...]] = f.get("CertificateDomains", _texts)
    if der is not None:
        subject = subject if subject is not UNKNOWN else _dotnet_name(der.subject)
        issuer = issuer if issuer is not UNKNOWN else _dotnet_name(der.issuer)
        not_before = not_before if not_before is not UNKNOWN else der.not_valid_before_utc
        not_after = not_after if not_after is not UNKNOWN else der.not_valid_after_utc
        domains = domains if domains is not UNKNOWN else _der_domains(der)
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
        status=f.get("Status", _enum_name),
    )


def _der_domains(der: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of the subject alternative name extension, as the certificate spells them."""
    try:
        san = der.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.value.get_values_for_type(x509.DNSName))


def _services(value: PSValue) -> frozenset[str]:
    names = (part.strip() for part in _enum_name(value).replace(";", ",").split(","))
    return frozenset(name for name in names if name and name.lower() != "none")


_Builder = Callable[[_Fields], ModelObject | None]

# The class name (last segment of the .NET type name) of each kind exconn reads. Base classes
# (SendConnector, ADObject, ...) are deliberately absent: only the most derived type decides.
_BY_TYPE: dict[str, _Builder] = {
    "SmtpSendConnectorConfig": _send_connector,
    "ReceiveConnector": _receive_connector,
    "AcceptedDomain": _accepted_domain,
    "TransportConfigContainer": _transport_config,
    "TransportConfig": _transport_config,
    "ExchangeCertificate": _certificate,
    "TenantInboundConnector": _inbound_connector,
    "TenantOutboundConnector": _outbound_connector,
    "ExchangeServer": _exchange_server,
}

# For PSCustomObjects that lost every telling type name: (all of, any of) property names.
_BY_SHAPE: list[tuple[frozenset[str], frozenset[str], _Builder]] = [
    (frozenset({"authmechanism", "bindings"}), frozenset(), _receive_connector),
    (frozenset({"ignorestarttls"}), frozenset({"addressspaces", "smarthosts"}), _send_connector),
    (frozenset({"domainname", "domaintype"}), frozenset(), _accepted_domain),
    (frozenset(), frozenset({"tlsreceivedomainsecurelist", "tlssenddomainsecurelist"}), _transport_config),
    (
        frozenset({"thumbprint"}),
        frozenset({"services", "notafter", "certificatedomains", "rawdata"}),
        _certificate,
    ),
    (
        frozenset(),
        frozenset({"tlssendercertificatename", "restrictdomainstocertificate"}),
        _inbound_connector,
    ),
    (frozenset(), frozenset({"tlssettings", "usemxrecord"}), _outbound_connector),
    (frozenset({"admindisplayversion", "serverrole"}), frozenset(), _exchange_server),
]

_GENERIC_TYPES = frozenset({_PS_CUSTOM_OBJECT, "System.Object"})


def _recognise(obj: PSObject) -> tuple[_Builder | None, str, bool]:
    """The builder for an object, the type name to report, and whether its shape told us."""
    for type_name in obj.type_names:
        builder = _BY_TYPE.get(type_name.rsplit(".", 1)[-1])
        if builder is not None:
            return builder, type_name, False
    if all(name in _GENERIC_TYPES for name in obj.type_names[1:]) and (
        not obj.type_names or _PS_CUSTOM_OBJECT in obj.type_names
    ):
        present = {name.lower() for name in obj.names()}
        for required, any_of, builder in _BY_SHAPE:
            if required <= present and (not any_of or any_of & present):
                return builder, obj.type_name or _PS_CUSTOM_OBJECT, True
    return None, obj.type_name, False


def convert(value: PSValue, *, path: str, index: int, form: str | None = None) -> list[ModelObject | Skipped]:
    """Convert one top-level value to at most one model object plus `Skipped` notes.

    `form` overrides the form the object reports (the PSRP source passes "psrp").
    """
    if not isinstance(value, PSObject):
        source = Source(path, index, form or Form.LIVE.value)
        shown = _show(value)
        return [Skipped(source, type(value).__name__, shown, "a bare value, not an object")]
    builder, type_name, by_shape = _recognise(value)
    object_form = Form.SELECTED if by_shape else value.form
    source = Source(path, index, form or object_form.value, value.line)
    fields = _Fields(value, source, type_name)
    if builder is None:
        fields.identity = _identity(fields) or ""
        return [
            Skipped(
                source, type_name, fields.identity, f"not a kind exconn reads ({type_name or 'no type name'})"
            )
        ]
    if builder is not _certificate:
        identity = _identity(fields, server_qualified=builder is _receive_connector)
        if not identity:
            return [Skipped(source, type_name, "", "no Identity or Name: cannot tell which object this is")]
        fields.identity = identity
    converted = builder(fields)
    results: list[ModelObject | Skipped] = [] if converted is None else [converted]
    results.extend(fields.notes)
    return results


def convert_all(values: Iterable[PSValue], *, path: str) -> list[ModelObject | Skipped]:
    """Convert every top-level value of one source, numbering them from 0."""
    return [result for index, value in enumerate(values) for result in convert(value, path=path, index=index)]


def assemble(results: Iterable[ModelObject | Skipped], *, sources: Sequence[str]) -> Organization:
    """One Organization from converted results, whichever source they came from.

    The same object (kind and identity, compared case-insensitively as Exchange does; a
    certificate's identity includes its server) read twice, e.g. from two overlapping exports, is
    kept once and the later copy listed as skipped.
    """
    kept: dict[tuple[str, str], ModelObject] = {}
    skipped: list[Skipped] = []
    for result in results:
        if isinstance(result, Skipped):
            skipped.append(result)
            continue
        kind = kind_of(result)
        first = kept.setdefault((kind, identity_of(result).casefold()), result)
        if first is not result:
            where = f"{first.source.path} (object #{first.source.index})"
            skipped.append(
                Skipped(
                    result.source, kind, identity_of(result), f"duplicate of the {kind} read from {where}"
                )
            )
    objects = list(kept.values())
    return Organization(
        send_connectors=tuple(o for o in objects if isinstance(o, SendConnector)),
        receive_connectors=tuple(o for o in objects if isinstance(o, ReceiveConnector)),
        accepted_domains=tuple(o for o in objects if isinstance(o, AcceptedDomain)),
        transport_configs=tuple(o for o in objects if isinstance(o, TransportConfig)),
        certificates=tuple(o for o in objects if isinstance(o, ExchangeCertificate)),
        inbound_connectors=tuple(o for o in objects if isinstance(o, InboundConnector)),
        outbound_connectors=tuple(o for o in objects if isinstance(o, OutboundConnector)),
        servers=tuple(o for o in objects if isinstance(o, ExchangeServer)),
        skipped=tuple(skipped),
        sources=tuple(sources),
    )
