"""Renderers: read a Report (and the inventory), never anything upstream.

One module per format, each with `write(report, org, info, out)` (the `Renderer` protocol),
chosen by the `Format` enum and imported only when used: an offline JSON audit does not load the
HTML template engine. Every renderer writes as it goes; `render` collects the text for callers
that want a string.
"""

from __future__ import annotations

import enum
import importlib
import io
from typing import TextIO, cast

from exconn.model import Organization
from exconn.render.common import Renderer, RunInfo, plain, summary
from exconn.render.markdown import rules_markdown
from exconn.rules.base import Report

__all__ = [
    "Format",
    "Renderer",
    "RunInfo",
    "escaping",
    "plain",
    "render",
    "rules_markdown",
    "summary",
    "write",
]


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    SARIF = "sarif"
    HTML = "html"

    @property
    def renderer(self) -> Renderer:
        module = importlib.import_module(f"exconn.render.{self.value}")
        return cast("Renderer", module.write)


def write(report: Report, org: Organization, info: RunInfo, fmt: Format, out: TextIO) -> None:
    """Write the report to `out` in `fmt`, piece by piece; lone surrogates escaped (see `writable`)."""
    fmt.renderer(report, org, info, escaping(out))


def escaping(out: TextIO) -> TextIO:
    """`out`, with every piece written passed through `writable` first."""
    return cast("TextIO", _Writable(out))


def render(report: Report, org: Organization, info: RunInfo, fmt: Format) -> str:
    """The report as text that any UTF-8 writer accepts (see `writable`)."""
    buffer = io.StringIO()
    write(report, org, info, fmt, buffer)
    return buffer.getvalue()


def writable(text: str) -> str:
    """`text` with lone surrogates written as `\\udXXX` escapes, so that UTF-8 can encode it.

    A CLIXML name may hold one (`_xD800_`); the reader keeps it as is, and in JSON the escape
    reads back as the same character.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Writable(io.TextIOBase):
    """A text stream that passes every piece through `writable` to the stream it wraps.

    A lone surrogate is one code point, never split between two pieces, so escaping each piece
    gives the same text as escaping the whole.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        self._out.write(writable(text))
        return len(text)
