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
from typing import AnyStr, BinaryIO, cast

from lxml import etree

from exconn.clixml.objects import PSObject, PSValue
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

# `<Ref ... RefId="n"` (any namespace prefix), and harmlessly a few look-alikes (a superset). Every
# match starts at a `<`, which text cannot hold unescaped, and `[^<>]` stops at the next one: each
# character is looked at by at most one match, so the scan is linear whatever the text holds.
_REF_PATTERN = r"<(?:[\w.\-]+:)?Ref\s[^<>]*?\bRefId\s*=\s*[\"']([^\"'<>]+)"
_REF_BYTES = re.compile(_REF_PATTERN.encode())
_REF_TEXT = re.compile(_REF_PATTERN)
# What a chunk may end with and still become a Ref tag in the next one.
_REF_START_BYTES = re.compile(rb"<(?:[\w.\-]+:)?Ref\s")
_REF_START_TEXT = re.compile(r"<(?:[\w.\-]+:)?Ref\s")
_TAG_NAME_BYTES = re.compile(rb"<[\w.\-:]{0,256}\Z")
_TAG_NAME_TEXT = re.compile(r"<[\w.\-:]{0,256}\Z")
# A Ref tag cut by a chunk end is carried into the next chunk up to this size; one longer than
# that (never seen in an export) makes the scan give up and keep every object.
_REF_TAG_LIMIT = 1 << 20


def _ref_targets(stream: BinaryIO, encoding: str) -> set[str] | None:
    """Every RefId some `<Ref>` in the file points at, read in chunks without parsing; None when
    the scan cannot tell (then every object is kept, which is always correct)."""
    targets: set[str] = set()
    if not encoding.startswith(("UTF-16", "UTF-32")):  # ASCII-compatible: scan the bytes
        carry = b""
        while chunk := stream.read(_SCAN_CHUNK):
            buffer = carry + chunk
            targets.update(m.decode("utf-8", "replace") for m in _REF_BYTES.findall(buffer))
            carry = _unfinished_ref(buffer, b"<", b">", _REF_START_BYTES, _TAG_NAME_BYTES)
            if len(carry) > _REF_TAG_LIMIT:
                return None
        return targets
    decoder = codecs.getincrementaldecoder(_python_codec(encoding))(errors="replace")
    text_carry = ""
    while chunk := stream.read(_SCAN_CHUNK):
        text = text_carry + decoder.decode(chunk)
        targets.update(_REF_TEXT.findall(text))
        text_carry = _unfinished_ref(text, "<", ">", _REF_START_TEXT, _TAG_NAME_TEXT)
        if len(text_carry) > _REF_TAG_LIMIT:
            return None
    return targets


def _unfinished_ref(
    buffer: AnyStr, lt: AnyStr, gt: AnyStr, ref_start: re.Pattern[AnyStr], tag_name: re.Pattern[AnyStr]
) -> AnyStr:
    """The Ref tag (or a tag name that may become one) cut off at the end of a chunk, to scan
    again with the next chunk. Anything else is dropped: carrying an unfinished tag of another
    kind would copy the rest of a file with a `<` and no `>` once per chunk."""
    start = buffer.rfind(lt)
    if start == -1 or buffer.find(gt, start) != -1:
        return buffer[:0]
    if ref_start.match(buffer, start) or tag_name.match(buffer, start):
        return buffer[start:]
    return buffer[:0]


# --- building objects --------------------------------------------------------------------------


class _Builder(Decoder):
    """The shared decoder over one file: RefIds and TN RefIds are file-wide, and every refusal
    names the file and the top-level object it is in."""

    def __init__(self, path: Path, namespace: str, targets: set[str] | None) -> None:
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
    <Objs>, truncated or malformed XML, or values that break MS-PSRP's rules. The values before
    the fault are yielded first (except a bare value right before it, which may be cut short).
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
        namespace = _root_namespace(path, stream, encoding)
        stream.seek(start)
        targets = _ref_targets(stream, encoding)
        stream.seek(start)
        yield from _parse(path, stream, encoding, namespace, targets)


