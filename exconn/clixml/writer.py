"""Bytes of a CLIXML document, in the encodings PowerShell's Export-Clixml writes.

The runtime only saves documents it already holds as text (`exconn collect` writes the snapshot
folder through `sources/psrp.py`), so encoding is all it needs here. Building exports from Python
values (the samples, the benchmark's large export, the tests' inputs) is test tooling and lives in
`tests/clixml_build/`.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = ["BOMS", "Encoding", "codec", "encode"]

Encoding: TypeAlias = Literal["utf-16", "utf-8-sig", "utf-8"]

BOMS: dict[str, bytes] = {"utf-16": b"\xff\xfe", "utf-8-sig": b"\xef\xbb\xbf", "utf-8": b""}


def codec(encoding: Encoding) -> str:
    """The Python codec of the text after the byte order mark."""
    if encoding not in BOMS:
        raise ValueError(f"unknown encoding {encoding!r}")
    return "utf-16-le" if encoding == "utf-16" else "utf-8"


def encode(text: str, encoding: Encoding) -> bytes:
    """`utf-16`: UTF-16LE with BOM (Windows PowerShell 5.1's Export-Clixml default); `utf-8-sig`:
    UTF-8 with BOM (5.1 `-Encoding UTF8`); `utf-8`: no BOM (PowerShell 7's default)."""
    text_codec = codec(encoding)  # refuses an unknown encoding before BOMS is indexed
    return BOMS[encoding] + text.encode(text_codec)
