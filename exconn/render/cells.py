"""Text measured in terminal cells: a CJK character takes two, a combining mark none.

wcwidth (a small pure-Python package) is the one maintained table of East Asian widths and
zero-width characters; `len` would let a line of CJK names run past the terminal's edge.
"""

from __future__ import annotations

import unicodedata

from wcwidth import wcwidth

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """`text` with control and format characters as escapes: a name from an export may hold an
    ESC sequence or a line break, which must not move the cursor or forge a line of the report."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or (ch == " "):
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) == "Cs":
            out.append(f"\\u{ord(ch):04x}")  # a lone surrogate (CLIXML _xD800_)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out)


def width(text: str) -> int:
    """Cells `text` takes (of already `visible` text)."""
    if text.isascii():
        return len(text)
    return sum(max(wcwidth(ch), 0) for ch in text)


def _cut(word: str, limit: int) -> list[str]:
    """A word longer than `limit` cells in pieces of at most `limit` cells."""
    pieces: list[str] = []
    current, used = "", 0
    for ch in word:
        w = max(wcwidth(ch), 0)
        if used + w > limit and current:
            pieces.append(current)
            current, used = "", 0
        current += ch
        used += w
    if current:
        pieces.append(current)
    return pieces


def wrap(text: str, limit: int, *, indent: str = "") -> list[str]:
    """`text` in lines of at most `limit` cells, broken at spaces (inside a word only when the word
    alone is too long); lines after the first start with `indent`. Line breaks in `text` are kept
    (a caller passes hostile text through `visible` first, which turns them into `\\n`)."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        current: str | None = None
        for word in visible(paragraph).split(" "):
            if current is not None and width(current) + 1 + width(word) <= limit:
                current += " " + word
                continue
            if current is not None:
                out.append(current)
            start = indent if out else ""
            room = max(limit - width(start), 1)
            pieces = _cut(word, room) if width(word) > room else [word]
            for piece in pieces[:-1]:
                out.append(start + piece)
                start = indent
                room = max(limit - width(start), 1)
            current = start + pieces[-1]
        out.append(current or "")
    return out


def shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` cells: its start and its end kept, the middle as '…' (an identity
    differs at its end as often as at its start: `EX01\\Default Frontend EX01`)."""
    text = visible(text)
    if width(text) <= limit:
        return text
    head_room = (limit - 1) // 2
    tail_room = limit - 1 - head_room
    head = _cut(text, head_room)[0]
    tail = "".join(reversed(_cut("".join(reversed(text)), tail_room)[0]))
    return head + "…" + tail
