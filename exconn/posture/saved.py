"""Reading a posture saved by `exconn posture --save`, for `--load` and `exconn audit --posture`."""

from __future__ import annotations

import json

from exconn.errors import UsageError
from exconn.output import POSTURE_FILE_LIMIT, read_small_file
from exconn.posture.facts import FactsFormatError, PostureReport


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def load_report(path: str) -> PostureReport:
    """A posture saved by `--save`, for `--load` and `exconn audit --posture`; UsageError if not."""
    try:
        data = json.loads(read_small_file(path, POSTURE_FILE_LIMIT).decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {_reason(exc)}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    try:
        return PostureReport.from_json(data)
    except FactsFormatError as exc:
        raise UsageError(f"{path}: {exc}") from None
