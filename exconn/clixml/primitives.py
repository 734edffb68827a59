"""What each CLIXML element means as a Python value (MS-PSRP §2.2.5), for every source.

One table, one decoder: the Export-Clixml reader and the live PSRP source read the same
serialisation, so a `<B>1</B>` or a `<Ref>` to nothing must mean the same on both paths. The rules
are those of PowerShell's own deserialiser (`XmlConvert` for the XML Schema types): a value it
would refuse is refused here too, as a `DecodeError` (a ValueError) that each source turns into
its own one-line message.

`Decoder` walks parsed elements (lxml, any namespace) into `PSObject`s; it knows nothing about
files or sessions. Elements newer than MS-PSRP §2.2.5 are read as their text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable, Container
from typing import TYPE_CHECKING

from exconn.clixml.objects import Form, PSObject, PSValue, SecureString

if TYPE_CHECKING:
    from lxml import etree

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
    # XmlConvert.ToBoolean: "true"/"1" and "false"/"0", case-sensitive, surrounding blanks ignored.
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


# Tag -> how its text becomes a value. `Version` is written raw (Version.ToString()), not as an
# escaped string; URI, XD and SBK are escaped strings like S.
PRIMITIVES: dict[str, Callable[[str], PSValue]] = {
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

# What a failing conversion raises (binascii.Error is a ValueError; Decimal's is arithmetic).
PRIMITIVE_ERRORS = (ValueError, ArithmeticError, binascii.Error)

CONTAINERS = frozenset({"LST", "IE", "STK", "QUE"})

# Children of a <PR> progress record, by the property they stand for.
PROGRESS_FIELDS: dict[str, tuple[str, Callable[[str], PSValue]]] = {
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


class DecodeError(ValueError):
    """A value PowerShell's deserialiser would refuse too; the reason is one line."""


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


# --- objects -----------------------------------------------------------------------------------


# Property names and tags remembered, at most: a real export has a few hundred distinct ones.
_NAME_CACHE = 4096


class Decoder:
    """Turns complete lxml elements into PSValues, keeping the RefId and TN tables of one scope.

    A file is one scope (RefIds are file-wide); a PSRP message is one scope. `keep` names the
    RefIds some `<Ref>` points at, so only those objects are remembered (default: all).

    This runs once per element of a file, so it dispatches on the full tag (`{ns}S`) with tags
    computed once here, instead of taking every tag apart; the names of properties repeat from
    object to object, so each is unescaped once.
    """

    def __init__(self, namespace: str = "", keep: Container[str] | None = None) -> None:
        self.prefix = prefix = f"{{{namespace}}}" if namespace else ""
        self.targets = keep
        self.refs: dict[str, PSObject] = {}
        self.type_names: dict[str, tuple[tuple[str, ...], Form]] = {}
        self._locals: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._parsers = {prefix + local: (local, parse) for local, parse in PRIMITIVES.items()}
        self._containers = frozenset(prefix + local for local in CONTAINERS)
        self._obj, self._ref, self._nil, self._pr = (prefix + t for t in ("Obj", "Ref", "Nil", "PR"))
        self._props, self._ms, self._tn, self._tnref = (prefix + t for t in ("Props", "MS", "TN", "TNRef"))
        self._to_string, self._dct, self._ba = (prefix + t for t in ("ToString", "DCT", "BA"))

    def fail(self, reason: str) -> Exception:
        """The error to raise; a source overrides it to name its file or endpoint."""
        return DecodeError(reason)

    def local(self, tag: str) -> str:
        name = self._locals.get(tag)
        if name is None:
            name = tag[len(self.prefix) :] if tag.startswith(self.prefix) else tag
            if len(self._locals) < _NAME_CACHE:
                self._locals[tag] = name
        return name

    def value(self, elem: etree._Element) -> PSValue:
        tag = elem.tag
        primitive = self._parsers.get(tag)
        if primitive is not None:
            text = elem.text or ""
            try:
                return primitive[1](text)
            except PRIMITIVE_ERRORS:
                local = primitive[0]
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise self.fail(f"<{local}> holds {shown!r}, which is not a valid {local}") from None
        if tag == self._obj:
            return self.obj(elem)
        if tag == self._ref:
            ref_id = elem.get("RefId") or ""
            try:
                return self.refs[ref_id]
            except KeyError:
                raise self.fail(f'<Ref RefId="{ref_id}"> points at no earlier object') from None
        if tag == self._nil:
            return None
        if tag == self._pr:
            return self.progress(elem)
        # An element newer than MS-PSRP §2.2.5 (or of another namespace): its text is the best
        # reading we have.
        return unescape(elem.text or "")

    def obj(self, elem: etree._Element) -> PSObject:
        obj = PSObject()
        ref_id = elem.get("RefId")
        # Registered before its content is read: a member may point back at the object itself.
        if ref_id is not None and (self.targets is None or ref_id in self.targets):
            self.refs[ref_id] = obj
        for child in elem:
            tag = child.tag
            if tag == self._props:
                self.members(child, obj.props)
            elif tag == self._tn:
                obj.type_names, obj.form = self.tn(child)
            elif tag == self._tnref:
                tn_id = child.get("RefId") or ""
                try:
                    obj.type_names, obj.form = self.type_names[tn_id]
                except KeyError:
                    raise self.fail(f'<TNRef RefId="{tn_id}"> points at no earlier <TN>') from None
            elif tag == self._to_string:
                obj.to_string = unescape(child.text or "")
            elif tag == self._ms:
                self.members(child, obj.extended)
            elif tag in self._containers:
                obj.items = [self.value(item) for item in child]
            elif tag == self._dct:
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
        names = self._names
        for child in elem:
            raw = child.get("N") or ""
            name = names.get(raw)
            if name is None:
                name = unescape(raw)
                if len(names) < _NAME_CACHE:
                    names[raw] = name
            if name == SERIALIZATION_DATA and child.tag == self._ba:
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
            name, parse = PROGRESS_FIELDS.get(local, (local, unescape))
            try:
                record.props[name] = parse(child.text or "")
            except ValueError:
                raise self.fail(f"<PR> field <{local}> holds {child.text!r}") from None
        return record
