"""Errors exconn reports to the user; the CLI maps them to exit statuses."""

from __future__ import annotations

from pathlib import Path


class ExconnError(Exception):
    """Base of every error exconn raises on purpose (as opposed to a bug)."""


class InputError(ExconnError):
    """An input file or folder exconn refuses to read: exit status 2, one line naming the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        # One line, always: the CLI prints it as is, and a stray newline from a parser message
        # would split the reason from the file it belongs to.
        self.reason = " ".join(reason.split())
        super().__init__(f"{self.path}: {self.reason}")


class UsageError(ExconnError):
    """Options that contradict each other or name nothing to do: exit status 2."""
