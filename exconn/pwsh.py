"""PowerShell literals: the one place that decides how a value is written into generated script.

Every value that reaches a generated `.ps1` goes through `literal()` (or `quote()` for strings),
and every piece of free text that goes into a comment goes through `comment()`. Nothing else
builds PowerShell source from data.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

# PowerShell treats all five as single quotes inside a single-quoted string (the tokenizer's
# IsSingleQuote): each must be doubled, or a crafted connector name could close the string.
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\u0085]")
_NEWLINES = re.compile(r"[\r\n\u2028\u2029\u0085]+")
_PARAMETER = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


class Expression(str):
    """PowerShell source written by the script writer itself (`$saved.TlsDomain`), never from data:
    `literal()` passes it through unquoted."""


PsValue = bool | int | str | None | enum.Enum | Sequence[str]


class UnsafeValue(ValueError):
    """A value that cannot be written into a script safely (e.g. it contains a NUL)."""


def quote(text: str) -> str:
    """A PowerShell single-quoted string literal holding exactly `text`.

    Single-quoted strings do no expansion (`$`, backtick and double quotes are literal); the only
    special characters are the five single-quote characters, each escaped by doubling.
    """
    if _CONTROL.search(text):
        raise UnsafeValue(f"control character in value {text!r}")
    return "'" + "".join(ch + ch if ch in SINGLE_QUOTES else ch for ch in text) + "'"


def literal(value: PsValue) -> str:
    """A PowerShell expression for `value`: `$true`, `$null`, `25`, `'text'`, `@('a','b')`."""
    if isinstance(value, Expression):
        return str(value)
    if value is None:
        return "$null"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, enum.Enum):
        return quote(str(value.value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    return "@(" + ",".join(quote(str(v)) for v in value) + ")"


def hashtable(entries: Sequence[tuple[str, PsValue]]) -> Expression:
    """`@{Add='a','b'; Remove='c'}`, every value quoted; keys are plain names."""
    parts = []
    for key, value in entries:
        if not _PARAMETER.match(key):
            raise UnsafeValue(f"not a key name: {key!r}")
        if isinstance(value, list | tuple):
            parts.append(f"{key}=" + ",".join(quote(str(v)) for v in value))
        else:
            parts.append(f"{key}={literal(value)}")
    return Expression("@{" + "; ".join(parts) + "}")


def parameter(name: str) -> str:
    if not _PARAMETER.match(name):
        raise UnsafeValue(f"not a parameter name: {name!r}")
    return "-" + name


def command(cmdlet: str, params: Sequence[tuple[str, PsValue]]) -> str:
    """`Set-SendConnector -Identity 'x' -RequireTLS $true` with every value quoted."""
    if not re.match(r"^[A-Z][a-z]+-[A-Za-z]+$", cmdlet):
        raise UnsafeValue(f"not a cmdlet name: {cmdlet!r}")
    parts = [cmdlet]
    for name, value in params:
        if isinstance(value, bool):
            # `-Switch:$false` form: a bare `$false` after a switch parameter would be positional.
            parts.append(f"{parameter(name)}:{literal(value)}")
        else:
            parts.append(f"{parameter(name)} {literal(value)}")
    return " ".join(parts)


def comment(text: str) -> str:
    """Free text as one or more `# ` comment lines: a newline in data cannot end the comment."""
    cleaned = _CONTROL.sub("?", text)
    lines = [line.rstrip() for line in _NEWLINES.split(cleaned)]
    # `#>` would close a block comment if the script ever wraps this in one.
    return "\n".join("# " + line.replace("#>", "# >") for line in lines)
