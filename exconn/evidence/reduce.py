"""Reducing inputs to aggregates: recognise each member by its bytes, read it, one aggregate a file.

Files are reduced in parallel across cores (worker processes: the readers are CPU-bound Python),
and the per-file aggregates merged by addition. A file exconn cannot read (a truncated gzip, a
bomb, a report with wrong types) becomes one note naming it; every other file is read as usual.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

from exconn.errors import InputError, display_path
from exconn.evidence.access import looks_like_access_log, read_access_log
from exconn.evidence.accumulate import Accumulator, merge
from exconn.evidence.inputs import Lines, head_of, input_files, members, read_errors
from exconn.evidence.model import Evidence
from exconn.evidence.saved import from_doc, is_saved
from exconn.evidence.smtplog import read_protocol_log
from exconn.evidence.tlsrpt import (
    ReportError,
    looks_like_mail,
    looks_like_report,
    read_json_stream,
    read_mail_stream,
)
from exconn.evidence.tracking import looks_like_tracking_clixml, read_tracking_clixml, read_tracking_log
from exconn.output import POSTURE_FILE_LIMIT

SKIPPED = "not a log or report exconn reads (skipped)"

# A protocol log line without its header (an excerpt): a time, then the nine columns.
_BARE_PROTOCOL = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z,[^,\r\n]*,[0-9A-Fa-f]{8,},\d+,")


def kind_of(head: bytes) -> str | None:
    """What a member holds, from its first bytes: protocol-receive, protocol-send, tracking,
    tlsrpt-json, tlsrpt-mail, access, or None (not evidence exconn reads)."""
    text = head.removeprefix(b"\xef\xbb\xbf")
    if text.startswith(b"#"):
        top = text[:4096]
        if b"#Log-type: SMTP Receive Protocol Log" in top:
            return "protocol-receive"
        if b"#Log-type: SMTP Send Protocol Log" in top:
            return "protocol-send"
        if b"#Log-type: Message Tracking Log" in top:
            return "tracking"
    if m := _BARE_PROTOCOL.match(text):
        connector = m.group(0).split(b",")[1]
        return "protocol-receive" if b"\\" in connector else "protocol-send"
    if is_saved(text):
        return "saved"
    if looks_like_report(text):
        return "tlsrpt-json"
    if looks_like_tracking_clixml(head):
        return "tracking-clixml"
    if looks_like_access_log(text):
        return "access"
    if looks_like_mail(text):
        return "tlsrpt-mail"
    return None


def _read_member(acc: Accumulator, name: str, stream: BinaryIO, since: str | None, path: str) -> None:
    head = head_of(stream)
    kind = kind_of(head)
    if kind is None:
        acc.note(f"{name}: {SKIPPED}")
        return
    if kind == "tracking-clixml":
        if name != display_path(path):
            raise ReportError("a CLIXML export inside an archive: extract it first")
        read_tracking_clixml(acc, path, since)
        acc.files += 1
        return
    if kind == "saved":
        data = head + stream.read(POSTURE_FILE_LIMIT + 1 - len(head))
        try:
            acc.add(from_doc(json.loads(data.decode("utf-8-sig"))))
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            raise ReportError(f"not a valid exconn-evidence file: {exc}") from None
        return
    if kind == "tlsrpt-json":
        read_json_stream(acc, stream, head, since)
    elif kind == "tlsrpt-mail":
        read_mail_stream(acc, stream, head, since, name)
    else:
        lines = Lines(stream, head, strip_cr=kind == "access")
        if kind == "tracking":
            read_tracking_log(acc, lines.chunks(), since)
        elif kind == "access":
            read_access_log(acc, lines.chunks(), since)
        else:
            read_protocol_log(acc, lines, kind == "protocol-receive", since)
        if lines.too_long:
            acc.bad_lines += lines.too_long
            acc.note(f"{name}: {lines.too_long} line(s) longer than 1 MiB skipped")
    acc.files += 1


def reduce_file(path: str, since: str | None = None) -> Evidence:
    """One input file (possibly a gzip or zip) to its aggregate; never raises for bad input."""
    acc = Accumulator()
    bad_before = 0
    name = path
    try:
        for name, stream in members(Path(path)):
            bad_before = acc.bad_lines
            try:
                _read_member(acc, name, stream, since, path)
            except ReportError as exc:
                acc.note(f"{name}: {exc}")
            except InputError as exc:  # from the CLIXML reader, which names the file itself
                acc.note(f"{name}: {exc.reason}")
            finally:
                if bad_before != acc.bad_lines and not any(n.startswith(name) for n in acc.notes[-3:]):
                    acc.note(f"{name}: {acc.bad_lines - bad_before} unreadable line(s) skipped")
    except read_errors() as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        acc.note(f"{name}: {reason}")
    return acc.freeze()


def reduce_paths(
    paths: Sequence[str | Path],
    since: str | None = None,
    workers: int | None = None,
    mapper: Callable[[Callable[[str, str | None], Evidence], list[str], str | None], Iterator[Evidence]]
    | None = None,
) -> Evidence:
    """All files under `paths`, reduced in parallel (`workers` processes; 1: in this process), or
    through `mapper` (a distributed engine's map). Raises InputError for a path that is missing."""
    files = [str(f) for f in input_files(paths)]
    if mapper is not None:
        return merge(*mapper(reduce_file, files, since))
    n = workers if workers is not None else (os.cpu_count() or 1)
    n = max(1, min(n, len(files)))
    if n == 1:
        return merge(*(reduce_file(f, since) for f in files))
    # Largest first, so that one big file does not start last and leave the other cores idle.
    files.sort(key=_size, reverse=True)
    with ProcessPoolExecutor(max_workers=n) as pool:
        parts = list(pool.map(reduce_file, files, [since] * len(files), chunksize=1))
    return merge(*parts)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
