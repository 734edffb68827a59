"""The streaming CLIXML reader on real Exchange exports, every encoding, and hand-made CLIXML."""

from __future__ import annotations

import codecs
import datetime as dt
import decimal
import itertools
import os
import re
import tracemalloc
import uuid
from pathlib import Path

import pytest

from exconn.clixml.objects import Form, PSObject, PSValue, SecureString
from exconn.clixml.reader import SERIALIZATION_DATA, iter_clixml, unescape

REAL = Path(__file__).parents[2] / "shared/fixtures/real"
NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'


def real_dir() -> Path:
    if not REAL.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{REAL} is missing: CI must have the real exports")
        pytest.skip(f"{REAL} is missing (set CI to make this a failure)")
    return REAL


def real(name: str) -> Path:
    return real_dir() / name


def read(path: Path) -> list[PSValue]:
    return list(iter_clixml(path))


def objects(path: Path) -> list[PSObject]:
    values = read(path)
    assert all(isinstance(value, PSObject) for value in values)
    return [value for value in values if isinstance(value, PSObject)]


def write(tmp_path: Path, body: str, name: str = "export.xml") -> Path:
    path = tmp_path / name
    path.write_text(f'<Objs Version="1.1.0.1" {NS}>{body}</Objs>', encoding="utf-8")
    return path


def prop(obj: PSValue, name: str) -> PSValue:
    assert isinstance(obj, PSObject)
    assert obj.has(name), f"{name} missing from {obj.type_name}"
    return obj.get(name)


def obj(value: PSValue) -> PSObject:
    assert isinstance(value, PSObject)
    return value


def summary(value: PSValue, depth: int = 0) -> object:
    """A comparable rendering of a value tree (Refs may form cycles, so depth-limited)."""
    if not isinstance(value, PSObject) or depth > 12:
        return value if not isinstance(value, PSObject) else "..."
    return (
        value.type_names,
        value.form,
        value.to_string,
        {k: summary(v, depth + 1) for k, v in value.props.items()},
        {k: summary(v, depth + 1) for k, v in value.extended.items()},
        None if value.items is None else [summary(v, depth + 1) for v in value.items],
        summary(value.value, depth + 1),
    )


# --- the real exports --------------------------------------------------------------------------


def real_exports() -> list[str]:
    return sorted(p.name for p in REAL.glob("*.xml")) if REAL.is_dir() else ["(real exports missing)"]


@pytest.mark.parametrize("name", real_exports())
def test_every_real_export_reads_completely(name: str) -> None:
    path = real(name)
    text = path.read_text(encoding="utf-8-sig")
    top_level = len(re.findall(r"^  <Obj ", text, flags=re.MULTILINE))
    found = objects(path)
    assert len(found) == top_level
    for value in found:
        assert value.type_names and not value.type_name.startswith("Deserialized.")
        assert value.form is Form.LIVE
        assert SERIALIZATION_DATA not in value.extended


def test_send_connector_mail_to_o365() -> None:
    (connector,) = objects(real("CSS-Exchange_GetSendConnector.xml"))
    assert (
        connector.type_name == "Microsoft.Exchange.Data.Directory.SystemConfiguration.SmtpSendConnectorConfig"
    )
    assert connector.to_string == "Mail to O365"
    assert prop(connector, "RequireTLS") is False
    assert prop(connector, "TlsAuthLevel") is None
    assert prop(connector, "CloudServicesMailEnabled") is True
    assert prop(connector, "Port") == 25
    certificate_name = obj(prop(connector, "TlsCertificateName"))
    assert certificate_name.to_string == "<I>CN=localhost<S>CN=localhost"
    assert prop(certificate_name, "CertificateIssuer") == "CN=localhost"
    address_spaces = obj(prop(connector, "AddressSpaces"))
    assert [obj(item).to_string for item in address_spaces.items or []] == ["SMTP:*;1"]
    smart_host = obj((obj(prop(connector, "SmartHosts")).items or [])[0])
    assert smart_host.to_string == "microsoft-com.mail.protection.outlook.com"
    # <Ref N="SourceIPAddress" RefId="4"/> is the very object built for SmartHosts[0].Address.
    assert prop(connector, "SourceIPAddress") is prop(smart_host, "Address")
    assert prop(connector, "WhenChangedUTC") == dt.datetime(2022, 3, 23, 17, 0, 30, tzinfo=dt.UTC)
    assert prop(connector, "Guid") == uuid.UUID("0292c782-9804-4d8b-ae0e-e1c7ab90852b")
    assert prop(connector, "PSComputerName") == "win-ctd3l0rgen4.exlab.dom"


