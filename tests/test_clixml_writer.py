"""exconn.clixml.writer: the bytes of a saved snapshot file, in the encodings Export-Clixml writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from exconn.clixml.reader import iter_clixml
from exconn.clixml.writer import encode

DOCUMENT = (
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">\r\n'
    "  <S>Zoë Ångström — 東京 😀</S>\r\n"
    "</Objs>"
)


@pytest.mark.parametrize(
    ("encoding", "bom", "codec"),
    [
        ("utf-16", b"\xff\xfe", "utf-16-le"),  # Windows PowerShell 5.1's Export-Clixml default
        ("utf-8-sig", b"\xef\xbb\xbf", "utf-8"),  # 5.1 -Encoding UTF8
        ("utf-8", b"", "utf-8"),  # PowerShell 7
    ],
)
def test_encode_writes_the_bom_then_the_text(encoding: str, bom: bytes, codec: str) -> None:
    data = encode(DOCUMENT, encoding)  # type: ignore[arg-type]
    assert data == bom + DOCUMENT.encode(codec)
    assert etree.fromstring(data).findtext("{*}S") == "Zoë Ångström — 東京 😀"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-8"])
def test_the_reader_reads_what_encode_wrote(encoding: str, tmp_path: Path) -> None:
    path = tmp_path / "snapshot.xml"
    path.write_bytes(encode(DOCUMENT, encoding))  # type: ignore[arg-type]
    assert list(iter_clixml(path)) == ["Zoë Ångström — 東京 😀"]


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        encode(DOCUMENT, "latin-1")  # type: ignore[arg-type]
