"""A generic PowerShell object, the same whichever source it came from.

The CLIXML reader builds these from Export-Clixml files; the PSRP source converts pypsrp's objects
into the same shape, so that one converter (`exconn.sources.convert`) serves both. Nothing here
knows about lxml.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from dataclasses import dataclass, field
from typing import TypeAlias


class Form(enum.StrEnum):
    """How an object reached the file; the converter records it in `Source.form`."""

    LIVE = "live"  # exported inside the Exchange Management Shell: real type names
    DESERIALIZED = "deserialized"  # came through remoting: `Deserialized.` type names
    SELECTED = "selected"  # `Select-Object` output: a PSCustomObject with note properties


@dataclass(frozen=True, slots=True)
class SecureString:
    """An `<SS>` value: encrypted with a session key we do not have, so kept opaque."""

    ciphertext: str


# eq=False: two objects are the same only if they are the same instance, which is what a CLIXML
# `<Ref>` means, and it keeps objects hashable even when a reference cycle makes them recursive.
@dataclass(eq=False, slots=True)
class PSObject:
    """One `<Obj>`: type names, ToString, adapted and extended properties, and container content.

    `type_names` have any `Deserialized.` / `Selected.` prefix removed; `form` says which was there.
    Every property may be a primitive, None (`$null`), another PSObject, or the ToString of an
    object that lay past the serialization depth: readers must accept a string for any of them.
    """

    type_names: tuple[str, ...] = ()
    form: Form = Form.LIVE
    to_string: str | None = None
    props: dict[str, PSValue] = field(default_factory=dict)  # adapted properties (<Props>)
    extended: dict[str, PSValue] = field(default_factory=dict)  # note properties (<MS>)
    items: list[PSValue] | None = None  # <LST>, <IE>, <STK>, <QUE>
    dct: list[tuple[PSValue, PSValue]] | None = None  # <DCT>: keys may be objects, so pairs
    value: PSValue = None  # the primitive an enum or a wrapped value carries (<I32>, <S>, ...)
    line: int | None = None  # where a top-level <Obj> starts in its file (SARIF's region)

    @property
    def type_name(self) -> str:
        return self.type_names[0] if self.type_names else ""

    def has(self, name: str) -> bool:
        return self._key(name) is not None

    def get(self, name: str) -> PSValue:
        """A property by name: adapted first, then extended, case-insensitive like PowerShell."""
        found = self._key(name)
        if found is None:
            return None
        table, key = found
        return table[key]

    def names(self) -> list[str]:
        return [*self.props, *self.extended]

    def _key(self, name: str) -> tuple[dict[str, PSValue], str] | None:
        for table in (self.props, self.extended):
            if name in table:
                return table, name
        lowered = name.lower()
        for table in (self.props, self.extended):
            for key in table:
                if key.lower() == lowered:
                    return table, key
        return None


# Defined after PSObject so the union can name the class without quotes.
PSValue: TypeAlias = (
    None
    | bool
    | int
    | float
    | decimal.Decimal
    | str
    | bytes
    | dt.datetime
    | dt.timedelta
    | uuid.UUID
    | SecureString
    | PSObject
)
