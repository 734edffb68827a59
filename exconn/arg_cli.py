"""Argument types shared by the command lines (`exconn`, `exconn posture`, `exconn collect`)."""

from __future__ import annotations

import argparse


def path_argument(text: str) -> str:
    """An argparse type for a file or folder name: an empty one (`-o ""`, an unset shell variable)
    would otherwise mean the current folder, or nothing at all, without a word."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name names no file or folder")
    return text
