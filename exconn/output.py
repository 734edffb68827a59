"""Paths the user names on the command line, and writing to them, never half-written."""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TextIO

from exconn.errors import InputError

# Bounds for the small input files read whole: far above any real one, far below a machine's memory.
DOMAIN_LIST_LIMIT = 16 * 2**20
POSTURE_FILE_LIMIT = 256 * 2**20


def read_small_file(path: str | Path, limit: int) -> bytes:
    """The bytes of a small input file the user named (a domain list, a saved posture).

    Raises OSError, with a `strerror` fit for a one-line message, for anything but a regular file
    (`/dev/zero` would never end, a FIFO may never get a writer) and for a file over `limit` bytes.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file (a device, a FIFO or a socket)", str(path))
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit // 2**20} MiB, too large for this file", str(path))
    return data


def decode_text(data: bytes) -> str:
    """A small text file's content: UTF-8 (with or without BOM), or UTF-16 with a BOM, which is
    what Windows PowerShell 5.1's `>` and Notepad's "Unicode" write. Raises UnicodeDecodeError."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def write_file(path: str | Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Replace `path` with `data` atomically: a temporary file in the same folder, then a rename.

    A failure (disk full, a read-only folder) leaves the old file as it was and no temporary file
    behind. A path that is a device, a FIFO or a socket (`/dev/stdout`, `/dev/null`), directly or
    through a link, is written to directly: renaming over it would replace the device itself. A
    symbolic link to anything else is replaced by the new file, never written through: a link
    planted in an output folder cannot make exconn overwrite the file it points at. `data` may be
    a function that writes to the open file instead (see `stage_file`). Raises OSError.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # absent, or a dangling link: replaced like any other
    if mode is not None and stat.S_ISDIR(mode) and not os.path.islink(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        with open(path, "wb") as handle:
            _put(handle, data)
        return
    tmp, target = stage_file(path, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_folder(path: str | Path) -> str | None:
    """Why a file cannot be created at `path` (its folder is missing or not a folder), or None;
    checked before the work, so a long audit does not end in "cannot write"."""
    parent = Path(path).parent
    if not parent.exists():
        return f"the folder {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a folder"
    return None


def stage_file(path: str | Path, data: bytes | Callable[[BinaryIO], None]) -> tuple[str, Path]:
    """Write `data` to a new temporary file beside `path`, flushed to disk; returns it and the path
    to rename it over (`path` itself: a symbolic link there is replaced, not followed). The new
    file keeps the mode of the regular file it replaces, else the umask's. The caller renames it
    into place (several files can be staged first, then renamed together) or removes it. Raises
    OSError, leaving no temporary file behind. `data` may be a function that writes to the open
    file (a report streamed as it is rendered) instead of the bytes themselves.
    """
    target = Path(path)
    try:
        old = os.lstat(target)
        keep = stat.S_IMODE(old.st_mode) if stat.S_ISREG(old.st_mode) else None
    except FileNotFoundError:
        keep = None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if keep is None:
                umask = os.umask(0)
                os.umask(umask)
                keep = 0o666 & ~umask  # mkstemp's 0600 is for secrets
            os.fchmod(handle.fileno(), keep)
            _put(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp, target


def _put(handle: BinaryIO, data: bytes | Callable[[BinaryIO], None]) -> None:
    if isinstance(data, bytes):
        handle.write(data)
    else:
        data(handle)


def emit(produce: Callable[[TextIO], None], output: str | None, stdout: TextIO) -> None:
    """The report streamed as it is rendered: to stdout, or to a temporary file beside `output`
    renamed over it once complete (never a half-written report)."""
    if output is None:
        produce(stdout)
        return

    def to_file(handle: BinaryIO) -> None:
        # newline="\n": the bytes are the same on every platform, as the JSON contract wants.
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="\n")
        produce(text)
        text.flush()
        text.detach()  # the handle belongs to write_file, which closes it

    try:
        write_file(output, to_file)
    except OSError as exc:
        raise InputError(output, f"cannot write: {exc.strerror}") from None