def _pull_parser(encoding: str, tag: str | None = None) -> etree.XMLPullParser:
    """A parser that reports only start events (of `tag` if given)."""
    # Hostile input: no entity expansion, no DTD, no network, no file access. libxml2's own size
    # limits stay on (no huge_tree): CLIXML text nodes are far below 10 MB. The indentation
    # between elements would be a text node per element, never read; whitespace inside a leaf
    # (`<S> </S>`) is kept.
    return etree.XMLPullParser(
        events=("start",),
        tag=tag,
        encoding=encoding,
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
    )


def _started(parser: etree.XMLPullParser) -> etree._Element | None:
    """The element of the first start event queued, if any."""
    for _event, elem in parser.read_events():
        if isinstance(elem, etree._Element):
            return elem
    return None


def _root_namespace(path: Path, stream: BinaryIO, encoding: str) -> str:
    """Parse up to the root's start tag only, and refuse a file that is not CLIXML there: the
    whole file is never parsed (nor kept) for a root that is not <Objs>."""
    parser = _pull_parser(encoding)
    try:
        while chunk := stream.read(_SNIFF_BYTES):
            parser.feed(chunk)
            if (root := _started(parser)) is not None:
                return _check_root(path, root)
        parser.close()
    except etree.XMLSyntaxError as error:
        # The chunk may hold a fault past the root's start tag (a billion laughs' `&lol9;`):
        # the root, queued before it, is judged first, so a DOCTYPE is named as such.
        if (root := _started(parser)) is not None:
            _check_root(path, root)
        raise InputError(path, _syntax_reason(error, encoding)) from None
    raise InputError(path, f"has no XML element; {_EXPORT_ADVICE}")


def _parse(
    path: Path, stream: BinaryIO, encoding: str, namespace: str, targets: set[str] | None
) -> Iterator[PSValue]:
    """Feed the file to libxml2 in chunks; after each, every child of <Objs> but the last is
    complete (the tree grows depth-first), so those are built, yielded and freed.

    No Python code runs per element while libxml2 parses, and memory follows the largest
    top-level object plus one chunk, whatever the file holds (a million bare values too).
    """
    prefix = f"{{{namespace}}}" if namespace else ""
    # Only the root's start: the one event needed, to hold the root.
    parser = _pull_parser(encoding, tag=f"{prefix}Objs")
    builder = _Builder(path, namespace, targets)
    root: etree._Element | None = None
    try:
        while chunk := stream.read(_SCAN_CHUNK):
            parser.feed(chunk)
            if root is None:
                root = _started(parser)
            if root is not None:
                while len(root) > 1:
                    yield _take(builder, root)
        parser.close()
    except etree.XMLSyntaxError as error:
        if root is not None:
            # What came before the fault is complete; the last child may be cut short.
            while len(root) > 1:
                yield _take(builder, root)
        raise InputError(path, _syntax_reason(error, encoding)) from None
    if root is None:
        raise InputError(path, f"has no XML element; {_EXPORT_ADVICE}")
    while len(root):
        yield _take(builder, root)


def _take(builder: _Builder, root: etree._Element) -> PSValue:
    """Build the first remaining top-level value, then free its element."""
    elem = root[0]
    value = builder.value(elem)
    if isinstance(value, PSObject):
        value.line = cast("int | None", elem.sourceline)  # the start tag's line, for SARIF regions
    builder.index += 1
    elem.clear()
    del root[0]
    return value


def _check_root(path: Path, root: etree._Element) -> str:
    """The root's namespace, once the root is known to be a CLIXML <Objs> without a DTD."""
    docinfo = root.getroottree().docinfo
    # Checked at the root's start tag, before any content: entities declared in a DTD can only
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
