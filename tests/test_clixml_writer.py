"""The CLIXML writer: well-formed, faithful to PowerShell's escaping, shaped like real exports."""

from __future__ import annotations

import datetime as dt
import decimal
import filecmp
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from lxml import etree

from exconn.clixml.writer import (
    AUTH_MECHANISMS_TYPE,
    I64,
    PS_NAMESPACE,
    RECEIVE_CONNECTOR_TYPES,
    U16,
    AddressSpace,
    AdObjectId,
    By,
    Char,
    ClixmlWriter,
    Dec,
    Enum,
    Multi,
    Obj,
    SmtpX509Identifier,
    TimeSpan,
    Value,
    Version,
    encode,
    escape_string,
    exchange_object,
    to_bytes,
    to_xml,
    write_file,
)

psrpcore_types = pytest.importorskip("psrpcore.types")

ROOT = Path(__file__).resolve().parent.parent
NS = {"ps": PS_NAMESPACE}

TRICKY_STRINGS = [
    "",
    "  leading and trailing  ",
    "_x000D_",  # text that looks like an escape must survive as text
    "_X000d_ and _x and _xZZZZ_ and __x0041__",
    "a\r\nb\tc",
    "\x00\x01\x08\x0b\x0c\x1f\x7f\x80\x85\x9f",
    "😀 \U0001f4e7 \U0010fffd",  # non-BMP: written as UTF-16 surrogate pairs
    "' \u2018 \u2019 \u201a \u201b \" \u201c \u201d",  # every PowerShell quote character
    "&amp; <S> ]]> \"'",
    "\ufffe\uffff",
    "Zoë Ångström — 東京",
]


def deserialize(xml: str) -> list[object]:
    return list(psrpcore_types.deserialize_clixml(xml, None))


def connector(name: str = "EX01\\Relay") -> Obj:
    identity = AdObjectId(
        name, dn="CN=Relay,CN=SMTP Receive Connectors,CN=Protocols,CN=EX01,DC=corp,DC=example"
    )
    return exchange_object(
        RECEIVE_CONNECTOR_TYPES,
        name,
        {
            "AuthMechanism": Enum(AUTH_MECHANISMS_TYPE, "Tls, BasicAuth", 5),
            "RequireTLS": False,
            "TlsCertificateName": SmtpX509Identifier(
                "<I>CN=R11, O=Let's Encrypt, C=US<S>CN=mail.example.com"
            ),
            "AddressSpaces": Multi([AddressSpace("SMTP:*;1")], "Microsoft.Exchange.Data.AddressSpace"),
            "Name": name.rsplit("\\", 1)[-1],
            "Identity": identity,
            "Id": identity,
        },
        computer_name="ex01.corp.example",
    )


def type_names(xml: str | bytes) -> list[list[str]]:
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    out = []
    for obj in root.findall("ps:Obj", NS):
        tn = obj.find("ps:TN", NS)
        if tn is None:
            ref = obj.find("ps:TNRef", NS)
            assert ref is not None
            tn = root.find(f".//ps:TN[@RefId='{ref.get('RefId')}']", NS)
        assert tn is not None
        out.append([t.text or "" for t in tn.findall("ps:T", NS)])
    return out


# --- primitives and escaping -------------------------------------------------------------------------


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_strings_round_trip_through_psrpcore(text: str) -> None:
    assert deserialize(to_xml([text])) == [text]


def test_property_names_are_escaped_too() -> None:
    name = "Odd_x0041_ name\t'\u2019"
    obj = Obj(("Custom.Type", "System.Object"), to_string="x", props={name: "v"})
    (result,) = deserialize(to_xml([obj]))
    assert getattr(result, name) == "v"


def test_escape_string_matches_powershell_rules() -> None:
    assert escape_string("a_x000D_b") == "a_x005F_x000D_b"
    assert escape_string("\r\n") == "_x000D__x000A_"
    assert escape_string("\U0001f600") == "_xD83D__xDE00_"
    assert escape_string("plain_text") == "plain_text"  # `_` not before x stays


