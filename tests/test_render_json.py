"""The streamed JSON writer writes exactly what `json.dumps(indent=2)` would, piece by piece."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exconn.render.common import Stream, write_json

_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_same_bytes_as_dumps(value: Any) -> None:
    out = io.StringIO()
    write_json(out, value)
    assert out.getvalue() == json.dumps(value, indent=2, ensure_ascii=False)


@given(st.dictionaries(st.text(max_size=5), st.lists(_values, max_size=4), max_size=4))
def test_streamed_lists_same_bytes(doc: dict[str, list[Any]]) -> None:
    out = io.StringIO()
    write_json(out, {"runs": [{k: Stream(iter(v)) for k, v in doc.items()}]})
    assert out.getvalue() == json.dumps({"runs": [doc]}, indent=2, ensure_ascii=False)


class _Counting(io.StringIO):
    """Records the longest single write: a streamed report never writes the whole text at once."""

    longest = 0

    def write(self, text: str) -> int:
        self.longest = max(self.longest, len(text))
        return super().write(text)


def test_findings_written_one_by_one() -> None:
    findings = [{"rule": f"EXC-S{i:03}", "message": "x" * 200} for i in range(500)]
    out = _Counting()
    write_json(out, {"findings": Stream(iter(findings))})
    assert json.loads(out.getvalue()) == {"findings": findings}
    assert out.longest < 400  # one finding, not 500 of them