def test_send_connector_relay_to_m365_keeps_enum_and_case() -> None:
    (connector,) = objects(real("CSS-Exchange_GetSendConnectorConfiguredToRelayToM365.xml"))
    assert connector.to_string == "My company to Office 365"
    level = obj(prop(connector, "TlsAuthLevel"))
    assert (level.to_string, level.value) == ("CertificateValidation", 2)
    assert "System.Enum" in level.type_names
    assert prop(connector, "RequireTLS") is True
    assert prop(connector, "TlsCertificateName") is None
    assert obj(prop(connector, "Fqdn")).to_string == "mail.contoso.com"
    (space,) = obj(prop(connector, "AddressSpaces")).items or []
    assert obj(space).to_string == "smtp:*;1"
    assert prop(space, "Type") == "smtp"


ALL_SERVERS = "ExchangeUsers, ExchangeServers, ExchangeLegacyServers"
RECEIVE = {
    # name: (AuthMechanism I32, PermissionGroups, bindings, TransportRole, DomainSecureEnabled, caps)
    "Default": (31, ALL_SERVERS, {"0.0.0.0:2525", "[::]:2525"}, "HubTransport", False, []),
    "Client Proxy": (31, "ExchangeUsers, ExchangeServers", {"0.0.0.0:465", "[::]:465"}, "HubTransport",
                     False, []),
    "Default Frontend": (31, "AnonymousUsers, ExchangeServers, ExchangeLegacyServers",
                         {"0.0.0.0:25", "[::]:25"}, "FrontendTransport", True,
                         ["fabrikam.com:AcceptCloudServicesMail"]),
    "Outbound Proxy Frontend": (31, "ExchangeServers", {"0.0.0.0:717", "[::]:717"}, "FrontendTransport",
                                True, []),
    "Client Frontend": (15, "ExchangeUsers", {"0.0.0.0:587", "[::]:587"}, "FrontendTransport", False, []),
}  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["CSS-Exchange_GetReceiveConnector.xml", "CSS-Exchange_GetReceiveConnectorEmptyTlsCertificateName.xml"],
)
def test_the_five_default_receive_connectors(name: str) -> None:
    connectors = objects(real(name))
    by_name = {str(prop(c, "Name")).removesuffix(" WIN-CTD3L0RGEN4"): c for c in connectors}
    assert set(by_name) == set(RECEIVE)
    for short, (auth, groups, bindings, role, domain_secure, capabilities) in RECEIVE.items():
        connector = by_name[short]
        assert connector.to_string == f"WIN-CTD3L0RGEN4\\{short} WIN-CTD3L0RGEN4"
        mechanism = obj(prop(connector, "AuthMechanism"))
        assert mechanism.value == auth
        assert obj(prop(connector, "PermissionGroups")).to_string == groups
        assert {obj(b).to_string for b in obj(prop(connector, "Bindings")).items or []} == bindings
        assert obj(prop(connector, "TransportRole")).to_string == role
        assert prop(connector, "DomainSecureEnabled") is domain_secure
        caps = obj(prop(connector, "TlsDomainCapabilities")).items or []
        assert [obj(c).to_string for c in caps] == capabilities
        assert prop(connector, "RequireTLS") is False
    frontend = by_name["Default Frontend"]
    certificate_name = prop(frontend, "TlsCertificateName")
    if "Empty" in name:
        assert certificate_name is None
    else:
        assert obj(certificate_name).to_string == "<I>CN=WIN-CTD3L0RGEN4<S>CN=WIN-CTD3L0RGEN4"


def test_refs_resolve_across_top_level_objects() -> None:
    connectors = objects(real("CSS-Exchange_GetReceiveConnector.xml"))
    organization_ids = [prop(c, "OrganizationId") for c in connectors]
    # Defined once in the first connector (RefId 34), pointed back at by the four later ones.
    assert all(o is organization_ids[0] for o in organization_ids)
    assert obj(organization_ids[0]).type_name == "Microsoft.Exchange.Data.Directory.OrganizationId"
    for connector in connectors:
        assert prop(connector, "Id") is prop(connector, "Identity")
    # TNRef RefId="16" in a later connector names the ADObjectId type defined by the first one.
    assert obj(prop(connectors[4], "Server")).type_name == "Microsoft.Exchange.Data.Directory.ADObjectId"


def test_certificate_export_unescapes_to_string() -> None:
    certificates = objects(real("CSS-Exchange_GetExchangeCertificate_sameLab.xml"))
    assert len(certificates) == 4
    first = certificates[0]
    assert first.to_string is not None
    assert first.to_string.startswith("[Subject]\r\n  CN=Microsoft Exchange Server Auth Certificate\r\n")
    raw = prop(first, "RawData")
    assert isinstance(raw, bytes) and raw[:2] == b"\x30\x82"  # DER SEQUENCE


