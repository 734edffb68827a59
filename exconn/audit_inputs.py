"""Which of the paths given to `exconn audit` are exports and which are evidence, by content.

An admin hands over one folder: the snapshot's `Export-Clixml` files and, with `-IncludeLogs`, the
protocol and tracking logs beside them, or TLS-RPT reports and access logs. A file is an export
when it is CLIXML (`<Objs` in its first bytes, UTF-8 or UTF-16) that is not a
`Get-MessageTrackingLog` export; every other file goes to `exconn.evidence`, which recognises its
own kinds and notes the rest. File names never decide.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exconn.evidence.inputs import GZIP_MAGIC, HEAD, ZIP_MAGIC, input_files
from exconn.evidence.reduce import kind_of
from exconn.evidence.tracking import looks_like_tracking_clixml
from exconn.sources.files import EXPORT_SUFFIXES

_HEAD = 1 << 14


@dataclass(frozen=True, slots=True)
class SplitPaths:
    exports: tuple[str, ...]
    evidence: tuple[str, ...]


def is_export(path: Path) -> bool:
    """CLIXML other than message tracking objects; False for anything unreadable (the evidence
    reader then names it)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError:
        return False
    if head.startswith((GZIP_MAGIC, ZIP_MAGIC)):
        return False
    if looks_like_tracking_clixml(head):
        return False
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", "replace")
    else:
        text = head.decode("utf-8", "replace")
    text = text.lstrip("\ufeff \t\r\n")
    return text.startswith("<") and "<Objs" in text[:2048]


def classify(path: Path) -> str | None:
    """ "export", "evidence", or None (neither: a manifest, a README)."""
    if is_export(path):
        return "export"
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD)
    except OSError:
        return None
    if head.startswith((GZIP_MAGIC, ZIP_MAGIC)) or kind_of(head) is not None:
        return "evidence"
    return None


def split_paths(paths: Sequence[str]) -> SplitPaths:
    """Exports and evidence among `paths`: a file by its content, a folder file by file. A folder
    holding exports and nothing else exconn reads stays one path (the export reader walks it).
    What is neither stays with the exports when named (or named `.xml`), so the export reader
    refuses it in one line as before; a manifest or README met in a folder is passed over."""
    exports: list[str] = []
    evidence: list[str] = []
    for given in paths:
        try:
            mode = os.stat(given).st_mode
        except OSError:
            exports.append(given)  # the export reader says what is wrong with it
            continue
        if not stat.S_ISDIR(mode):
            (evidence if stat.S_ISREG(mode) and classify(Path(given)) == "evidence" else exports).append(
                given
            )
            continue
        kinds = [(f, classify(f)) for f in input_files([given])]
        logs = [str(f) for f, k in kinds if k == "evidence"]
        if not logs:
            exports.append(given)
            continue
        evidence.extend(logs)
        exports.extend(
            str(f) for f, k in kinds if k == "export" or (k is None and f.suffix.lower() in EXPORT_SUFFIXES)
        )
    return SplitPaths(tuple(exports), tuple(evidence))
