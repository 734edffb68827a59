"""Errors exconn reports to the user; the CLI maps them to exit statuses."""

from __future__ import annotations

import os
from pathlib import Path


def display_path(path: str | Path) -> str:
    """A file name fit for reports and messages: bytes that are not UTF-8 shown as `\\xHH`.

    Python keeps such bytes of a file name as lone surrogates, which no UTF-8 writer accepts.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class ExconnError(Exception):
    """Base of every error exconn raises on purpose (as opposed to a bug)."""


class InputError(ExconnError):
    """An input file or folder exconn refuses to read: exit status 2, one line naming the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = display_path(path)
        # One line, always: the CLI prints it as is, and a stray newline from a parser message
        # would split the reason from the file it belongs to.
        self.reason = " ".join(reason.split())
        super().__init__(f"{self.path}: {self.reason}")


class UsageError(ExconnError):
    """Options that contradict each other or name nothing to do: exit status 2."""