@pytest.mark.parametrize("encoding", ["utf-16-le-bom", "utf-8-no-bom"])
def test_real_exports_in_every_encoding(tmp_path: Path, encoding: str) -> None:
    for source in sorted(real_dir().glob("*.xml")):
        text = source.read_text(encoding="utf-8-sig")
        target = tmp_path / source.name
        if encoding == "utf-16-le-bom":
            target.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
        else:
            target.write_bytes(text.encode("utf-8"))
        assert [summary(v) for v in read(target)] == [summary(v) for v in read(source)], source.name


# --- hand-made CLIXML ----------------------------------------------------------------------------


def test_every_primitive(tmp_path: Path) -> None:
    body = """
<Obj RefId="0"><TN RefId="0"><T>Test.All</T><T>System.Object</T></TN><ToString>all</ToString><Props>
  <S N="S">a_x000A_b</S><S N="Empty"></S><C N="C">65</C><B N="B">true</B>
  <DT N="DT">2024-02-29T12:34:56.1234567+02:00</DT><TS N="TS">P1DT2H3M4.5S</TS><TS N="Neg">-PT5S</TS>
  <By N="By">255</By><SB N="SB">-128</SB><U16 N="U16">65535</U16><I16 N="I16">-32768</I16>
  <U32 N="U32">4294967295</U32><I32 N="I32">-1</I32><U64 N="U64">18446744073709551615</U64>
  <I64 N="I64">-9223372036854775808</I64><Sg N="Sg">1.5</Sg><Db N="Db">-INF</Db>
    <D N="D">79228162514264337593543950335</D>
  <BA N="BA">AQID</BA><G N="G">792e5b37-4505-47ef-b7d2-8711bb7affa8</G>
    <URI N="URI">https://x.example/a_x0020_b</URI>
  <Version N="Version">15.2.1118.7</Version><XD N="XD">&lt;a/&gt;</XD><SBK N="SBK">Get-Date</SBK>
    <SS N="SS">AQAAAA==</SS>
  <Nil N="Nil" />
  <PR N="PR"><AV>Working</AV><AI>1</AI><Nil /><PI>-1</PI><PC>50</PC><T>Processing</T><SR>-1</SR>
    <SD>half</SD></PR>
</Props><MS><S N="Note">n</S><BA N="SerializationData">AAEAAAD/////AQAAAAAAAAA=</BA></MS></Obj>"""
    (value,) = objects(write(tmp_path, body))
    expected: dict[str, object] = {
        "S": "a\nb", "Empty": "", "C": "A", "B": True,
        "DT": dt.datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "TS": dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5), "Neg": dt.timedelta(seconds=-5),
        "By": 255, "SB": -128, "U16": 65535, "I16": -32768, "U32": 4294967295, "I32": -1,
        "U64": 18446744073709551615, "I64": -9223372036854775808, "Sg": 1.5, "Db": float("-inf"),
        "D": decimal.Decimal("79228162514264337593543950335"), "BA": b"\x01\x02\x03",
        "G": uuid.UUID("792e5b37-4505-47ef-b7d2-8711bb7affa8"), "URI": "https://x.example/a b",
        "Version": "15.2.1118.7", "XD": "<a/>", "SBK": "Get-Date", "SS": SecureString("AQAAAA=="),
        "Nil": None,
    }  # fmt: skip
    assert {k: v for k, v in value.props.items() if k != "PR"} == expected
    progress = obj(value.props["PR"])
    assert progress.props["Activity"] == "Working"
    assert progress.props["PercentComplete"] == 50
    assert progress.props["CurrentOperation"] is None
    assert value.extended == {"Note": "n"}


def test_containers_refs_and_tnrefs(tmp_path: Path) -> None:
    body = """
<Obj RefId="0"><TN RefId="0"><T>Test.Parent</T><T>System.Object</T></TN><ToString>p</ToString><Props>
  <Obj N="List" RefId="1"><TN RefId="1"><T>System.Collections.ArrayList</T></TN><LST><S>a</S><I32>2</I32>
    <Nil /></LST></Obj>
  <Obj N="Queue" RefId="2"><TNRef RefId="1" /><QUE><S>q</S></QUE></Obj>
  <Obj N="Stack" RefId="3"><TNRef RefId="1" /><STK><S>s</S></STK></Obj>
  <Obj N="Enum" RefId="4"><TNRef RefId="1" /><IE><S>e</S></IE></Obj>
  <Obj N="Dict" RefId="5"><TN RefId="2"><T>System.Collections.Hashtable</T></TN>
    <DCT><En><S N="Key">k</S><I32 N="Value">1</I32></En><En><I32 N="Key">2</I32><Ref N="Value" RefId="1" />
      </En></DCT></Obj>
  <Ref N="Self" RefId="0" />
</Props></Obj>
<Obj RefId="6"><TNRef RefId="0" /><ToString>second</ToString><Props><Ref N="Shared" RefId="1" /></Props></Obj>
<S>bare</S>"""
    first, second, bare = read(write(tmp_path, body))
    parent = obj(first)
    listed = obj(parent.props["List"])
    assert listed.items == ["a", 2, None]
    assert obj(parent.props["Queue"]).items == ["q"]
    assert obj(parent.props["Stack"]).items == ["s"]
    assert obj(parent.props["Enum"]).items == ["e"]
    assert obj(parent.props["Queue"]).type_names == ("System.Collections.ArrayList",)
    assert obj(parent.props["Dict"]).dct == [("k", 1), (2, listed)]
    assert parent.props["Self"] is parent  # a reference cycle back to the object being built
    assert obj(second).type_names == ("Test.Parent", "System.Object")
    assert obj(second).props["Shared"] is listed
    assert bare == "bare"


