"""What a CLIXML document is built from: Exchange's type-name chains, primitives whose element the
Python type cannot choose (`I64`, `By`...), complex objects (`Obj`) and the typed helpers for the
values Exchange nests in its objects (`Enum`, `Multi`, `AdObjectId`, `AddressSpace`, `IPRange`...).

Test tooling (see `tests/clixml_build/__init__.py`), not part of the exconn package.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

PS_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"

# --- type-name chains seen in real Exchange 2019 exports --------------------------------------------

_AD_CONFIG_BASE = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.ADConfigurationObject",
    "Microsoft.Exchange.Data.Directory.ADObject",
    "Microsoft.Exchange.Data.Directory.ADRawEntry",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
)
SEND_CONNECTOR_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.SmtpSendConnectorConfig",
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.MailGateway",
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.SendConnector",
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.ADLegacyVersionableObject",
    *_AD_CONFIG_BASE,
)
RECEIVE_CONNECTOR_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector",
    *_AD_CONFIG_BASE,
)
ACCEPTED_DOMAIN_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomain",
    *_AD_CONFIG_BASE,
)
TRANSPORT_CONFIG_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.TransportConfigContainer",
    *_AD_CONFIG_BASE,
)
INBOUND_CONNECTOR_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.TenantInboundConnector",
    *_AD_CONFIG_BASE,
)
OUTBOUND_CONNECTOR_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Data.Directory.SystemConfiguration.TenantOutboundConnector",
    *_AD_CONFIG_BASE,
)
EXCHANGE_SERVER_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Data.Directory.Management.ExchangeServer",
    "Microsoft.Exchange.Data.Directory.ADPresentationObject",
    "Microsoft.Exchange.Data.ConfigurableObject",
    "System.Object",
)
EXCHANGE_CERTIFICATE_TYPES: tuple[str, ...] = (
    "Microsoft.Exchange.Management.SystemConfigurationTasks.ExchangeCertificate",
    "System.Security.Cryptography.X509Certificates.X509Certificate2",
    "System.Security.Cryptography.X509Certificates.X509Certificate",
    "System.Object",
)
AUTH_MECHANISMS_TYPE = "Microsoft.Exchange.Data.Directory.SystemConfiguration.AuthMechanisms"
PERMISSION_GROUPS_TYPE = "Microsoft.Exchange.Data.PermissionGroups"

_ENUM_BASE = ("System.Enum", "System.ValueType", "System.Object")
_EXCHANGE_ASSEMBLY = "Version=15.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
_MSCORLIB = "mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089"


# --- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prim:
    """A primitive element whose tag the Python type cannot choose (`I64`, `By`, `Db` for an int...).

    `text` is the element's content already in CLIXML's lexical form; it is XML-escaped on output
    (and `_x`-escaped too when `tag` is a string-like element).
    """

    tag: str
    text: str


@dataclass(eq=False, slots=True)
class Obj:
    """A complex object. Identity matters: the same instance written twice becomes a `<Ref>`, the way
    PowerShell shares one .NET object (an `Identity` that is also `Id`, one `OrganizationId`)."""

    type_names: tuple[str, ...]
    to_string: str | None = None
    props: Mapping[str, Value] = field(default_factory=dict)
    ms: Mapping[str, Value] = field(default_factory=dict)
    items: Sequence[Value] | None = None  # LST (or `container`) content
    container: Literal["LST", "IE", "STK", "QUE"] = "LST"
    dct: Sequence[tuple[Value, Value]] | None = None
    value: Prim | None = None  # an enum's underlying number, written after ToString
    blob: bool = False  # carries an Exchange `SerializationData` blob in MS (live form)
    flatten: bool = False  # nested in the deserialized form, becomes `<S>ToString</S>`


Value: TypeAlias = (
    None
    | bool
    | int
    | float
    | str
    | bytes
    | dt.datetime
    | dt.timedelta
    | uuid.UUID
    | decimal.Decimal
    | Prim
    | Obj
    | list["Value"]
    | tuple["Value", ...]
)


def I32(value: int) -> Prim:  # noqa: N802 - named after the CLIXML element
    return Prim("I32", str(int(value)))


def I64(value: int) -> Prim:  # noqa: N802
    return Prim("I64", str(int(value)))


def I16(value: int) -> Prim:  # noqa: N802
    return Prim("I16", str(int(value)))


def By(value: int) -> Prim:  # noqa: N802
    return Prim("By", str(int(value)))


def SB(value: int) -> Prim:  # noqa: N802
    return Prim("SB", str(int(value)))


def U16(value: int) -> Prim:  # noqa: N802
    return Prim("U16", str(int(value)))


def U32(value: int) -> Prim:  # noqa: N802
    return Prim("U32", str(int(value)))


def U64(value: int) -> Prim:  # noqa: N802
    return Prim("U64", str(int(value)))


def Db(value: float) -> Prim:  # noqa: N802
    return Prim("Db", format_double(value))


def Sg(value: float) -> Prim:  # noqa: N802
    return Prim("Sg", format_double(value))


def Dec(value: decimal.Decimal | int | str) -> Prim:  # noqa: N802
    return Prim("D", str(decimal.Decimal(value)))


def Char(value: str) -> Prim:  # noqa: N802
    """A .NET Char is written as its UTF-16 code unit number."""
    if len(value) != 1 or ord(value) > 0xFFFF:
        raise ValueError("a .NET Char is one UTF-16 code unit")
    return Prim("C", str(ord(value)))


def TimeSpan(value: dt.timedelta) -> Prim:  # noqa: N802
    return Prim("TS", format_duration(value))


def Uri(value: str) -> Prim:  # noqa: N802
    return Prim("URI", value)


def Version(value: str) -> Prim:  # noqa: N802
    return Prim("Version", value)


def XmlDocument(value: str) -> Prim:  # noqa: N802
    return Prim("XD", value)


def SecureString(hex_blob: str) -> Prim:  # noqa: N802
    """An `SS` element (a DPAPI or session-key protected string); the writer never encrypts anything."""
    return Prim("SS", hex_blob)


# Elements whose text is a .NET string and therefore `_xHHHH_`-escaped.
STRING_TAGS = frozenset({"S", "URI", "XD", "Version"})


def Enum(  # noqa: N802 - reads like the PowerShell type it describes
    type_name: str, text: str, value: int, *, flatten: bool | None = None
) -> Obj:
    """An enum or flags value as EMS exports it: `Obj` with `ToString` (`Tls, BasicAuth`) and `I32`.

    Exchange enums are flattened to `<S>` in the deserialized form by default; pass `flatten=False`
    for one that plain remoting keeps as an object.
    """
    if flatten is None:
        flatten = type_name.startswith("Microsoft.Exchange.")
    return Obj((type_name, *_ENUM_BASE), to_string=text, value=I32(value), flatten=flatten)


def _qualified(type_name: str) -> str:
    if type_name.startswith("System."):
        return f"{type_name}, {_MSCORLIB}"
    assembly = type_name.rsplit(".", 1)[0] if "." in type_name else type_name
    if type_name.startswith("Microsoft.Exchange.Data.Directory."):
        assembly = "Microsoft.Exchange.Data.Directory"
    elif type_name.startswith("Microsoft.Exchange.Data."):
        assembly = "Microsoft.Exchange.Data"
    return f"{type_name}, {assembly}, {_EXCHANGE_ASSEMBLY}"


def Multi(  # noqa: N802
    items: Iterable[Value], item_type: str = "System.String", *, ad: bool = False
) -> Obj:
    """A `MultiValuedProperty` (or `ADMultiValuedProperty` when `ad`) holding `items` in an `LST`."""
    generic = f"[[{_qualified(item_type)}]]"
    names: tuple[str, ...] = (
        f"Microsoft.Exchange.Data.MultiValuedProperty`1{generic}",
        "Microsoft.Exchange.Data.MultiValuedPropertyBase",
        "System.Object",
    )
    if ad:
        names = (f"Microsoft.Exchange.Data.Directory.ADMultiValuedProperty`1{generic}", *names)
    return Obj(names, items=list(items))


def ExValue(type_names: Sequence[str], to_string: str, props: Mapping[str, Value] | None = None) -> Obj:  # noqa: N802
    """A nested Exchange value type (Fqdn, AddressSpace, IPRange...): props, a blob, flattened remotely."""
    names = tuple(type_names)
    if not names or names[-1] != "System.Object":
        names = (*names, "System.Object")
    return Obj(names, to_string=to_string, props=dict(props or {}), blob=True, flatten=True)


_AD_OBJECT_ID_TYPES = (
    "Microsoft.Exchange.Data.Directory.ADObjectId",
    "Microsoft.Exchange.Data.ObjectId",
    "System.Object",
)


def AdObjectId(  # noqa: N802
    display: str,
    *,
    dn: str | None = None,
    guid: uuid.UUID | None = None,
    domain: str = "corp.fabrikam.com",
    partition_guid: uuid.UUID | None = None,
) -> Obj:
    """An `ADObjectId` such as an `Identity` (`EX01\\Default Frontend EX01`): ToString is what Exchange
    prints; the props mirror a real export. The `Name` is the last `\\` part of `display`."""
    name = display.rsplit("\\", 1)[-1]
    if dn is None:
        dn = f"CN={name},DC=" + ",DC=".join(domain.split("."))
    first, _, rest = dn.partition(",")
    parent = rest.split(",", 1)[0].partition("=")[2] if rest else ""
    zero = uuid.UUID(int=0)
    return ExValue(
        _AD_OBJECT_ID_TYPES,
        display,
        {
            "OrgHierarchyToIgnore": None,
            "IsDeleted": False,
            "Rdn": first,
            "Parent": parent,
            "Depth": dn.count(","),
            "DistinguishedName": dn,
            "IsRelativeDn": False,
            "DomainId": domain,
            "PartitionGuid": partition_guid or zero,
            "PartitionFQDN": domain,
            "ObjectGuid": guid or zero,
            "Name": name,
        },
    )


def AddressSpace(text: str) -> Obj:  # noqa: N802
    """`SMTP:*;1` / `smtp:contoso.com;10` (the type's case is kept as typed, like Exchange does)."""
    kind, _, rest = text.partition(":")
    address, _, cost = rest.rpartition(";")
    if not address:
        address, cost = rest, "1"
    smtp = kind.lower() == "smtp"
    return ExValue(
        ("Microsoft.Exchange.Data.AddressSpace",),
        text,
        {
            "Address": address,
            "Type": kind,
            "Cost": int(cost),
            "IncludeSubDomains": address.startswith("*"),
            "Domain": address.removeprefix("*.") if smtp else None,
            "IsSmtpType": smtp,
            "IsX400Type": kind.lower() == "x400",
            "X400Address": None,
        },
    )


def _ip_address(text: str) -> Obj:
    # Property order as System.Net.IPAddress serializes: Address only exists for IPv4.
    props: dict[str, Value]
    if ":" in text:
        props = {"AddressFamily": "InterNetworkV6", "ScopeId": I64(0)}
    else:
        octets = bytes(int(p) for p in text.split("."))
        props = {"Address": I64(int.from_bytes(octets, "little")), "AddressFamily": "InterNetwork"}
    props.update(
        {
            "IsIPv6Multicast": False,
            "IsIPv6LinkLocal": False,
            "IsIPv6SiteLocal": False,
            "IsIPv6Teredo": False,
            "IsIPv4MappedToIPv6": False,
        }
    )
    return Obj(
        ("System.Net.IPAddress", "System.Object"), to_string=text, props=props, ms={"IPAddressToString": text}
    )


def IPBinding(text: str) -> Obj:  # noqa: N802
    """`0.0.0.0:25` or `[::]:25`."""
    host, _, port = text.rpartition(":")
    address = host.strip("[]")
    return ExValue(
        ("Microsoft.Exchange.Data.IPBinding", "System.Net.IPEndPoint", "System.Net.EndPoint"),
        text,
        {
            "Port": int(port),
            "AddressFamily": "InterNetworkV6" if ":" in address else "InterNetwork",
            "Address": _ip_address(address),
        },
    )


def IPRange(text: str) -> Obj:  # noqa: N802
    """`0.0.0.0-255.255.255.255`, `10.20.30.0/24` or `192.0.2.7`, with Exchange's RangeFormat."""
    import ipaddress

    if "-" in text:
        low, high = (ipaddress.ip_address(p) for p in text.split("-", 1))
        fmt = "LoHi"
    elif "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        low, high = net.network_address, net.broadcast_address
        fmt = "CIDR"
    else:
        low = high = ipaddress.ip_address(text)
        fmt = "SingleAddress"
    return ExValue(
        ("Microsoft.Exchange.Data.IPRange",),
        text,
        {
            "LowerBound": str(low),
            "UpperBound": str(high),
            "RangeFormat": fmt,
            # Exchange prints the range size as an IPv6 address (`::1:0:0` for all of IPv4).
            "Size": str(ipaddress.IPv6Address(min(int(high) - int(low) + 1, 2**128 - 1))),
            "Expression": text,
        },
    )


def SmtpX509Identifier(text: str) -> Obj:  # noqa: N802
    """`TlsCertificateName`: `<I>issuer<S>subject` (issuer optional)."""
    issuer: str | None = None
    subject = text
    if text.startswith("<I>") and "<S>" in text:
        issuer, subject = text[3:].split("<S>", 1)
    elif text.startswith("<S>"):
        subject = text[3:]
    cn = next((p.strip()[3:] for p in subject.split(",") if p.strip().upper().startswith("CN=")), None)
    return ExValue(
        ("Microsoft.Exchange.Data.SmtpX509Identifier",),
        text,
        {"CertificateSubject": subject, "CertificateIssuer": issuer, "SubjectCommonName": cn},
    )


def Fqdn(text: str) -> Obj:  # noqa: N802
    return ExValue(
        ("Microsoft.Exchange.Data.Fqdn", "Microsoft.Exchange.Data.SmtpDomain"), text, {"Domain": text}
    )


def SmtpDomain(text: str, *, with_subdomains: bool = False) -> Obj:  # noqa: N802
    if with_subdomains:
        return ExValue(
            ("Microsoft.Exchange.Data.SmtpDomainWithSubdomains",),
            text,
            {
                "IncludeSubDomains": text.startswith("*"),
                "IsStar": text == "*",
                "Domain": text.removeprefix("*."),
                "SmtpDomain": text.removeprefix("*."),
                "Address": text,
            },
        )
    return ExValue(("Microsoft.Exchange.Data.SmtpDomain",), text, {"Domain": text})


def SmartHost(text: str) -> Obj:  # noqa: N802
    is_ip = bool(re.fullmatch(r"\[?[0-9.:a-fA-F]+\]?", text)) and any(c.isdigit() for c in text)
    return ExValue(
        ("Microsoft.Exchange.Data.SmartHost",),
        text,
        {
            "Address": _ip_address(text.strip("[]") if is_ip else "0.0.0.0"),  # noqa: S104 - Exchange's own
            "IsIPAddress": is_ip,
            "Domain": None if is_ip else text,
        },
    )


def exchange_object(
    type_names: Sequence[str],
    to_string: str,
    props: Mapping[str, Value],
    *,
    computer_name: str | None = None,
    runspace_id: uuid.UUID | None = None,
    show_computer_name: bool = False,
) -> Obj:
    """A top-level Exchange object with the `MS` a remoting session adds (PSComputerName, RunspaceId,
    PSShowComputerName) and its SerializationData blob."""
    ms: dict[str, Value] = {}
    if computer_name is not None:
        ms["PSComputerName"] = computer_name
        ms["RunspaceId"] = runspace_id or uuid.UUID(int=0)
        ms["PSShowComputerName"] = show_computer_name
    return Obj(tuple(type_names), to_string=to_string, props=dict(props), ms=ms, blob=True)


# --- lexical forms -----------------------------------------------------------------------------


def format_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value).replace("e", "E")


def format_datetime(value: dt.datetime) -> str:
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}0".rstrip("0")
    offset = value.utcoffset()
    if offset is None:
        return text  # DateTimeKind.Unspecified
    if value.tzinfo is dt.UTC:
        # DateTimeKind.Utc. A Local time at offset 0 keeps "+00:00": give it a named zero-offset
        # timezone, since `timezone(timedelta(0))` *is* `UTC` in Python.
        return text + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def format_duration(value: dt.timedelta) -> str:
    """XmlConvert.ToString(TimeSpan): `P1DT2H3M4.5S`, `PT0S`, `-PT5M`."""
    ticks = (value.days * 86_400 + value.seconds) * 10_000_000 + value.microseconds * 10
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    days, rem = divmod(ticks, 864_000_000_000)
    hours, rem = divmod(rem, 36_000_000_000)
    minutes, rem = divmod(rem, 600_000_000)
    seconds, frac = divmod(rem, 10_000_000)
    out = f"{sign}P"
    if days:
        out += f"{days}D"
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or frac:
        time += f"{seconds}" + (f".{frac:07d}".rstrip("0") if frac else "") + "S"
    if time or not days:
        out += "T" + (time or "0S")
    return out
