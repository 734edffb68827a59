"""The CLIXML writer (MS-PSRP §2.2.5): values in, a document shaped like a real Exchange export out.

Three forms, as connectors really arrive:
- `live`: types as the Exchange Management Shell exports them (enums are `Obj` + `ToString` + `I32`);
- `deserialized`: every type name prefixed `Deserialized.`, nested Exchange values flattened to their
  string form (plain remoting has no Exchange type data to rebuild them), multi-valued wrappers kept;
- `selected`: `Select-Object` output, a `Selected.<type>` PSCustomObject whose selected properties are
  note properties in `MS`.

The writer builds strings directly (no tree), so a large export costs one pass and little memory.
Test tooling (see `tests/clixml_build/__init__.py`), not part of the exconn package.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import random
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeAlias

from exconn.clixml.writer import BOMS, Encoding, codec, encode
from tests.clixml_build.values import (
    PS_NAMESPACE,
    STRING_TAGS,
    Obj,
    Prim,
    Value,
    format_datetime,
    format_double,
    format_duration,
)

Form: TypeAlias = Literal["live", "deserialized", "selected"]
BlobMode: TypeAlias = Literal["none", "short", "realistic"]


# --- escaping --------------------------------------------------------------------

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


def _primitive(value: Value) -> Prim | None:
    """The element for a plain Python value, or None when the value is not a primitive."""
    if isinstance(value, Prim):
        return value
    if isinstance(value, bool):
        return Prim("B", "true" if value else "false")
    if isinstance(value, int):
        return Prim("I32", str(value)) if -(2**31) <= value < 2**31 else Prim("I64", str(value))
    if isinstance(value, float):
        return Prim("Db", format_double(value))
    if isinstance(value, str):
        return Prim("S", value)
    if isinstance(value, bytes):
        return Prim("BA", base64.b64encode(value).decode("ascii"))
    if isinstance(value, dt.datetime):
        return Prim("DT", format_datetime(value))
    if isinstance(value, dt.timedelta):
        return Prim("TS", format_duration(value))
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
        text = _text(prim.text) if prim.tag in STRING_TAGS else _xml_text(prim.text)
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
    text_codec = codec(encoding)  # refuses an unknown encoding before the file is created
    writer = ClixmlWriter(
        form,
        serialization_data=serialization_data,
        seed=seed,
        select=select,
        nested_form=nested_form,
        max_depth=max_depth,
        newline=newline,
    )
    with open(path, "wb") as handle:
        written = handle.write(BOMS[encoding])
        for chunk in writer.iter_chunks(objects):
            written += handle.write(chunk.encode(text_codec))
    return written