def test_deserialized_and_selected_forms(tmp_path: Path) -> None:
    body = """
<Obj RefId="0"><TN RefId="0">
  <T>Deserialized.Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector</T>
  <T>Deserialized.System.Object</T></TN><ToString>EX1\\Default Frontend EX1</ToString>
  <Props><S N="AuthMechanism">Tls, BasicAuth</S></Props></Obj>
<Obj RefId="1"><TN RefId="1">
  <T>Selected.Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector</T>
  <T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>
  <MS><S N="Name">Default Frontend EX1</S></MS></Obj>"""
    deserialized, selected = objects(write(tmp_path, body))
    assert deserialized.form is Form.DESERIALIZED
    assert deserialized.type_names == (
        "Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector",
        "System.Object",
    )
    assert deserialized.get("AuthMechanism") == "Tls, BasicAuth"  # flattened past the depth
    assert selected.form is Form.SELECTED
    assert selected.type_name == "Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector"
    assert selected.get("name") == "Default Frontend EX1"  # case-insensitive, like PowerShell


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("no escapes", "no escapes"),
        ("a_x000D__x000A_b", "a\r\nb"),
        ("_xD83D__xDE00_", "\U0001f600"),  # a surrogate pair becomes one character
        ("_x005F_x0041_", "_x0041_"),  # the escaped underscore protects what follows
        ("_x005f_", "_"),
        ("_xD83D_", "\ud83d"),  # a lone surrogate is kept, not dropped
        ("_x41_ _xZZZZ_", "_x41_ _xZZZZ_"),
    ],
)
def test_unescape(escaped: str, plain: str) -> None:
    assert unescape(escaped) == plain


def test_escapes_in_names_and_type_names(tmp_path: Path) -> None:
    body = """<Obj RefId="0"><TN RefId="0"><T>Odd_x0020_Type</T></TN>
<MS><S N="Name_x0020_With_x0020_Spaces">_x00E9_t_x00E9_</S></MS></Obj>"""
    (value,) = objects(write(tmp_path, body))
    assert value.type_names == ("Odd Type",)
    assert value.extended == {"Name With Spaces": "été"}


# --- memory ------------------------------------------------------------------------------------


def write_many(path: Path, count: int) -> None:
    blob = "QUJD" * 100  # a 400-character stand-in for Exchange's SerializationData
    with path.open("w", encoding="utf-8") as out:
        out.write(f'<Objs Version="1.1.0.1" {NS}>')
        out.write(
            '<Obj RefId="0"><TN RefId="0"><T>Test.Connector</T><T>System.Object</T></TN>'
            '<ToString>c0</ToString><Props><S N="Name">c0</S></Props></Obj>'
        )
        for i in range(1, count):
            out.write(
                f'<Obj RefId="{i}"><TNRef RefId="0" /><ToString>c{i}</ToString><Props><S N="Name">c{i}</S>'
                f'<B N="RequireTLS">false</B><I32 N="Port">{i}</I32><Ref N="Shared" RefId="0" /></Props>'
                f'<MS><BA N="SerializationData">{blob}</BA></MS></Obj>'
            )
        out.write("</Objs>")


@pytest.mark.slow
def test_memory_stays_flat_on_50k_objects(tmp_path: Path) -> None:
    path = tmp_path / "many.xml"
    write_many(path, 50_000)
    bound = 3 * 1024 * 1024

    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_clixml(path))
        _, streaming_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        # Holding objects, as a non-streaming parse must, passes the bound after a fifth of the
        # file already; the whole file would need five times that.
        kept = list(itertools.islice(iter_clixml(path), 10_000))
        _, kept_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 50_000 and len(kept) == 10_000
    assert streaming_peak < bound, f"streaming peak {streaming_peak / 1e6:.1f} MB"
    assert kept_peak > bound, f"peak holding 10k objects {kept_peak / 1e6:.1f} MB"
