"""Hostile and broken input: refused with one InputError line naming the file, never a traceback."""

from __future__ import annotations

import codecs
import gzip
import os
import time
from pathlib import Path

import pytest

from exconn.clixml.reader import iter_clixml
from exconn.errors import ExconnError, InputError
from exconn.sources.files import load

REAL = Path(__file__).parents[2] / "shared/fixtures/real"
NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'
ADVICE = "Get-SendConnector | Export-Clixml send.xml"


def real(name: str) -> Path:
    if not REAL.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{REAL} is missing: CI must have the real exports")
        pytest.skip(f"{REAL} is missing (set CI to make this a failure)")
    return REAL / name


def refused(path: Path) -> str:
    """The one-line message reading `path` fails with, checked for the shape every refusal has."""
    with pytest.raises(InputError) as caught:
        list(iter_clixml(path))
    message = str(caught.value)
    assert isinstance(caught.value, ExconnError)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert caught.value.path == str(path)
    return message


def put(tmp_path: Path, content: bytes | str, name: str = "input.xml") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "content",
    [b"", b"   \r\n\t ", codecs.BOM_UTF8, codecs.BOM_UTF16_LE],
    ids=["zero", "blank", "bom8", "bom16"],
)
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    assert "the file is empty" in refused(put(tmp_path, content))


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
        gzip.compress(b"<Objs></Objs>" * 100),
        bytes(range(256)) * 8,
        b"<Objs>\x00\x01\x02</Objs>",
    ],
    ids=["png", "gzip", "random", "nul-in-xml"],
)
def test_binary_file(tmp_path: Path, content: bytes) -> None:
    assert "is a binary file" in refused(put(tmp_path, content))