def test_primitives_round_trip_through_psrpcore() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    guid = uuid.UUID("0292c782-9804-4d8b-ae0e-e1c7ab90852b")
    values: list[Value] = [
        True,
        False,
        7,
        -(2**31),
        2**40,
        I64(3),
        1.5,
        600.0,
        when,
        guid,
        b"\x00\xff binary",
        None,
        By(255),
        U16(65535),
        Char("A"),
        Dec("1.25"),
        Version("15.2.1544.4"),
        TimeSpan(dt.timedelta(minutes=10, seconds=1, microseconds=500000)),
    ]
    got = deserialize(to_xml(values))
    assert got[:8] == [True, False, 7, -(2**31), 2**40, 3, 1.5, 600.0]
    assert got[8] == when
    assert str(got[9]) == str(guid)
    assert bytes(got[10]) == b"\x00\xff binary"  # type: ignore[call-overload]
    assert got[11] is None
    assert got[12:15] == [255, 65535, 65]
    assert got[15] == decimal.Decimal("1.25")
    assert str(got[16]) == "15.2.1544.4"
    assert got[17] == dt.timedelta(minutes=10, seconds=1, microseconds=500000)


def test_datetime_kinds_are_written_like_dotnet() -> None:
    xml = to_xml(
        [
            dt.datetime(2022, 3, 23, 17, 0, 30, tzinfo=dt.UTC),
            dt.datetime(2022, 3, 23, 18, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            dt.datetime(2022, 3, 23, 18, 0, 30, tzinfo=dt.timezone(dt.timedelta(0), "GMT")),
            dt.datetime(2022, 3, 23, 18, 0, 30),
        ]
    )
    assert "<DT>2022-03-23T17:00:30Z</DT>" in xml
    assert "<DT>2022-03-23T18:00:30+01:00</DT>" in xml
    assert "<DT>2022-03-23T18:00:30+00:00</DT>" in xml  # Local kind at offset 0 is not "Z"
    assert "<DT>2022-03-23T18:00:30</DT>" in xml


def test_complex_objects_round_trip_through_psrpcore() -> None:
    (result,) = deserialize(to_xml([connector()]))
    assert str(result) == "EX01\\Relay"
    assert str(result.AuthMechanism) == "Tls, BasicAuth"  # type: ignore[attr-defined]
    assert result.RequireTLS is False  # type: ignore[attr-defined]
    assert result.PSComputerName == "ex01.corp.example"  # type: ignore[attr-defined]
    assert str(result.Id) == "EX01\\Relay"  # type: ignore[attr-defined]


# --- document shape -----------------------------------------------------------------------------------


def test_refs_and_tn_refs_are_file_wide() -> None:
    shared = Obj(("Microsoft.Exchange.Data.Directory.OrganizationId", "System.Object"), to_string="")
    a, b = connector("EX01\\A"), connector("EX01\\B")
    a.props = {**a.props, "OrganizationId": shared}  # type: ignore[misc]
    b.props = {**b.props, "OrganizationId": shared}  # type: ignore[misc]
    xml = to_xml([a, b])
    root = etree.fromstring(xml.encode())
    assert root.tag == f"{{{PS_NAMESPACE}}}Objs" and root.get("Version") == "1.1.0.1"
    first, second = root.findall("ps:Obj", NS)
    assert first.find("ps:TN", NS) is not None
    assert second.find("ps:TNRef", NS).get("RefId") == first.find("ps:TN", NS).get("RefId")  # type: ignore[union-attr]
    # `Id` is the same instance as `Identity`: a Ref, as in real exports.
    ident = first.find("ps:Props/ps:Obj[@N='Identity']", NS)
    assert ident is not None
    assert first.find("ps:Props/ps:Ref[@N='Id']", NS).get("RefId") == ident.get("RefId")  # type: ignore[union-attr]
    # One shared object across top-level objects: the second file object points back to the first.
    org_ref = second.find("ps:Props/ps:Ref[@N='OrganizationId']", NS)
    assert org_ref is not None
    assert first.find(f".//ps:Obj[@RefId='{org_ref.get('RefId')}']", NS) is not None
    ref_ids = [o.get("RefId") for o in root.iter(f"{{{PS_NAMESPACE}}}Obj")]
    assert len(ref_ids) == len(set(ref_ids))


def test_enum_shape_in_live_form() -> None:
    root = etree.fromstring(to_xml([connector()]).encode())
    auth = root.find("ps:Obj/ps:Props/ps:Obj[@N='AuthMechanism']", NS)
    assert auth is not None
    assert auth.findtext("ps:ToString", namespaces=NS) == "Tls, BasicAuth"
    assert auth.findtext("ps:I32", namespaces=NS) == "5"
    assert [t.text for t in auth.findall("ps:TN/ps:T", NS)] == [
        AUTH_MECHANISMS_TYPE,
        "System.Enum",
        "System.ValueType",
        "System.Object",
    ]


def test_live_form_type_names() -> None:
    assert type_names(to_xml([connector()], "live"))[0] == list(RECEIVE_CONNECTOR_TYPES)


def test_deserialized_form_prefixes_and_flattens() -> None:
    xml = to_xml([connector()], "deserialized")
    names = type_names(xml)[0]
    assert names == [f"Deserialized.{n}" for n in RECEIVE_CONNECTOR_TYPES]
    root = etree.fromstring(xml.encode())
    props = root.find("ps:Obj/ps:Props", NS)
    assert props is not None
    assert props.findtext("ps:S[@N='AuthMechanism']", namespaces=NS) == "Tls, BasicAuth"
    assert props.findtext("ps:S[@N='Identity']", namespaces=NS) == "EX01\\Relay"
    assert props.findtext("ps:S[@N='TlsCertificateName']", namespaces=NS).startswith("<I>CN=R11")  # type: ignore[union-attr]
    spaces = props.find("ps:Obj[@N='AddressSpaces']", NS)
    assert spaces is not None
    assert [s.text for s in spaces.findall("ps:LST/ps:S", NS)] == ["SMTP:*;1"]
    wrapper = [t.text or "" for t in spaces.findall("ps:TN/ps:T", NS)]
    assert wrapper[0].startswith("Deserialized.Microsoft.Exchange.Data.MultiValuedProperty`1[[")
    assert not any(t.startswith("Deserialized.Deserialized.") for t in root.itertext())


def test_selected_form_has_only_selected_note_properties() -> None:
    xml = to_xml([connector()], "selected", select=["Identity", "Name", "RequireTLS", "NotThere"])
    assert type_names(xml)[0] == [
        f"Selected.{RECEIVE_CONNECTOR_TYPES[0]}",
        "System.Management.Automation.PSCustomObject",
        "System.Object",
    ]
    root = etree.fromstring(xml.encode())
    obj = root.find("ps:Obj", NS)
    assert obj is not None
    assert obj.find("ps:Props", NS) is None and obj.find("ps:ToString", NS) is None
    members = [m.get("N") for m in obj.find("ps:MS", NS)]  # type: ignore[union-attr]
    assert members == ["Identity", "Name", "RequireTLS", "NotThere"]
    assert obj.find("ps:MS/ps:Nil[@N='NotThere']", NS) is not None
    (result,) = deserialize(xml)
    assert result.Name == "Relay"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("encoding", "bom", "codec"),
    [
        ("utf-16", b"\xff\xfe", "utf-16-le"),
        ("utf-8-sig", b"\xef\xbb\xbf", "utf-8"),
        ("utf-8", b"<Objs", "utf-8"),
    ],
)
def test_encodings_start_with_the_right_bytes(encoding: str, bom: bytes, codec: str, tmp_path: Path) -> None:
    data = to_bytes([connector()], "live", encoding)  # type: ignore[arg-type]
    assert data.startswith(bom)
    if encoding == "utf-16":
        assert data[2:6] == "<O".encode("utf-16-le")
    assert etree.fromstring(data).tag == f"{{{PS_NAMESPACE}}}Objs"
    # The streaming writer produces the same bytes.
    path = tmp_path / "out.xml"
    assert write_file(path, [connector()], "live", encoding) == len(data)  # type: ignore[arg-type]
    assert path.read_bytes() == data
    assert encode("é", encoding).endswith("é".encode(codec))  # type: ignore[arg-type]


