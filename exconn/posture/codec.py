"""One generic JSON codec for the frozen posture facts: dataclass fields to JSON objects and back.

Fields map to keys of the same name in declaration order; enums travel by value, tuples as lists,
nested dataclasses as objects, `X | None` as the value or null. A field can opt out or shape its own
keys through its metadata (`codec_field`): the saved format has a few keys that are not one field
(`mx` + `mx_lookup`, the derived `null_mx`/`implicit`), and the certificate chain is never saved.

Decoding checks every type and names the path of what is wrong (`FactsFormatError`); a missing key,
or null for a field that is not optional, takes the field's default when it has one.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

#: What a field's own encoder returns: the (key, JSON value) pairs it contributes, in order.
Encoder = Callable[[Any], Iterable[tuple[str, Any]]]
#: A field's own decoder: the whole JSON object of its dataclass and the path, to the field's value.
Decoder = Callable[[Mapping[str, Any], str], Any]

_CODEC = "exconn.codec"


class FactsFormatError(ValueError):
    """A saved posture file that is not ours, of an unknown version, or malformed."""


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldCodec:
    skip: bool = False
    encode: Encoder | None = None
    decode: Decoder | None = None


def codec_field(
    *, skip: bool = False, encode: Encoder | None = None, decode: Decoder | None = None
) -> dict[str, Any]:
    """Field metadata: `skip` leaves the field out of JSON (it decodes to its default); `encode` /
    `decode` replace the generic handling of that one field."""
    return {_CODEC: _FieldCodec(skip, encode, decode)}


@functools.cache
def _fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any, _FieldCodec], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name], f.metadata.get(_CODEC, _FieldCodec())) for f in dataclasses.fields(cls))


def to_json(obj: Any) -> Any:
    """JSON-ready data (dicts, lists, str, int, bool, None) for a facts value."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f, _hint, codec in _fields(type(obj)):
            if codec.skip:
                continue
            value = getattr(obj, f.name)
            if codec.encode is not None:
                out.update(codec.encode(value))
            else:
                out[f.name] = to_json(value)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [to_json(v) for v in obj]
    return obj


def from_json(cls: type[T], value: object, what: str) -> T:
    """The dataclass `cls` from its JSON object; FactsFormatError naming `what` when malformed."""
    data = expect_object(value, what)
    kwargs: dict[str, Any] = {}
    for f, hint, codec in _fields(typing.cast(type, cls)):
        if codec.skip:
            continue
        path = f"{what}.{f.name}"
        if codec.decode is not None:
            kwargs[f.name] = codec.decode(data, what)
            continue
        raw = data.get(f.name)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if raw is None and has_default and not _optional(hint):
            continue  # absent (or null where null is not allowed): the default
        if f.name not in data and has_default:
            continue
        kwargs[f.name] = decode_value(hint, raw, path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key was missing
        raise FactsFormatError(f"{what}: {exc}") from None


def expect_object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FactsFormatError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _optional(hint: Any) -> bool:
    return _is_union(hint) and type(None) in typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def decode_value(hint: Any, raw: object, path: str) -> Any:
    """One JSON value as the type `hint`."""
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None:
            if len(args) < len(typing.get_args(hint)):
                return None
            raise FactsFormatError(f"{path}: expected a value, got null")
        if len(args) != 1:
            raise TypeError(f"{path}: unions of several types are not supported")
        return decode_value(args[0], raw, path)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(raw, list):
            raise FactsFormatError(f"{path}: expected a list, got {type(raw).__name__}")
        return tuple(decode_value(item, v, f"{path}[{i}]") for i, v in enumerate(raw))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, raw, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        base = str if issubclass(hint, str) else int
        if not isinstance(raw, base) or isinstance(raw, bool):
            raise FactsFormatError(f"{path}: expected a {base.__name__}")
        try:
            return hint(raw)
        except ValueError:
            known = ", ".join(str(m.value) for m in hint)
            raise FactsFormatError(f"{path}: unknown value {raw!r} (one of: {known})") from None
    if hint is bool:
        if not isinstance(raw, bool):
            raise FactsFormatError(f"{path}: expected true or false")
        return raw
    if hint is int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise FactsFormatError(f"{path}: expected an integer")
        return raw
    if hint is str:
        if not isinstance(raw, str):
            raise FactsFormatError(f"{path}: expected a string")
        return raw
    raise TypeError(f"{path}: no JSON decoding for {hint!r}")