def test_truncated_real_export(tmp_path: Path) -> None:
    data = real("CSS-Exchange_GetReceiveConnector.xml").read_bytes()
    message = refused(put(tmp_path, data[: len(data) // 2]))
    assert "truncated or malformed" in message and "line" in message


def test_truncated_after_complete_objects_yields_them_first(tmp_path: Path) -> None:
    body = f'<Objs {NS}><S>one</S><S>two</S><Obj RefId="0"><Props><S N="x">'
    path = put(tmp_path, body)
    seen: list[object] = []
    with pytest.raises(InputError, match="truncated or malformed"):
        seen.extend(iter_clixml(path))
    assert seen == ["one", "two"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<html><body>hi</body></html>", "root element is <html>, not <Objs>"),
        ('<Objs xmlns="urn:other"><S>x</S></Objs>', "root element is <Objs>, not <Objs>"),
        ("<Objs><S>unclosed</Objs>", "not well-formed XML"),
        (f"<Objs {NS}><S>a</S></Objs><Objs/>", "not well-formed XML"),
    ],
)
def test_not_clixml(tmp_path: Path, content: str, expected: str) -> None:
    assert expected in refused(put(tmp_path, content))


FORMAT_LIST = """
RunspaceId          : 3e7c2964-a6ef-4f43-b318-b3a23880dcbc
AuthMechanism       : Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer
Bindings            : {[::]:25, 0.0.0.0:25}
RemoteIPRanges      : {::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,
                      0.0.0.0-255.255.255.255}
Name                : Default Frontend EX1
"""


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_format_list_output(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "receive.txt"
    path.write_bytes(FORMAT_LIST.encode(encoding))
    message = refused(path)
    assert "is `Format-List` output" in message and ADVICE in message


@pytest.mark.parametrize(
    "name",
    [
        "E2016_Get-ReceiveConnector_DefaultFrontend_fl_MSQA305565.txt",
        "EXO_Get-InboundConnector_fl_Evotec_2017.txt",
    ],
)
def test_real_format_list_pastes(name: str) -> None:
    message = refused(real(name))
    assert "is `Format-List` output" in message and ADVICE in message


def test_csv(tmp_path: Path) -> None:
    message = refused(
        put(tmp_path, '#TYPE Selected.Microsoft.Exchange\n"Name","Bindings"\n"a","b"\n', "r.csv")
    )
    assert "is CSV" in message and ADVICE in message
    real_csv = refused(real("E2016_ReceiveConnector_CSV_SammyKrosoft_Sample_Export.csv"))
    assert "is CSV" in real_csv and ADVICE in real_csv


def test_other_text(tmp_path: Path) -> None:
    assert "is not XML" in refused(put(tmp_path, "just some words\n"))


# --- DTDs and entities ---------------------------------------------------------------------------

XXE = f"""<?xml version="1.0"?>
<!DOCTYPE Objs [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Objs {NS}><S>&secret;</S></Objs>"""

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE Objs [\n<!ENTITY lol0 "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">\n' for i in range(1, 10))
    + f"]>\n<Objs {NS}><S>&lol9;</S></Objs>"
)


def test_external_entity_is_refused_and_nothing_leaks(tmp_path: Path) -> None:
    message = refused(put(tmp_path, XXE))
    assert "DOCTYPE" in message
    assert "root:" not in message


def test_billion_laughs_ends_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    message = refused(put(tmp_path, BILLION_LAUGHS))
    assert time.monotonic() - started < 1.0
    assert "DOCTYPE" in message and "lol" not in message


@pytest.mark.parametrize(
    "doctype",
    [
        "<!DOCTYPE Objs>",
        '<!DOCTYPE Objs SYSTEM "http://attacker.invalid/x.dtd">',
        '<!DOCTYPE Objs PUBLIC "-//X//EN" "file:///etc/passwd">',
    ],
)
def test_any_doctype_is_refused(tmp_path: Path, doctype: str) -> None:
    assert "DOCTYPE" in refused(put(tmp_path, f"{doctype}<Objs {NS}><S>x</S></Objs>"))


def test_doctype_in_utf16(tmp_path: Path) -> None:
    path = put(tmp_path, codecs.BOM_UTF16_LE + XXE.encode("utf-16-le"))
    assert "DOCTYPE" in refused(path)


# --- values that break MS-PSRP -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<I32 N="x">twelve</I32>', "<I32> holds 'twelve', which is not a valid I32"),
        ('<B N="x">maybe</B>', "<B> holds 'maybe'"),
        ('<DT N="x">yesterday</DT>', "<DT> holds 'yesterday'"),
        ('<TS N="x">PT</TS>', "<TS> holds 'PT'"),
        ('<G N="x">not-a-guid</G>', "<G> holds 'not-a-guid'"),
        ('<Ref N="x" RefId="99" />', '<Ref RefId="99"> points at no earlier object'),
    ],
)
def test_bad_values(tmp_path: Path, body: str, expected: str) -> None:
    path = put(tmp_path, f'<Objs {NS}><Obj RefId="0"><Props>{body}</Props></Obj></Objs>')
    message = refused(path)
    assert "top-level object #0" in message and expected in message


def test_unknown_tnref(tmp_path: Path) -> None:
    message = refused(put(tmp_path, f'<Objs {NS}><S>a</S><Obj RefId="0"><TNRef RefId="3" /></Obj></Objs>'))
    assert 'top-level object #1: <TNRef RefId="3"> points at no earlier <TN>' in message


def test_load_names_the_bad_file_in_a_folder(tmp_path: Path) -> None:
    put(tmp_path, f"<Objs {NS}><S>fine</S></Objs>", "a.xml")
    bad = put(tmp_path, FORMAT_LIST, "b.xml")
    with pytest.raises(InputError) as caught:
        load([tmp_path])
    assert caught.value.path == str(bad)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read"):
        list(iter_clixml(tmp_path))


# --- cost stays linear, memory bounded (issue 9 §4) -----------------------------------------


def test_text_of_many_ref_words_is_scanned_in_linear_time(tmp_path: Path) -> None:
    # The Ref pre-scan once scanned forward from every "Ref " word to the chunk's end: minutes.
    words = "Ref " * 2_000_000
    path = put(tmp_path, f"<Objs {NS}><S>{words}</S></Objs>")
    started = time.monotonic()
    assert list(iter_clixml(path)) == [words]
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("opening", ["<", "<Ref "], ids=["lt", "ref-tag"])
def test_tag_without_end_is_refused_in_linear_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opening: str
) -> None:
    # With small chunks, carrying the unfinished tag into every next chunk was quadratic; a
    # `<Ref ` cut that long makes the scan give up (every object kept) instead of carrying it.
    from exconn.clixml import reader

    monkeypatch.setattr(reader, "_SCAN_CHUNK", 4096)
    path = put(tmp_path, f"<Objs {NS}><S>a</S>{opening}" + "x" * 8_000_000)
    started = time.monotonic()
    message = refused(path)
    assert time.monotonic() - started < 5.0
    assert "not well-formed" in message or "truncated" in message


def test_a_million_small_objects_keep_only_the_first_skipped(tmp_path: Path) -> None:
    # Smaller than a million, the same shape: objects of a kind exconn does not read, each a
    # Skipped entry. The first ones are listed, the rest counted in one entry; memory stays flat.
    import tracemalloc

    from exconn.sources.convert import LISTED_SKIPPED

    count = 100_000
    send = (
        f'<Obj RefId="{count}"><TN RefId="1"><T>Microsoft.Exchange.Data.Directory.'
        'SystemConfiguration.SmtpSendConnectorConfig</T></TN><Props><S N="Identity">Out</S></Props></Obj>'
    )
    path = tmp_path / "many.xml"
    with path.open("w", encoding="utf-8") as out:
        out.write(f'<Objs {NS}><Obj RefId="0"><TN RefId="0"><T>Other.Thing</T></TN><S>x</S></Obj>')
        out.writelines(f'<Obj RefId="{i}"><TNRef RefId="0" /><S>x{i}</S></Obj>' for i in range(1, count))
        out.write(send + "</Objs>")
    tracemalloc.start()
    try:
        org = load([path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [c.identity for c in org.send_connectors] == ["Out"]
    assert len(org.skipped) == LISTED_SKIPPED + 1
    assert f"and {count - LISTED_SKIPPED} more skipped entries not listed" in org.skipped[-1].reason
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB traced for {count} skipped objects"