def test_serialization_data_blob_is_about_seventy_percent() -> None:
    objs = [connector(f"EX01\\Relay {i}") for i in range(20)]
    xml = ClixmlWriter("live", serialization_data="realistic", seed=1).document(objs)
    root = etree.fromstring(xml.encode())
    blobs = root.findall(".//ps:BA[@N='SerializationData']", NS)
    assert blobs and all(len(b.text or "") >= 64 for b in blobs)
    share = sum(len(b.text or "") for b in blobs) / len(xml)
    assert 0.6 < share < 0.8, share
    short = ClixmlWriter("live", serialization_data="short", seed=1).document(objs)
    assert len(short) < len(xml) / 2
    assert "SerializationData" not in ClixmlWriter("live").document(objs)
    assert xml == ClixmlWriter("live", serialization_data="realistic", seed=1).document(objs)  # seeded


def test_max_depth_turns_deep_objects_into_strings() -> None:
    xml = to_xml([connector()], max_depth=1)
    root = etree.fromstring(xml.encode())
    spaces = root.find("ps:Obj/ps:Props/ps:Obj[@N='AddressSpaces']", NS)
    assert spaces is not None
    assert [s.text for s in spaces.findall("ps:LST/ps:S", NS)] == ["SMTP:*;1"]


# --- samples ----------------------------------------------------------------------------------------


