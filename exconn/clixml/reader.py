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

import base64
import binascii
import codecs
import datetime as dt
import decimal
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import AnyStr, BinaryIO

from lxml import etree

from exconn.clixml.objects import Form, PSObject, PSValue, SecureString
from exconn.errors import InputError

PS_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"

_SNIFF_BYTES = 64 * 1024
_SCAN_CHUNK = 256 * 1024
_EXPORT_ADVICE = "export the objects instead, e.g. `Get-SendConnector | Export-Clixml send.xml`"

# --- strings ---------------------------------------------------------------------------------

_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unescape(text: str) -> str:
    """Undo PowerShell's `_xHHHH_` escaping (XmlConvert.EncodeName style, UTF-16 code units).

    One pass, left to right, so the escaped underscore `_x005F_` yields a literal `_` and what
    follows it is not read as another escape. Characters outside the BMP arrive as two escaped
    surrogates; they are joined back into one character, and a lone surrogate is kept as is.
    """
    if "_x" not in text:
        return text
    decoded = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    if _SURROGATE.search(decoded):
        decoded = decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return decoded


# --- primitives --------------------------------------------------------------------------------

_DURATION = re.compile(
    r"(?P<sign>-)?P(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def _duration(text: str) -> dt.timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None or text.strip() in ("P", "-P", "PT", "-PT"):
        raise ValueError(f"not an xs:duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None and k != "sign"}
    delta = dt.timedelta(**parts)
    return -delta if match["sign"] else delta


def _boolean(text: str) -> bool:
    value = text.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _datetime(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.strip())


def _base64(text: str) -> bytes:
    return base64.b64decode(text)


def _char(text: str) -> str:
    return chr(int(text))


_PRIMITIVES: dict[str, Callable[[str], PSValue]] = {
    "S": unescape,
    "C": _char,
    "B": _boolean,
    "DT": _datetime,
    "TS": _duration,
    "By": int,
    "SB": int,
    "U16": int,
    "I16": int,
    "U32": int,
    "I32": int,
    "U64": int,
    "I64": int,
    "Sg": float,
    "Db": float,
    "D": decimal.Decimal,
    "BA": _base64,
    "G": uuid.UUID,
    "URI": unescape,
    "Version": str,
    "XD": unescape,
    "SBK": unescape,
    "SS": SecureString,
}

_CONTAINERS = frozenset({"LST", "IE", "STK", "QUE"})

# Children of a <PR> progress record, by the property they stand for.
_PROGRESS_FIELDS: dict[str, tuple[str, Callable[[str], PSValue]]] = {
    "AV": ("Activity", unescape),
    "AI": ("ActivityId", int),
    "CO": ("CurrentOperation", unescape),
    "PI": ("ParentActivityId", int),
    "PC": ("PercentComplete", int),
    "T": ("RecordType", unescape),
    "SR": ("SecondsRemaining", int),
    "SD": ("StatusDescription", unescape),
}

SERIALIZATION_DATA = "SerializationData"


def strip_type_names(raw: tuple[str, ...]) -> tuple[tuple[str, ...], Form]:
    """Drop `Deserialized.` and `Selected.` prefixes and say which form they revealed."""
    form = Form.LIVE
    names = []
    for name in raw:
        while True:
            if name.startswith("Deserialized."):
                name = name[len("Deserialized.") :]
                if form is Form.LIVE:
                    form = Form.DESERIALIZED
            elif name.startswith("Selected."):
                name = name[len("Selected.") :]
                form = Form.SELECTED
            else:
                break
        names.append(name)
    return tuple(names), form


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


class _Builder:
    """Turns complete lxml elements into PSValues, keeping the file-wide RefId and TN tables."""

    def __init__(self, path: Path, namespace: str, targets: set[str]) -> None:
        self.path = path
        self.prefix = f"{{{namespace}}}" if namespace else ""
        self.targets = targets
        self.refs: dict[str, PSObject] = {}
        self.type_names: dict[str, tuple[tuple[str, ...], Form]] = {}
        self.index = 0
        self._locals: dict[str, str] = {}

    def fail(self, reason: str) -> InputError:
        return InputError(self.path, f"top-level object #{self.index}: {reason}")

    def local(self, tag: str) -> str:
        name = self._locals.get(tag)
        if name is None:
            name = tag[len(self.prefix) :] if tag.startswith(self.prefix) else tag
            self._locals[tag] = name
        return name

    def value(self, elem: etree._Element) -> PSValue:
        local = self.local(elem.tag)
        parse = _PRIMITIVES.get(local)
        if parse is not None:
            text = elem.text or ""
            try:
                return parse(text)
            except (ValueError, ArithmeticError, binascii.Error):
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise self.fail(f"<{local}> holds {shown!r}, which is not a valid {local}") from None
        if local == "Obj":
            return self.obj(elem)
        if local == "Ref":
            ref_id = elem.get("RefId") or ""
            try:
                return self.refs[ref_id]
            except KeyError:
                raise self.fail(f'<Ref RefId="{ref_id}"> points at no earlier object') from None
        if local == "Nil":
            return None
        if local == "PR":
            return self.progress(elem)
        # An element newer than MS-PSRP §2.2.5: its text is the best reading we have.
        return unescape(elem.text or "")

    def obj(self, elem: etree._Element) -> PSObject:
        obj = PSObject()
        ref_id = elem.get("RefId")
        # Registered before its content is read: a member may point back at the object itself.
        if ref_id is not None and ref_id in self.targets:
            self.refs[ref_id] = obj
        for child in elem:
            local = self.local(child.tag)
            if local == "TN":
                obj.type_names, obj.form = self.tn(child)
            elif local == "TNRef":
                tn_id = child.get("RefId") or ""
                try:
                    obj.type_names, obj.form = self.type_names[tn_id]
                except KeyError:
                    raise self.fail(f'<TNRef RefId="{tn_id}"> points at no earlier <TN>') from None
            elif local == "ToString":
                obj.to_string = unescape(child.text or "")
            elif local == "Props":
                self.members(child, obj.props)
            elif local == "MS":
                self.members(child, obj.extended)
            elif local in _CONTAINERS:
                obj.items = [self.value(item) for item in child]
            elif local == "DCT":
                obj.dct = [self.entry(entry) for entry in child]
            else:
                obj.value = self.value(child)
        return obj

    def tn(self, elem: etree._Element) -> tuple[tuple[str, ...], Form]:
        raw = tuple(unescape(t.text or "") for t in elem)
        stripped = strip_type_names(raw)
        self.type_names[elem.get("RefId") or ""] = stripped
        return stripped

    def members(self, elem: etree._Element, into: dict[str, PSValue]) -> None:
        for child in elem:
            name = unescape(child.get("N") or "")
            if name == SERIALIZATION_DATA and self.local(child.tag) == "BA":
                continue
            into[name] = self.value(child)

    def entry(self, elem: etree._Element) -> tuple[PSValue, PSValue]:
        key: PSValue = None
        value: PSValue = None
        for child in elem:
            if child.get("N") == "Key":
                key = self.value(child)
            else:
                value = self.value(child)
        return key, value

    def progress(self, elem: etree._Element) -> PSObject:
        record = PSObject(type_names=("System.Management.Automation.ProgressRecord", "System.Object"))
        for child in elem:
            local = self.local(child.tag)
            if local == "Nil":
                # MS-PSRP writes the CurrentOperation slot as <Nil/> when it is unset.
                record.props["CurrentOperation"] = None
                continue
            name, parse = _PROGRESS_FIELDS.get(local, (local, unescape))
            try:
                record.props[name] = parse(child.text or "")
            except ValueError:
                raise self.fail(f"<PR> field <{local}> holds {child.text!r}") from None
        return record


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
                if isinstance(value, PSObject):
                    value.line = elem.sourceline  # the start tag's line, for SARIF regions
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
