"""A small typed CLIXML writer (MS-PSRP §2.2.5) that builds documents shaped like real Exchange exports.

Used by `scripts/make_samples.py`, the benchmark and the tests to generate exports, and to save
live-collected snapshots. A connector is described as data: a top-level `Obj` whose properties are
Python values or the typed helpers below (`Enum`, `Multi`, `AdObjectId`, `ExValue`, `I64`, ...):

    conn = exchange_object(
        RECEIVE_CONNECTOR_TYPES, "EX01\\Relay",
        {"AuthMechanism": Enum(AUTH_MECHANISMS_TYPE, "Tls, BasicAuth", 5), "RequireTLS": False},
        computer_name="ex01.corp.fabrikam.com",
    )
    data = to_bytes([conn], form="live", encoding="utf-16")

Three forms, as connectors really arrive:
- `live`: types as the Exchange Management Shell exports them (enums are `Obj` + `ToString` + `I32`);
- `deserialized`: every type name prefixed `Deserialized.`, nested Exchange values flattened to their
  string form (plain remoting has no Exchange type data to rebuild them), multi-valued wrappers kept;
- `selected`: `Select-Object` output, a `Selected.<type>` PSCustomObject whose selected properties are
  note properties in `MS`.

The writer builds strings directly (no tree), so a large export costs one pass and little memory.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import random
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

__all__ = [
    "ACCEPTED_DOMAIN_TYPES",
    "AUTH_MECHANISMS_TYPE",
    "EXCHANGE_CERTIFICATE_TYPES",
    "EXCHANGE_SERVER_TYPES",
    "INBOUND_CONNECTOR_TYPES",
    "OUTBOUND_CONNECTOR_TYPES",
    "PERMISSION_GROUPS_TYPE",
    "PS_NAMESPACE",
    "RECEIVE_CONNECTOR_TYPES",
    "SEND_CONNECTOR_TYPES",
    "TRANSPORT_CONFIG_TYPES",
    "BlobMode",
    "ClixmlWriter",
    "Encoding",
    "Form",
    "Obj",
    "Prim",
    "Value",
    "AdObjectId",
    "AddressSpace",
    "By",
    "Char",
    "Db",
    "Dec",
    "Enum",
    "ExValue",
    "Fqdn",
    "I16",
    "I32",
    "I64",
    "IPBinding",
    "IPRange",
    "Multi",
    "SB",
    "SecureString",
    "Sg",
    "SmartHost",
    "SmtpDomain",
    "SmtpX509Identifier",
    "TimeSpan",
    "U16",
    "U32",
    "U64",
    "Uri",
    "Version",
    "XmlDocument",
    "encode",
    "escape_string",
    "exchange_object",
    "to_bytes",
    "to_xml",
    "write_file",
]

PS_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"

Form: TypeAlias = Literal["live", "deserialized", "selected"]
Encoding: TypeAlias = Literal["utf-16", "utf-8-sig", "utf-8"]
BlobMode: TypeAlias = Literal["none", "short", "realistic"]

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
    return Prim("Db", _format_double(value))


def Sg(value: float) -> Prim:  # noqa: N802
    return Prim("Sg", _format_double(value))


def Dec(value: decimal.Decimal | int | str) -> Prim:  # noqa: N802
    return Prim("D", str(decimal.Decimal(value)))


def Char(value: str) -> Prim:  # noqa: N802
    """A .NET Char is written as its UTF-16 code unit number."""
    if len(value) != 1 or ord(value) > 0xFFFF:
        raise ValueError("a .NET Char is one UTF-16 code unit")
    return Prim("C", str(ord(value)))


def TimeSpan(value: dt.timedelta) -> Prim:  # noqa: N802
    return Prim("TS", _format_duration(value))


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
_STRING_TAGS = frozenset({"S", "URI", "XD", "Version"})


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


# --- escaping and lexical forms --------------------------------------------------------------------

# `_` before x/X is escaped (else a reader would take `_x000D_` text for an escape); C0/C1 controls,
# surrogates, non-BMP characters (written as their UTF-16 pair) and the XML non-characters too.
_NEEDS_ESCAPE = re.compile("_(?=[xX])|[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\U00010000-\U0010ffff]")


def _escape_match(match: re.Match[str]) -> str:
    char = match.group(0)
    if char == "_":
        return "_x005F_"
    units = char.encode("utf-16-be", "surrogatepass")
    return "".join(f"_x{units[i]:02X}{units[i + 1]:02X}_" for i in range(0, len(units), 2))


def escape_string(value: str) -> str:
    """The `_xHHHH_` escaping PowerShell applies to string content (before XML escaping)."""
    return _NEEDS_ESCAPE.sub(_escape_match, value)


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(value: str) -> str:
    return _xml_text(value).replace('"', "&quot;")


def _text(value: str) -> str:
    return _xml_text(escape_string(value))


def _format_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value).replace("e", "E")


def _format_datetime(value: dt.datetime) -> str:
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


def _format_duration(value: dt.timedelta) -> str:
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


def _primitive(value: Value) -> Prim | None:
    """The element for a plain Python value, or None when the value is not a primitive."""
    if isinstance(value, Prim):
        return value
    if isinstance(value, bool):
        return Prim("B", "true" if value else "false")
    if isinstance(value, int):
        return Prim("I32", str(value)) if -(2**31) <= value < 2**31 else Prim("I64", str(value))
    if isinstance(value, float):
        return Prim("Db", _format_double(value))
    if isinstance(value, str):
        return Prim("S", value)
    if isinstance(value, bytes):
        return Prim("BA", base64.b64encode(value).decode("ascii"))
    if isinstance(value, dt.datetime):
        return Prim("DT", _format_datetime(value))
    if isinstance(value, dt.timedelta):
        return Prim("TS", _format_duration(value))
    if isinstance(value, uuid.UUID):
        return Prim("G", str(value))
    if isinstance(value, decimal.Decimal):
        return Prim("D", str(value))
    return None


_ARRAY_TYPES = ("System.Object[]", "System.Array", "System.Object")


# --- the writer ------------------------------------------------------------------------------------


class ClixmlWriter:
    """Writes one CLIXML document; RefIds and TN RefIds are document-wide, as in a real export.

    `select` (selected form) lists the properties `Select-Object` kept, in order; a name the object
    does not have becomes `<Nil>`, as Select-Object makes it. `nested_form` chooses how values inside
    a selected object look ("live" inside EMS, "deserialized" over plain remoting). `max_depth`
    turns objects nested deeper than it into their ToString, as Export-Clixml -Depth does.
    """

    def __init__(
        self,
        form: Form = "live",
        *,
        serialization_data: BlobMode = "none",
        seed: int = 0,
        select: Sequence[str] | None = None,
        nested_form: Literal["live", "deserialized"] = "live",
        max_depth: int | None = None,
        indent: str = "  ",
        newline: str = "\r\n",
        blob_ratio: float = 2.4,
    ) -> None:
        if form not in ("live", "deserialized", "selected"):
            raise ValueError(f"unknown form {form!r}")
        self.form = form
        self.serialization_data = serialization_data
        self.select = list(select) if select is not None else None
        self.nested_form = nested_form
        self.max_depth = max_depth
        self.indent = indent
        self.newline = newline
        # Real exports are ~70 % SerializationData: blob chars = ratio x the object's own other chars.
        self.blob_ratio = blob_ratio
        self._rng = random.Random(seed)  # noqa: S311 - filler bytes, not secrets
        self._next_ref = 0
        self._tn_refs: dict[tuple[str, ...], int] = {}
        # Keyed by id(); the object is kept alive so its id cannot be reused by another object.
        self._obj_refs: dict[int, tuple[Obj, int]] = {}
        self._out: list[str] = []
        self._own: list[int] = [0]  # chars written per open object, for the blob size

    # -- public --
    def document(self, objects: Iterable[Value]) -> str:
        return "".join(self.iter_chunks(objects))

    def iter_chunks(self, objects: Iterable[Value]) -> Iterator[str]:
        """The document in pieces (one per top-level object), so a large export streams to disk."""
        yield f'<Objs Version="1.1.0.1" xmlns="{PS_NAMESPACE}">{self.newline}'
        for obj in objects:
            self._out = []
            self._value(obj, None, 1, top=True)
            yield "".join(self._out)
        yield "</Objs>"

    # -- internals --
    def _emit(self, text: str) -> None:
        self._out.append(text)
        self._own[-1] += len(text)

    def _line(self, depth: int, text: str) -> None:
        self._emit(f"{self.indent * depth}{text}{self.newline}")

    def _type_names(self, obj: Obj, top: bool) -> tuple[str, ...]:
        names = obj.type_names
        if self.form == "selected" and top:
            return (f"Selected.{names[0]}", "System.Management.Automation.PSCustomObject", "System.Object")
        if self._deserialized(top):
            return tuple(n if n.startswith("Deserialized.") else f"Deserialized.{n}" for n in names)
        return names

    def _deserialized(self, top: bool) -> bool:
        if self.form == "deserialized":
            return True
        return self.form == "selected" and not top and self.nested_form == "deserialized"

    def _value(self, value: Value, name: str | None, depth: int, *, top: bool = False) -> None:
        n_attr = f' N="{_xml_attr(escape_string(name))}"' if name is not None else ""
        if value is None:
            self._line(depth, f"<Nil{n_attr} />")
            return
        prim = _primitive(value)
        if prim is not None:
            self._prim(prim, n_attr, depth)
            return
        if isinstance(value, list | tuple):
            value = Obj(_ARRAY_TYPES, items=list(value))
        assert isinstance(value, Obj)  # noqa: S101 - exhausted the Value union above
        self._obj(value, n_attr, depth, top)

    def _prim(self, prim: Prim, n_attr: str, depth: int) -> None:
        text = _text(prim.text) if prim.tag in _STRING_TAGS else _xml_text(prim.text)
        self._line(depth, f"<{prim.tag}{n_attr}>{text}</{prim.tag}>")

    def _obj(self, obj: Obj, n_attr: str, depth: int, top: bool) -> None:
        level = len(self._own) - 1  # objects already open around this one; top-level is 0, as -Depth counts
        flatten = obj.flatten and not top and self._deserialized(top)
        too_deep = self.max_depth is not None and level > self.max_depth
        if flatten or too_deep:
            if obj.to_string is None:
                self._line(depth, f"<Nil{n_attr} />")
            else:
                self._prim(Prim("S", obj.to_string), n_attr, depth)
            return
        seen = self._obj_refs.get(id(obj))
        if seen is not None:
            self._line(depth, f'<Ref{n_attr} RefId="{seen[1]}" />')
            return
        ref = self._next_ref
        self._next_ref += 1
        self._obj_refs[id(obj)] = (obj, ref)
        self._own.append(0)
        self._line(depth, f'<Obj{n_attr} RefId="{ref}">')
        inner = depth + 1
        names = self._type_names(obj, top)
        tn_ref = self._tn_refs.get(names)
        if tn_ref is not None:
            self._line(inner, f'<TNRef RefId="{tn_ref}" />')
        else:
            tn_ref = self._tn_refs[names] = len(self._tn_refs)
            self._line(inner, f'<TN RefId="{tn_ref}">')
            for type_name in names:
                self._line(inner + 1, f"<T>{_xml_text(type_name)}</T>")
            self._line(inner, "</TN>")
        selected = self.form == "selected" and top
        if obj.to_string is not None and not selected:
            if obj.to_string:
                self._line(inner, f"<ToString>{_text(obj.to_string)}</ToString>")
            else:
                self._line(inner, "<ToString />")
        if obj.value is not None:
            self._prim(obj.value, "", inner)
        if obj.items is not None:
            self._container(obj.container, obj.items, inner)
        if obj.dct is not None:
            self._dct(obj.dct, inner)
        if selected:
            self._selected_members(obj, inner)
        else:
            if obj.props:
                self._members("Props", obj.props, inner)
            ms: Mapping[str, Value] = obj.ms
            blob = self._blob() if obj.blob else None
            if ms or blob is not None:
                self._line(inner, "<MS>")
                for key, member in ms.items():
                    self._value(member, key, inner + 1)
                if blob is not None:
                    self._emit_blob(blob, inner + 1)
                self._line(inner, "</MS>")
        self._line(depth, "</Obj>")
        # A parent's blob is sized by its own content only: children carry their own blobs.
        self._own.pop()

    def _container(self, tag: str, items: Sequence[Value], depth: int) -> None:
        if not items:
            self._line(depth, f"<{tag} />")
            return
        self._line(depth, f"<{tag}>")
        for item in items:
            self._value(item, None, depth + 1)
        self._line(depth, f"</{tag}>")

    def _dct(self, entries: Sequence[tuple[Value, Value]], depth: int) -> None:
        if not entries:
            self._line(depth, "<DCT />")
            return
        self._line(depth, "<DCT>")
        for key, val in entries:
            self._line(depth + 1, "<En>")
            self._value(key, "Key", depth + 2)
            self._value(val, "Value", depth + 2)
            self._line(depth + 1, "</En>")
        self._line(depth, "</DCT>")

    def _members(self, tag: str, members: Mapping[str, Value], depth: int) -> None:
        self._line(depth, f"<{tag}>")
        for key, member in members.items():
            self._value(member, key, depth + 1)
        self._line(depth, f"</{tag}>")

    def _selected_members(self, obj: Obj, depth: int) -> None:
        names = self.select if self.select is not None else list(obj.props)
        if not names:
            return
        self._line(depth, "<MS>")
        for key in names:
            member = obj.props[key] if key in obj.props else obj.ms.get(key)
            self._value(member, key, depth + 1)
        self._line(depth, "</MS>")

    def _blob(self) -> str | None:
        if self.serialization_data == "none":
            return None
        if self.serialization_data == "short":
            size = 48
        else:
            size = max(48, int(self._own[-1] * self.blob_ratio * 3 / 4))
        return base64.b64encode(self._rng.randbytes(size)).decode("ascii")

    def _emit_blob(self, blob: str, depth: int) -> None:
        # Appended without counting it as the object's own content.
        self._out.append(f'{self.indent * depth}<BA N="SerializationData">{blob}</BA>{self.newline}')


def to_xml(
    objects: Iterable[Value],
    form: Form = "live",
    *,
    serialization_data: BlobMode = "none",
    seed: int = 0,
    select: Sequence[str] | None = None,
    nested_form: Literal["live", "deserialized"] = "live",
    max_depth: int | None = None,
    newline: str = "\r\n",
) -> str:
    """The CLIXML document text (see `ClixmlWriter` for the options)."""
    writer = ClixmlWriter(
        form,
        serialization_data=serialization_data,
        seed=seed,
        select=select,
        nested_form=nested_form,
        max_depth=max_depth,
        newline=newline,
    )
    return writer.document(objects)


_BOMS: dict[str, bytes] = {"utf-16": b"\xff\xfe", "utf-8-sig": b"\xef\xbb\xbf", "utf-8": b""}


def encode(text: str, encoding: Encoding) -> bytes:
    """`utf-16`: UTF-16LE with BOM (Windows PowerShell 5.1's Export-Clixml default); `utf-8-sig`:
    UTF-8 with BOM (5.1 `-Encoding UTF8`); `utf-8`: no BOM (PowerShell 7's default)."""
    if encoding not in _BOMS:
        raise ValueError(f"unknown encoding {encoding!r}")
    return _BOMS[encoding] + text.encode("utf-16-le" if encoding == "utf-16" else "utf-8")


def to_bytes(
    objects: Iterable[Value],
    form: Form = "live",
    encoding: Encoding = "utf-16",
    *,
    serialization_data: BlobMode = "none",
    seed: int = 0,
    select: Sequence[str] | None = None,
    nested_form: Literal["live", "deserialized"] = "live",
    max_depth: int | None = None,
    newline: str = "\r\n",
) -> bytes:
    text = to_xml(
        objects,
        form,
        serialization_data=serialization_data,
        seed=seed,
        select=select,
        nested_form=nested_form,
        max_depth=max_depth,
        newline=newline,
    )
    return encode(text, encoding)


def write_file(
    path: str | Path,
    objects: Iterable[Value],
    form: Form = "live",
    encoding: Encoding = "utf-16",
    *,
    serialization_data: BlobMode = "none",
    seed: int = 0,
    select: Sequence[str] | None = None,
    nested_form: Literal["live", "deserialized"] = "live",
    max_depth: int | None = None,
    newline: str = "\r\n",
) -> int:
    """Stream the document to `path` one top-level object at a time; returns the bytes written."""
    if encoding not in _BOMS:
        raise ValueError(f"unknown encoding {encoding!r}")
    writer = ClixmlWriter(
        form,
        serialization_data=serialization_data,
        seed=seed,
        select=select,
        nested_form=nested_form,
        max_depth=max_depth,
        newline=newline,
    )
    codec = "utf-16-le" if encoding == "utf-16" else "utf-8"
    with open(path, "wb") as handle:
        written = handle.write(_BOMS[encoding])
        for chunk in writer.iter_chunks(objects):
            written += handle.write(chunk.encode(codec))
    return written
