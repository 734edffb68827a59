"""The typed model of an Exchange organisation's transport configuration.

Both sources (CLIXML files and a live PSRP session) produce exactly these objects, through one
converter (`exconn.sources.convert`). Rules read only this model.

A value that a partial export (e.g. `Select-Object` output) does not carry is `UNKNOWN`, never a
default: a rule that needs it reports that it could not judge. `None` keeps its Exchange meaning
(`$null`, e.g. `TlsAuthLevel` not set).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypeVar


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        # An unknown value must never pass for "false" in a rule by accident.
        raise TypeError("UNKNOWN has no truth value; compare with `is UNKNOWN`")


UNKNOWN: Literal[_Unknown.UNKNOWN] = _Unknown.UNKNOWN
UnknownType: TypeAlias = Literal[_Unknown.UNKNOWN]

T = TypeVar("T")
Maybe: TypeAlias = T | UnknownType  # noqa: UP040 - a generic alias read by mypy


def known(value: Maybe[T]) -> bool:
    return value is not UNKNOWN


class TlsAuthLevel(enum.StrEnum):
    """Send connector TlsAuthLevel (EXO outbound TlsSettings shares the values)."""

    ENCRYPTION_ONLY = "EncryptionOnly"
    CERTIFICATE_VALIDATION = "CertificateValidation"
    DOMAIN_VALIDATION = "DomainValidation"


class SmartHostAuthMechanism(enum.StrEnum):
    NONE = "None"
    BASIC_AUTH = "BasicAuth"
    BASIC_AUTH_REQUIRE_TLS = "BasicAuthRequireTLS"
    EXCHANGE_SERVER = "ExchangeServer"
    EXTERNAL_AUTHORITATIVE = "ExternalAuthoritative"


class AuthMechanism(enum.IntFlag):
    """Receive connector AuthMechanism flags, with Exchange's numeric values."""

    NONE = 0
    TLS = 1
    INTEGRATED = 2
    BASIC_AUTH = 4
    BASIC_AUTH_REQUIRE_TLS = 8
    EXCHANGE_SERVER = 16
    EXTERNAL_AUTHORITATIVE = 32


AUTH_MECHANISM_NAMES: dict[AuthMechanism, str] = {
    AuthMechanism.TLS: "Tls",
    AuthMechanism.INTEGRATED: "Integrated",
    AuthMechanism.BASIC_AUTH: "BasicAuth",
    AuthMechanism.BASIC_AUTH_REQUIRE_TLS: "BasicAuthRequireTLS",
    AuthMechanism.EXCHANGE_SERVER: "ExchangeServer",
    AuthMechanism.EXTERNAL_AUTHORITATIVE: "ExternalAuthoritative",
}


class PermissionGroups(enum.IntFlag):
    NONE = 0
    ANONYMOUS_USERS = 1
    EXCHANGE_USERS = 2
    EXCHANGE_SERVERS = 4
    EXCHANGE_LEGACY_SERVERS = 8
    PARTNERS = 16
    CUSTOM = 32


PERMISSION_GROUP_NAMES: dict[PermissionGroups, str] = {
    PermissionGroups.ANONYMOUS_USERS: "AnonymousUsers",
    PermissionGroups.EXCHANGE_USERS: "ExchangeUsers",
    PermissionGroups.EXCHANGE_SERVERS: "ExchangeServers",
    PermissionGroups.EXCHANGE_LEGACY_SERVERS: "ExchangeLegacyServers",
    PermissionGroups.PARTNERS: "Partners",
    PermissionGroups.CUSTOM: "Custom",
}

F = TypeVar("F", AuthMechanism, PermissionGroups)


def _names(kind: type[AuthMechanism] | type[PermissionGroups]) -> dict[int, str]:
    table = AUTH_MECHANISM_NAMES if kind is AuthMechanism else PERMISSION_GROUP_NAMES
    return {int(flag): name for flag, name in table.items()}


