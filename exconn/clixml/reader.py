"""A streaming reader for Export-Clixml files (MS-PSRP §2.2.5), built for Exchange exports.

`iter_clixml(path)` yields each top-level value as soon as its element is complete, then frees the
element and everything before it, so memory follows the largest single object, not the file.
Refs may point back at any earlier object (RefIds are file-wide), so converted objects must be
kept for them; to keep memory flat anyway, a quick byte scan first collects the RefIds that some
`<Ref>` names, and only those objects are remembered. The scan may over-collect (it is a regular
expression, not a parser) but never under-collects, which is what keeps every Ref resolvable.

Every refusal is an `InputError`: one line naming the file and saying what to do instead.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import AnyStr, BinaryIO

from lxml import etree

from exconn.clixml.objects import PSValue
from exconn.clixml.primitives import SERIALIZATION_DATA as SERIALIZATION_DATA
from exconn.clixml.primitives import Decoder
from exconn.clixml.primitives import strip_type_names as strip_type_names
from exconn.clixml.primitives import unescape as unescape
from exconn.errors import InputError

PS_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"

_SNIFF_BYTES = 64 * 1024
_SCAN_CHUNK = 256 * 1024
_EXPORT_ADVICE = "export the objects instead, e.g. `Get-SendConnector | Export-Clixml send.xml`"

# --- sniffing ----------------------------------------------------------------------------------

_FORMAT_LIST_LINE = re.compile(r"[A-Za-z][\w.\-]*\s*:(\s|$)")


# (byte-order mark or first bytes of `<`, encoding, bytes to skip): UTF-32 before UTF-16, whose
# little-endian BOM begins UTF-32's. `Export-Clixml -Encoding UTF32` writes UTF-32LE with a BOM.
_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "UTF-32LE", 4),
    (codecs.BOM_UTF32_BE, "UTF-32BE", 4),
    (codecs.BOM_UTF8, "UTF-8", 3),
    (codecs.BOM_UTF16_LE, "UTF-16LE", 2),
    (codecs.BOM_UTF16_BE, "UTF-16BE", 2),
    (b"<\x00\x00\x00", "UTF-32LE", 0),  # no BOM: only XML is worth guessing at
    (b"\x00\x00\x00<", "UTF-32BE", 0),
    (b"<\x00", "UTF-16LE", 0),
    (b"\x00<", "UTF-16BE", 0),
)
_DECLARED_ENCODING = re.compile(rb"<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z][\w.:\-]*)[\"']")
# `powershell -OutputFormat XML` writes this line before the <Objs> document.
_CLIXML_MARKER = "#< CLIXML"


def _python_codec(encoding: str) -> str:
    return encoding.replace("LE", "-le").replace("BE", "-be")


def _sniff(path: Path, head: bytes, complete: bool) -> tuple[str, int]:
    """The encoding to parse with and the offset the XML starts at, or an InputError saying what
    the file is instead of CLIXML."""
    encoding, start = "UTF-8", 0
    for prefix, name, skip in _ENCODINGS:
        if head.startswith(prefix):
            encoding, start = name, skip
            break
    text = head[start:].decode(_python_codec(encoding), errors="replace")
    if text.startswith(_CLIXML_MARKER):
        line = text[: text.find("\n") + 1] if "\n" in text else text
        start += len(line.encode(_python_codec(encoding)))
        text = text[len(line) :]
    stripped = text.lstrip()
    if not stripped and complete:
        raise InputError(path, f"the file is empty; {_EXPORT_ADVICE}")
    if _looks_binary(text):
        raise InputError(path, f"is a binary file, not an Export-Clixml export; {_EXPORT_ADVICE}")
    if stripped.startswith("<"):
        return _declared(head[start:], encoding), start
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")][:50]
    if _looks_format_list(lines):
        raise InputError(path, f"is `Format-List` output (text for the screen, not data); {_EXPORT_ADVICE}")
    if stripped.startswith("#TYPE") or (lines and lines[0].count(",") >= 2):
        raise InputError(
            path, f"is CSV (it flattens multi-valued properties and loses types); {_EXPORT_ADVICE}"
        )
    raise InputError(path, f"is not XML (it does not start with '<'); {_EXPORT_ADVICE}")


def _declared(body: bytes, encoding: str) -> str:
    """`encoding`, or the one the XML declaration names when it is another byte-per-ASCII
    encoding both Python and libxml2 know (`<?xml version="1.0" encoding="ISO-8859-1"?>`).

    UTF-8 stays the default otherwise: Export-Clixml writes no declaration, and a UTF-16 one on
    a file re-saved as UTF-8 is a common leftover that libxml2 would believe.
    """
    match = _DECLARED_ENCODING.match(body) if encoding == "UTF-8" else None
    if match is None:
        return encoding
    declared = match.group(1).decode("ascii")
    try:
        info = codecs.lookup(declared)
        ascii_compatible = "<?xml".encode(info.name) == b"<?xml" and not info.name.startswith("utf")
        if ascii_compatible:
            etree.XMLParser(encoding=declared)  # libxml2 knows it too, or LookupError
    except (LookupError, UnicodeError):
        return encoding
    return declared if ascii_compatible else encoding


def _looks_binary(text: str) -> bool:
    if "\x00" in text:
        return True
    odd = sum(1 for ch in text if (ch < " " and ch not in "\t\n\r\f") or ch == "\ufffd")
    return odd > len(text) // 20


def _looks_format_list(lines: list[str]) -> bool:
    matching = sum(1 for line in lines if _FORMAT_LIST_LINE.match(line))
    return matching >= 2 and matching * 2 >= len(lines)


# --- the Ref pre-scan --------------------------------------------------------------------------

# Matches `<Ref ... RefId="n"` and, harmlessly, a few look-alikes in text or TNRef (a superset).
_REF_PATTERN = r"Ref\s[^<>]*?\bRefId\s*=\s*[\"']([^\"']+)"
_REF_BYTES = re.compile(_REF_PATTERN.encode())
_REF_TEXT = re.compile(_REF_PATTERN)


def _ref_targets(stream: BinaryIO, encoding: str) -> set[str]:
    """Every RefId some `<Ref>` in the file points at, read in chunks without parsing."""
    targets: set[str] = set()
    if not encoding.startswith(("UTF-16", "UTF-32")):  # ASCII-compatible: scan the bytes
        carry = b""
        while chunk := stream.read(_SCAN_CHUNK):
            buffer = carry + chunk
            targets.update(m.decode("utf-8", "replace") for m in _REF_BYTES.findall(buffer))
            carry = _unfinished_tag(buffer, b"<", b">")
        return targets
    decoder = codecs.getincrementaldecoder(_python_codec(encoding))(errors="replace")
    text_carry = ""
    while chunk := stream.read(_SCAN_CHUNK):
        text = text_carry + decoder.decode(chunk)
        targets.update(_REF_TEXT.findall(text))
        text_carry = _unfinished_tag(text, "<", ">")
    return targets


def _unfinished_tag(buffer: AnyStr, lt: AnyStr, gt: AnyStr) -> AnyStr:
    """The tag cut off at the end of a chunk, to scan again with the next chunk."""
    start = buffer.rfind(lt)
    if start == -1 or buffer.find(gt, start) != -1:
        return buffer[:0]
    return buffer[start:]


# --- building objects --------------------------------------------------------------------------


class _Builder(Decoder):
    """The shared decoder over one file: RefIds and TN RefIds are file-wide, and every refusal
    names the file and the top-level object it is in."""

    def __init__(self, path: Path, namespace: str, targets: set[str]) -> None:
        super().__init__(namespace, keep=targets)
        self.path = path
        self.index = 0

    def fail(self, reason: str) -> InputError:
        return InputError(self.path, f"top-level object #{self.index}: {reason}")


# --- the stream ----------------------------------------------------------------------------------


def iter_clixml(path: str | Path) -> Iterator[PSValue]:
    """Yield each top-level value of an Export-Clixml file, in order, streaming.

    Raises InputError (one line, naming the file) for anything that is not a well-formed CLIXML
    export: empty, binary, Format-List or CSV text, a DOCTYPE or entities, a root other than
    <Objs>, truncated or malformed XML, or values that break MS-PSRP's rules.
    """
    path = Path(path)
    try:
        # A bytes name: lxml takes the stream's name as its base URL and cannot encode a file
        # name that is not valid UTF-8 (surrogate-escaped by Python) as a str.
        stream = open(os.fsencode(path), "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as error:
        raise InputError(path, f"cannot be read: {error.strerror or error}") from None
    with stream:
        head = stream.read(_SNIFF_BYTES)
        encoding, start = _sniff(path, head, complete=len(head) < _SNIFF_BYTES)
        stream.seek(start)
        targets = _ref_targets(stream, encoding)
        stream.seek(start)
        yield from _parse(path, stream, encoding, targets)


def _parse(path: Path, stream: BinaryIO, encoding: str, targets: set[str]) -> Iterator[PSValue]:
    events = etree.iterparse(
        stream,
        events=("start", "end"),
        encoding=encoding,
        # Hostile input: no entity expansion, no DTD, no network, no file access. libxml2's own
        # size limits stay on (no huge_tree): CLIXML text nodes are far below 10 MB.
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
    )
    root: etree._Element | None = None
    builder: _Builder | None = None
    depth = 0
    try:
        for event, elem in events:
            if event == "start":
                depth += 1
                if root is None:
                    root = elem
                    builder = _Builder(path, _check_root(path, elem), targets)
                continue
            depth -= 1
            if depth == 1 and builder is not None and root is not None:
                value = builder.value(elem)
                builder.index += 1
                # Free what is done: this element and the whitespace and elements before it.
                elem.clear()
                while elem.getprevious() is not None:
                    del root[0]
                yield value
            elif depth > 1 and elem.get("N") == SERIALIZATION_DATA:
                # The blob is most of the file and never read: drop it as soon as it is parsed.
                elem.text = None
    except etree.XMLSyntaxError as error:
        raise InputError(path, _syntax_reason(error, encoding)) from None
    if root is None:
        raise InputError(path, f"has no XML element; {_EXPORT_ADVICE}")


def _check_root(path: Path, root: etree._Element) -> str:
    """The root's namespace, once the root is known to be a CLIXML <Objs> without a DTD."""
    docinfo = root.getroottree().docinfo
    # Checked at the first start event, before any content: entities declared in a DTD can only
    # be used after it, so nothing has been expanded or fetched yet.
    if docinfo.internalDTD is not None:
        raise InputError(
            path, "contains a DOCTYPE (DTDs and entities are refused); Export-Clixml never writes one"
        )
    qname = etree.QName(root)
    if qname.localname != "Objs" or qname.namespace not in (PS_NAMESPACE, None):
        raise InputError(path, f"root element is <{qname.localname}>, not <Objs>: not an Export-Clixml file")
    return qname.namespace or ""


def _syntax_reason(error: etree.XMLSyntaxError, encoding: str) -> str:
    message = str(error.msg or error).split(", line ")[0].strip()
    line = error.lineno
    if "Invalid bytes in character encoding" in message:
        return (
            f"is not valid {encoding} text near line {line}; export it again with Export-Clixml, or "
            "give it an XML declaration naming its encoding"
        )
    if "Premature end of data" in message or "EndTag" in message or "end of document" in message:
        return f"is truncated or malformed XML near line {line} ({message}); export the file again"
    return f"is not well-formed XML near line {line} ({message})"
