"""Opening evidence inputs: files, folders, gzip and zip, recognised by their bytes, never by name.

Each input file becomes one or more *members* (a zip gives one per entry, a gzip its content),
each a binary stream with a cap on the bytes it may produce: a gzip bomb stops at the cap with one
clear line instead of filling memory or disk. Text is read in chunks and split into lines of at
most `MAX_LINE` bytes; a longer line is skipped (and counted), whatever its length, in constant
memory.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from exconn.errors import InputError, display_path

MAX_LINE = 1 << 20  # far above any real log line (Exchange truncates data at a few KiB)
CHUNK = 1 << 22
MIN_CAP = 1 << 30  # what one compressed member may expand to, at least...
RATIO_CAP = 200  # ...or this many times its compressed size (real logs compress 10-30x)
HEAD = 1 << 16

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


class TooLarge(Exception):
    """A compressed member expands past its cap (a gzip or zip bomb, or a cap set too low)."""


class _Capped(io.RawIOBase):
    """A read-only stream that refuses to produce more than `cap` bytes."""

    def __init__(self, inner: BinaryIO, cap: int, what: str) -> None:
        self._inner = inner
        self._left = cap
        self._cap = cap
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise TooLarge(f"{self._what} expands past {self._cap // 2**20} MiB (a compression bomb?)")
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def input_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files under the paths the user named, in a stable order; a missing path is an error."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise InputError(path, exc.strerror or "cannot be read") from None
        if stat.S_ISDIR(mode):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                out.extend(Path(root, f) for f in sorted(files) if not f.startswith("."))
        elif stat.S_ISREG(mode):
            out.append(path)
        else:
            raise InputError(path, "not a regular file or folder (a device, a FIFO or a socket)")
    return out


def members(path: Path) -> Iterator[tuple[str, BinaryIO]]:
    """The streams inside one file: itself, its gzip content, or each zip entry (one level of
    gzip inside a zip is opened too). The caller closes nothing: each stream is closed when the
    next is produced. Raises OSError, zipfile.BadZipFile, TooLarge."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or a device met in a folder would block or never end: not evidence.
        raise OSError(errno.EINVAL, "not a regular file (a device, a FIFO or a socket)", str(path))
    size = st.st_size
    with open(path, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(GZIP_MAGIC):
            yield display_path(path), _gunzip(raw, size, display_path(path))
        elif magic == ZIP_MAGIC:
            with zipfile.ZipFile(raw) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    name = f"{display_path(path)}!{info.filename}"
                    cap = max(MIN_CAP, RATIO_CAP * max(info.compress_size, 1))
                    with archive.open(info) as entry:
                        buffered = io.BufferedReader(_Capped(entry, cap, name), CHUNK)  # type: ignore[arg-type]
                        stream: BinaryIO = buffered
                        if buffered.peek(2)[:2] == GZIP_MAGIC:
                            stream = _gunzip(stream, info.compress_size, name)
                        yield name, stream
        else:
            yield display_path(path), raw


def _gunzip(raw: BinaryIO, compressed: int, name: str) -> BinaryIO:
    cap = max(MIN_CAP, RATIO_CAP * max(compressed, 1))
    inner = gzip.GzipFile(fileobj=raw, mode="rb")
    return io.BufferedReader(_Capped(inner, cap, name), CHUNK)  # type: ignore[arg-type]


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a member may raise for a broken input (a truncated gzip, a bad zip, a bomb)."""
    return (OSError, EOFError, zlib.error, zipfile.BadZipFile, TooLarge, gzip.BadGzipFile)


class Lines:
    """Text lines of a stream, at most MAX_LINE bytes each, decoded as UTF-8 (a bad byte becomes
    U+FFFD, never an error). A CSV reader takes a line's `\r` as its end already, so for CSV
    `strip_cr=False` saves a pass. `chunks()` yields lists of complete lines without their newlines;
    `too_long` counts the lines skipped for their length."""

    def __init__(self, stream: BinaryIO, first: bytes = b"", strip_cr: bool = True) -> None:
        self._stream = stream
        self._strip_cr = strip_cr
        self.balanced = True
        self._carry = first
        self.too_long = 0
        self._skipping = False

    def chunks(self) -> Iterator[list[str]]:
        carry = self._carry
        first = True
        done = False
        while not done:
            data = self._stream.read(CHUNK)
            if not data:
                # The end: what is left is the last line(s), with or without a final newline.
                done = True
                if not carry or self._skipping:
                    break
                data = b"" if carry.endswith(b"\n") else b"\n"
            if self._skipping:
                nl = data.find(b"\n")
                if nl < 0:
                    continue
                data = data[nl + 1 :]
                self._skipping = False
            buf = carry + data if carry else data
            if not buf:
                break
            cut = buf.rfind(b"\n")
            if cut < 0:
                carry = buf
                if len(carry) > MAX_LINE:
                    self.too_long += 1
                    self._skipping = True
                    carry = b""
                continue
            carry = buf[cut + 1 :]
            if len(carry) > MAX_LINE:
                self.too_long += 1
                self._skipping = True
                carry = b""
            text = buf[:cut].decode("utf-8", "replace")
            if first:
                text = text.removeprefix("\ufeff")
                first = False
            # Odd quotes in a chunk mean a line with broken quoting, which would make a CSV reader
            # swallow the lines after it: readers check this before trusting the fast path.
            self.balanced = not (text.count('"') & 1)
            lines = text.split("\n")
            if len(text) > MAX_LINE and max(map(len, lines)) > MAX_LINE:
                kept = [ln for ln in lines if len(ln) <= MAX_LINE]
                self.too_long += len(lines) - len(kept)
                lines = kept
            if self._strip_cr and "\r" in text:
                lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
            yield lines


def head_of(stream: BinaryIO) -> bytes:
    """The first bytes of a stream, for recognising its kind, without consuming them for good:
    the caller passes them back to `Lines` (or reads on after them)."""
    return stream.read(HEAD)