def flag_names(value: AuthMechanism | PermissionGroups) -> list[str]:
    """Exchange's spelling of each set flag, in Exchange's order (`Tls, Integrated, ...`)."""
    return [name for bit, name in _names(type(value)).items() if int(value) & bit]


def parse_flags(kind: type[F], text: str) -> F:
    """Parse `Tls, BasicAuth` (ToString of a flags enum) or a number. Raises ValueError."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return kind(int(text))
    by_name = {name.lower(): bit for bit, name in _names(kind).items()}
    bits = 0
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part or part.lower() == "none":
            continue
        try:
            bits |= by_name[part.lower()]
        except KeyError:
            raise ValueError(f"unknown {kind.__name__} value {part!r}") from None
    return kind(bits)


class TransportRole(enum.StrEnum):
    FRONTEND = "FrontendTransport"
    HUB = "HubTransport"
    OTHER = "Other"


@dataclass(frozen=True, slots=True)
class AddressSpace:
    """`SMTP:*;1`, `smtp:contoso.com;1` (type case kept as typed), `X400:...`."""

    type: str
    address: str
    cost: int | None
    raw: str

    @property
    def is_smtp(self) -> bool:
        return self.type.lower() == "smtp"

    @property
    def is_internet(self) -> bool:
        """`*` reaches every domain that no cheaper or more specific connector covers."""
        return self.is_smtp and self.address.strip() == "*"

    @property
    def domain(self) -> str | None:
        """The domain this space is scoped to (`*.contoso.com` -> `contoso.com`); None for `*`."""
        if not self.is_smtp or self.is_internet:
            return None
        return self.address.strip().lstrip("*").lstrip(".").lower().rstrip(".") or None


@dataclass(frozen=True, slots=True)
class Binding:
    address: str
    port: int
    raw: str


@dataclass(frozen=True, slots=True)
class IPRange:
    raw: str
    lower: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    upper: ipaddress.IPv4Address | ipaddress.IPv6Address | None

    @property
    def is_everything(self) -> bool:
        """`0.0.0.0-255.255.255.255` or `::-ffff:...`: the whole address family."""
        if self.lower is None or self.upper is None:
            return False
        return int(self.lower) == 0 and int(self.upper) == (2**self.lower.max_prefixlen - 1)


class CertificateNameStatus(enum.StrEnum):
    OK = "ok"
    NO_COMMON_NAME = "no-common-name"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class CertificateName:
    """`TlsCertificateName`: `<I>issuer<S>subject`, the issuer part optional."""

    raw: str
    issuer: str | None
    subject: str | None
    common_name: str | None
    status: CertificateNameStatus


@dataclass(frozen=True, slots=True)
class Source:
    """Where an object came from: a file (and its index in it) or a live session."""

    path: str
    index: int = 0
    form: str = "live"  # live | deserialized | selected | psrp
    line: int | None = None  # where the object starts in the file, when read from one


@dataclass(frozen=True, slots=True)
class SendConnector:
    identity: str
    name: str
    source: Source
    enabled: Maybe[bool] = UNKNOWN
    address_spaces: Maybe[tuple[AddressSpace, ...]] = UNKNOWN
    dns_routing_enabled: Maybe[bool] = UNKNOWN
    smart_hosts: Maybe[tuple[str, ...]] = UNKNOWN
    port: Maybe[int] = UNKNOWN
    fqdn: Maybe[str | None] = UNKNOWN
    ignore_starttls: Maybe[bool] = UNKNOWN
    require_tls: Maybe[bool] = UNKNOWN
    tls_auth_level: Maybe[TlsAuthLevel | None] = UNKNOWN
    tls_domain: Maybe[str | None] = UNKNOWN
    tls_certificate_name: Maybe[CertificateName | None] = UNKNOWN
    smart_host_auth_mechanism: Maybe[SmartHostAuthMechanism] = UNKNOWN
    authentication_credential_set: Maybe[bool] = UNKNOWN
    domain_secure_enabled: Maybe[bool] = UNKNOWN
    cloud_services_mail_enabled: Maybe[bool] = UNKNOWN
    is_scoped_connector: Maybe[bool] = UNKNOWN
    source_transport_servers: Maybe[tuple[str, ...]] = UNKNOWN
    comment: Maybe[str | None] = UNKNOWN
    # What a scoped connector taking over a route must copy (EXCHANGE.md, "New connectors replace
    # routes"), each as New-SendConnector takes it.
    frontend_proxy_enabled: Maybe[bool] = UNKNOWN
    source_ip_address: Maybe[str | None] = UNKNOWN
    use_external_dns_servers_enabled: Maybe[bool] = UNKNOWN
    max_message_size: Maybe[int | str] = UNKNOWN  # bytes, or "Unlimited"
    protocol_logging_level: Maybe[str] = UNKNOWN  # None | Verbose
    connection_inactivity_timeout: Maybe[str] = UNKNOWN  # TimeSpan text, `00:10:00`


@dataclass(frozen=True, slots=True)
class ReceiveConnector:
    identity: str  # SERVER\Name, as Exchange prints it
    name: str
    source: Source
    server: Maybe[str] = UNKNOWN
    enabled: Maybe[bool] = UNKNOWN
    auth_mechanism: Maybe[AuthMechanism] = UNKNOWN
    permission_groups: Maybe[PermissionGroups] = UNKNOWN
    bindings: Maybe[tuple[Binding, ...]] = UNKNOWN
    remote_ip_ranges: Maybe[tuple[IPRange, ...]] = UNKNOWN
    require_tls: Maybe[bool] = UNKNOWN
    domain_secure_enabled: Maybe[bool] = UNKNOWN
    transport_role: Maybe[TransportRole] = UNKNOWN
    fqdn: Maybe[str | None] = UNKNOWN
    tls_certificate_name: Maybe[CertificateName | None] = UNKNOWN
    tls_domain_capabilities: Maybe[tuple[str, ...]] = UNKNOWN
    extended_protection_policy: Maybe[str] = UNKNOWN
    comment: Maybe[str | None] = UNKNOWN


class AcceptedDomainType(enum.StrEnum):
    AUTHORITATIVE = "Authoritative"
    INTERNAL_RELAY = "InternalRelay"
    EXTERNAL_RELAY = "ExternalRelay"


@dataclass(frozen=True, slots=True)
class AcceptedDomain:
    identity: str
    domain_name: str  # lower-case; `*.contoso.com` kept as is
    source: Source
    domain_type: Maybe[AcceptedDomainType] = UNKNOWN
    default: Maybe[bool] = UNKNOWN


@dataclass(frozen=True, slots=True)
class TransportConfig:
    identity: str
    source: Source
    tls_send_domain_secure_list: Maybe[tuple[str, ...]] = UNKNOWN
    tls_receive_domain_secure_list: Maybe[tuple[str, ...]] = UNKNOWN


@dataclass(frozen=True, slots=True)
class ExchangeCertificate:
    """An Exchange certificate; an export that carries only RawData is parsed from the DER."""

    thumbprint: str  # upper-case hex SHA-1, as Exchange prints it
    source: Source
    server: Maybe[str | None] = UNKNOWN  # PSComputerName or the server it was read from
    subject: Maybe[str] = UNKNOWN
    issuer: Maybe[str] = UNKNOWN
    not_before: Maybe[dt.datetime] = UNKNOWN
    not_after: Maybe[dt.datetime] = UNKNOWN  # timezone-aware, UTC
    certificate_domains: Maybe[tuple[str, ...]] = UNKNOWN
    services: Maybe[frozenset[str]] = UNKNOWN  # {"IMAP", "POP", "SMTP", "IIS", ...}
    status: Maybe[str] = UNKNOWN


@dataclass(frozen=True, slots=True)
class InboundConnector:
    """Exchange Online Get-InboundConnector."""

    identity: str
    name: str
    source: Source
    enabled: Maybe[bool] = UNKNOWN
    connector_type: Maybe[str] = UNKNOWN  # OnPremises | Partner
    require_tls: Maybe[bool] = UNKNOWN
    tls_sender_certificate_name: Maybe[str | None] = UNKNOWN
    restrict_domains_to_certificate: Maybe[bool] = UNKNOWN
    restrict_domains_to_ip_addresses: Maybe[bool] = UNKNOWN
    sender_ip_addresses: Maybe[tuple[str, ...]] = UNKNOWN
    sender_domains: Maybe[tuple[str, ...]] = UNKNOWN


@dataclass(frozen=True, slots=True)
class OutboundConnector:
    """Exchange Online Get-OutboundConnector."""

    identity: str
    name: str
    source: Source
    enabled: Maybe[bool] = UNKNOWN
    connector_type: Maybe[str] = UNKNOWN
    use_mx_record: Maybe[bool] = UNKNOWN
    smart_hosts: Maybe[tuple[str, ...]] = UNKNOWN
    recipient_domains: Maybe[tuple[str, ...]] = UNKNOWN
    tls_settings: Maybe[TlsAuthLevel | None] = UNKNOWN
    tls_domain: Maybe[str | None] = UNKNOWN
    mta_sts_mode: Maybe[str | None] = UNKNOWN
    smtp_dane_mode: Maybe[str | None] = UNKNOWN
    cloud_services_mail_enabled: Maybe[bool] = UNKNOWN


@dataclass(frozen=True, slots=True)
class ExchangeServer:
    identity: str
    name: str
    source: Source
    fqdn: Maybe[str] = UNKNOWN
    admin_display_version: Maybe[str] = UNKNOWN
    server_role: Maybe[str] = UNKNOWN


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object that was read but not understood, or not used, with the reason."""

    source: Source
    type_name: str
    identity: str
    reason: str


