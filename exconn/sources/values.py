"""Reading values out of generic PowerShell objects, for the converter (`exconn.sources.convert`).

Every parser takes what the export holds, whatever shape remoting left it in (a typed primitive,
an enum object, or the ToString of an object past the serialization depth), and raises ValueError
when it cannot read it. `Fields` reads one object's properties with them and notes each property
it could not read.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import ipaddress
import re
import uuid
from collections.abc import Callable
from typing import TypeVar

from exconn.clixml.objects import PSObject, PSValue
from exconn.model import (
    UNKNOWN,
    AcceptedDomainType,
    AddressSpace,
    AuthMechanism,
    Binding,
    CertificateName,
    CertificateNameStatus,
    IPRange,
    Maybe,
    PermissionGroups,
    Skipped,
    SmartHostAuthMechanism,
    Source,
    TlsAuthLevel,
    TransportRole,
    parse_flags,
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

# --- values ------------------------------------------------------------------------------------


# How deep objects wrapping a value (`<Obj><Ref .../></Obj>`) are followed: Refs can chain (or
# loop back to the object itself), and real exports wrap a value once.
_MAX_WRAPPING = 32


def text_of(value: PSValue) -> str:
    """The text PowerShell would print for a value: ToString for objects, `True` for $true."""
    for _ in range(_MAX_WRAPPING):
        if not isinstance(value, PSObject):
            break
        if value.to_string is not None:
            return value.to_string
        if value.value is None:
            raise ValueError(f"a {value.type_name or 'object'} without ToString")
        value = value.value
    else:
        raise ValueError(f"objects wrap each other more than {_MAX_WRAPPING} deep (a Ref loop or chain)")
    if value is None:
        raise ValueError("it is $null")
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise ValueError(f"a {type(value).__name__} is not text")


def optional_text(value: PSValue) -> str | None:
    return None if value is None else text_of(value)


def boolean(value: PSValue) -> bool:
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


def integer(value: PSValue) -> int:
    if isinstance(value, PSObject) and isinstance(value.value, int) and not isinstance(value.value, bool):
        return value.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(text_of(value).strip())


def items(value: PSValue) -> list[PSValue]:
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
        return list(split(value))
    return [value]


def split(text: str) -> list[str]:
    """A list flattened to one string: `{a, b}`, `a,b` or `a b` (PowerShell's `"$list"`)."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    parts = text.split(",") if "," in text else text.split()
    return [part.strip() for part in parts if part.strip()]


def texts(value: PSValue) -> tuple[str, ...]:
    return tuple(text_of(item) for item in items(value))


def enum_name(value: PSValue) -> str:
    """An enum's name: the ToString of a live or deserialized enum `Obj`, or a flattened string."""
    return text_of(value).strip()


def by_name(kind: type[E], text: str) -> E:
    for member in kind:
        if str(member.value).lower() == text.lower():
            return member
    raise ValueError(f"unknown {kind.__name__} value {text!r}")


_TLS_AUTH_NUMBERS = {
    1: TlsAuthLevel.ENCRYPTION_ONLY,
    2: TlsAuthLevel.CERTIFICATE_VALIDATION,
    4: TlsAuthLevel.DOMAIN_VALIDATION,
}


def tls_auth_level(value: PSValue) -> TlsAuthLevel | None:
    if value is None:
        return None
    name = enum_name(value)
    if not name:
        return None
    if name.isdigit():
        try:
            return _TLS_AUTH_NUMBERS[int(name)]
        except KeyError:
            raise ValueError(f"unknown TlsAuthLevel number {name}") from None
    return by_name(TlsAuthLevel, name)


def smart_host_auth(value: PSValue) -> SmartHostAuthMechanism:
    # Names only: the numeric values of SmtpSendConnectorConfig+AuthMechanisms are not documented.
    return by_name(SmartHostAuthMechanism, enum_name(value))


F = TypeVar("F", AuthMechanism, PermissionGroups)


def flags(kind: type[F]) -> Callable[[PSValue], F]:
    def parse(value: PSValue) -> F:
        # The I32 of a live or deserialized enum is exact; its ToString is only a rendering of it.
        if isinstance(value, PSObject) and isinstance(value.value, int) and not isinstance(value.value, bool):
            return kind(value.value)
        if isinstance(value, int) and not isinstance(value, bool):
            return kind(value)
        return parse_flags(kind, text_of(value))

    return parse


def transport_role(value: PSValue) -> TransportRole:
    name = enum_name(value)
    for role in TransportRole:
        if role.value.lower() == name.lower():
            return role
    return TransportRole.OTHER


def accepted_domain_type(value: PSValue) -> AcceptedDomainType:
    return by_name(AcceptedDomainType, enum_name(value))


def each(parse: Callable[[str], T]) -> Callable[[PSValue], tuple[T, ...]]:
    def wrapped(value: PSValue) -> tuple[T, ...]:
        return tuple(parse(text) for text in texts(value))

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


def certificate_name(value: PSValue) -> CertificateName | None:
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


def domain_capabilities(value: PSValue) -> tuple[str, ...]:
    """`domain:Capability[,Capability]` entries; a flattened string is split between domains only."""
    if not isinstance(value, str):
        return texts(value)
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


def utc(value: PSValue) -> dt.datetime:
    if isinstance(value, PSObject) and isinstance(value.value, dt.datetime):
        value = value.value
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(text_of(value).strip())
    # A DateTime of kind Unspecified carries no offset; Exchange stores certificate dates in UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 is a valid DateTime that lies before year 1 in UTC.
        raise ValueError(f"{moment.isoformat()} is outside the calendar once moved to UTC") from None


# --- one object's properties ------------------------------------------------------------------


class Fields:
    """Reads one object's properties into model fields, noting what it could not read."""

    def __init__(self, obj: PSObject, source: Source, type_name: str) -> None:
        self.obj = obj
        self.source = source
        self.type_name = type_name
        self.identity = ""
        self.notes: list[Skipped] = []
        self._folded: dict[str, PSValue] | None = None

    def lookup(self, name: str) -> tuple[bool, PSValue]:
        """Whether the object has the property and its value, as `PSObject.get` finds it:
        exact name first (adapted, then extended), then case-insensitively in the same order.

        The case-folded table is built once per object: asking PSObject for each of the ~20
        properties a builder reads would fold every property name again for each name missing.
        """
        obj = self.obj
        if name in obj.props:
            return True, obj.props[name]
        if name in obj.extended:
            return True, obj.extended[name]
        if self._folded is None:
            folded: dict[str, PSValue] = {}
            for table in (obj.props, obj.extended):
                for key, value in table.items():
                    folded.setdefault(key.lower(), value)
            self._folded = folded
        lowered = name.lower()
        if lowered in self._folded:
            return True, self._folded[lowered]
        return False, None

    def get(self, name: str, parse: Callable[[PSValue], T]) -> Maybe[T]:
        found, value = self.lookup(name)
        if not found:
            return UNKNOWN
        try:
            return parse(value)
        except (ValueError, OverflowError) as error:
            # OverflowError: a DateTime at the end of the calendar moved to UTC, an enum number
            # past a flag's range; the file is fine, the one property is not readable.
            self.note(f"property {name} = {show(value)} cannot be read ({error}); left unknown")
            return UNKNOWN

    def text(self, name: str) -> str | None:
        """A property's text if it is there and not $null, for identities and names."""
        value = self.get(name, optional_text)
        return (value.strip() or None) if isinstance(value, str) else None

    def note(self, reason: str) -> None:
        self.notes.append(Skipped(self.source, self.type_name, self.identity, reason))


def show(value: PSValue) -> str:
    try:
        text = text_of(value)
    except ValueError:
        return type(value).__name__
    return repr(text if len(text) <= 60 else text[:60] + "...")


def object_identity(fields: Fields, *, server_qualified: bool = False) -> str | None:
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


def object_name(fields: Fields, identity: str) -> str:
    return fields.text("Name") or identity.rsplit("\\", 1)[-1]


_BYTES = re.compile(r"\(([\d,.\s\u00a0\u202f']+)\s*bytes\)", re.IGNORECASE)


def byte_size(value: PSValue) -> int | str:
    """An `Unlimited<ByteQuantifiedSize>` (`35 MB (36,700,160 bytes)`, `Unlimited`, a number) as
    New-SendConnector -MaxMessageSize takes it: bytes, or `Unlimited`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = text_of(value).strip()
    if text.lower() == "unlimited":
        return "Unlimited"
    if text.isdigit():
        return int(text)
    match = _BYTES.search(text)
    if match is None:
        raise ValueError("not a size in bytes")
    return int(re.sub(r"\D", "", match.group(1)))


def time_span(value: PSValue) -> str:
    """A TimeSpan as PowerShell prints it (`00:10:00`, `1.00:00:00`)."""
    if isinstance(value, dt.timedelta):
        seconds = int(value.total_seconds())
        days, rest = divmod(seconds, 86400)
        text = f"{rest // 3600:02}:{rest % 3600 // 60:02}:{rest % 60:02}"
        return f"{days}.{text}" if days else text
    text = text_of(value).strip()
    if not re.fullmatch(r"(\d+\.)?\d{1,2}:\d{2}:\d{2}(\.\d+)?", text):
        raise ValueError("not a TimeSpan")
    return text
