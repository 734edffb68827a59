"""The one quoting function: nothing in a value can leave its string or its comment.

PowerShell is not installable here, so the check is a tokenizer-level one: a scanner that knows
PowerShell's single-quoted strings (all five quote characters, each escaped by doubling) finds
where every string ends, and the code outside strings must carry nothing from the data.
"""

from __future__ import annotations

import enum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exconn import pwsh

QUOTES = "'\u2018\u2019\u201a\u201b"


def _scan(line: str) -> tuple[str, list[str], bool]:
    """(code outside strings and comments, the strings' values, whether every string is closed)."""
    code: list[str] = []
    strings: list[str] = []
    current: list[str] | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if current is not None:
            if ch in QUOTES:
                if i + 1 < len(line) and line[i + 1] in QUOTES:
                    current.append(ch)
                    i += 2
                    continue
                strings.append("".join(current))
                current = None
            else:
                current.append(ch)
            i += 1
            continue
        if ch in QUOTES:
            current = []
        elif ch == "#":
            break  # a line comment runs to the end of the line
        else:
            code.append(ch)
        i += 1
    return "".join(code), strings, current is None


def assert_balanced(line: str) -> None:
    assert _scan(line)[2], f"unterminated single-quoted string: {line!r}"


def code_of(line: str) -> str:
    return _scan(line)[0]


HOSTILE = [
    "plain",
    "O'Brien",
    "\u2018left\u2019 right\u201a low\u201b reversed",
    "''''",
    "'\u2019",
    "$(Remove-Item -Recurse C:\\)",
    "`'; Remove-Item x; '`",
    "a;b|c&d",
    "$env:PATH @(1) ${x}",
    "#> <# x",
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_quote_round_trips_and_leaves_no_code(text: str) -> None:
    line = "Set-SendConnector -Identity " + pwsh.quote(text) + " -WhatIf"
    code, strings, closed = _scan(line)
    assert closed
    assert strings == [text]
    assert code == "Set-SendConnector -Identity  -WhatIf"


# Any text a connector name can hold: every plane, weighted towards the characters that matter.
_NAME_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(QUOTES + '"`$;#<>(){}@|&\n\t -'),
        st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    )
)


@given(_NAME_TEXT)
def test_any_name_round_trips_and_leaves_no_code(text: str) -> None:
    # A newline inside a single-quoted string is data: scan the command as one text.
    code, strings, closed = _scan("Set-SendConnector -Identity " + pwsh.quote(text) + " -WhatIf")
    assert closed and strings == [text]
    assert code == "Set-SendConnector -Identity  -WhatIf"


@given(_NAME_TEXT)
def test_any_text_stays_inside_its_comment(text: str) -> None:
    for line in pwsh.comment(text).split("\n"):
        assert line.startswith("# ") and "#>" not in line[1:]


@pytest.mark.parametrize("q", list(QUOTES))
def test_every_quote_character_is_doubled(q: str) -> None:
    assert pwsh.quote(f"a{q}b") == f"'a{q}{q}b'"


@pytest.mark.parametrize("bad", ["a\x00b", "a\x1bb", "a\x7fb", "a\u2028b", "a\x0bb"])
def test_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(pwsh.UnsafeValue):
        pwsh.quote(bad)


def test_literals() -> None:
    class Level(enum.Enum):
        DV = "DomainValidation"

    assert pwsh.literal(None) == "$null"
    assert pwsh.literal(True) == "$true"
    assert pwsh.literal(False) == "$false"
    assert pwsh.literal(25) == "25"
    assert pwsh.literal(Level.DV) == "'DomainValidation'"
    assert pwsh.literal(["a'b", "c"]) == "@('a''b','c')"
    assert pwsh.literal([]) == "@()"


def test_command_uses_colon_form_for_booleans_and_quotes_values() -> None:
    line = pwsh.command(
        "Set-SendConnector", [("Identity", "x'y"), ("RequireTLS", False), ("TlsDomain", None)]
    )
    assert line == "Set-SendConnector -Identity 'x''y' -RequireTLS:$false -TlsDomain $null"


@pytest.mark.parametrize("name", ["Bad Name", "a;b", "-x", "", "$x"])
def test_parameter_names_are_checked(name: str) -> None:
    with pytest.raises(pwsh.UnsafeValue):
        pwsh.parameter(name)


@pytest.mark.parametrize("cmdlet", ["Set-X; rm", "set-x", "Set-X Y", "iex"])
def test_cmdlet_names_are_checked(cmdlet: str) -> None:
    with pytest.raises(pwsh.UnsafeValue):
        pwsh.command(cmdlet, [])


@pytest.mark.parametrize(
    "text", ["a\nRemove-Item x", "a\r\nb", "a\u2028b\u0085c", "end #> Remove-Item x <#", "\x00nul"]
)
def test_comments_cannot_be_left(text: str) -> None:
    out = pwsh.comment(text)
    for line in out.split("\n"):
        assert line.startswith("# ")
        assert "#>" not in line
        assert code_of(line) == ""
    assert "\r" not in out