ModelObject: TypeAlias = (
    SendConnector
    | ReceiveConnector
    | AcceptedDomain
    | TransportConfig
    | ExchangeCertificate
    | InboundConnector
    | OutboundConnector
    | ExchangeServer
)

KIND_NAMES: dict[type, str] = {
    SendConnector: "SendConnector",
    ReceiveConnector: "ReceiveConnector",
    AcceptedDomain: "AcceptedDomain",
    TransportConfig: "TransportConfig",
    ExchangeCertificate: "ExchangeCertificate",
    InboundConnector: "InboundConnector",
    OutboundConnector: "OutboundConnector",
    ExchangeServer: "ExchangeServer",
}


def kind_of(obj: ModelObject) -> str:
    return KIND_NAMES[type(obj)]


def identity_of(obj: ModelObject) -> str:
    if isinstance(obj, ExchangeCertificate):
        # Exchange's own Identity for a certificate: the same one can be installed on several servers.
        return f"{obj.server}\\{obj.thumbprint}" if isinstance(obj.server, str) else obj.thumbprint
    return obj.identity


@dataclass(frozen=True, slots=True)
class Organization:
    """Everything read from one snapshot (one or more files, or one live collection)."""

    send_connectors: tuple[SendConnector, ...] = ()
    receive_connectors: tuple[ReceiveConnector, ...] = ()
    accepted_domains: tuple[AcceptedDomain, ...] = ()
    transport_configs: tuple[TransportConfig, ...] = ()
    certificates: tuple[ExchangeCertificate, ...] = ()
    inbound_connectors: tuple[InboundConnector, ...] = ()
    outbound_connectors: tuple[OutboundConnector, ...] = ()
    servers: tuple[ExchangeServer, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    sources: tuple[str, ...] = field(default=())

    def objects(self) -> list[ModelObject]:
        return [
            *self.send_connectors,
            *self.receive_connectors,
            *self.accepted_domains,
            *self.transport_configs,
            *self.certificates,
            *self.inbound_connectors,
            *self.outbound_connectors,
            *self.servers,
        ]