def _make_samples(out: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_samples.py"), str(out)], check=True)


# samples/posture/ is a saved network observation (tests/test_audit_network.py), not generated here;
# samples/fabrikam-evidence/ is generated by scripts/make_evidence_samples.py (tests/test_evidence_samples.py).
NOT_GENERATED = {"posture", "fabrikam-evidence"}


def _same_tree(a: Path, b: Path) -> list[str]:
    def files(root: Path) -> list[Path]:
        found = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
        return sorted(p for p in found if p.parts[0] not in NOT_GENERATED)

    files_a, files_b = files(a), files(b)
    assert files_a == files_b
    return [str(p) for p in files_a if not filecmp.cmp(a / p, b / p, shallow=False)]


@pytest.mark.slow
def test_make_samples_is_deterministic_and_committed_samples_are_current(tmp_path: Path) -> None:
    _make_samples(tmp_path / "one")
    _make_samples(tmp_path / "two")
    assert _same_tree(tmp_path / "one", tmp_path / "two") == []
    if (ROOT / "samples" / "fabrikam").is_dir():
        assert _same_tree(tmp_path / "one", ROOT / "samples") == [], "run python scripts/make_samples.py"


def test_samples_parse_in_every_form() -> None:
    samples = ROOT / "samples"
    if not (samples / "fabrikam").is_dir():
        pytest.skip("samples not generated")
    expected = {
        "fabrikam/Get-ReceiveConnector.xml": (b"\xff\xfe", 12, "Microsoft.Exchange"),
        "fabrikam/Get-SendConnector.xml": (b"\xff\xfe", 5, "Microsoft.Exchange"),
        "forms/Get-ReceiveConnector.deserialized.xml": (
            b"\xef\xbb\xbf",
            12,
            "Deserialized.Microsoft.Exchange",
        ),
        "forms/Get-SendConnector.selected.xml": (b"<Objs", 5, "Selected.Microsoft.Exchange"),
        "exo/Get-InboundConnector.xml": (b"\xef\xbb\xbf", 2, "Deserialized.Microsoft.Exchange"),
    }
    for rel, (start, count, prefix) in expected.items():
        data = (samples / rel).read_bytes()
        assert data.startswith(start), rel
        names = type_names(data)
        assert len(names) == count, rel
        assert all(n[0].startswith(prefix) for n in names), rel
    for bad in ("xxe.xml", "billion-laughs.xml"):
        text = (samples / "bad" / bad).read_bytes()
        assert b"<!DOCTYPE Objs [" in text and b"<!ENTITY" in text, bad


def test_reader_loads_the_fabrikam_samples() -> None:
    files = pytest.importorskip("exconn.sources.files", reason="the reader is not written yet")
    model = pytest.importorskip("exconn.model")
    folder = ROOT / "samples" / "fabrikam"
    org = files.load(sorted(folder.glob("*.xml")))
    assert len(org.send_connectors) == 5
    assert len(org.receive_connectors) == 12
    assert len(org.accepted_domains) == 3
    assert len(org.transport_configs) == 1
    assert len(org.servers) == 2
    assert len({c.thumbprint for c in org.certificates}) == 5
    recv = {c.identity: c for c in org.receive_connectors}
    relay = recv["EX02\\Relay EX02"]
    assert relay.auth_mechanism == model.AuthMechanism.NONE
    assert relay.permission_groups == model.PermissionGroups.ANONYMOUS_USERS
    assert recv["EX02\\Partner Contoso"].domain_secure_enabled is True
    send = {c.name: c for c in org.send_connectors}
    assert send["To Contoso"].tls_auth_level == model.TlsAuthLevel.ENCRYPTION_ONLY
    assert send["Legacy Scanner Relay"].ignore_starttls is True
    assert send["Legacy Scanner Relay"].smart_host_auth_mechanism == model.SmartHostAuthMechanism.BASIC_AUTH
    assert send["Lab"].enabled is False
    assert org.transport_configs[0].tls_receive_domain_secure_list == ("tailspintoys.com",)
