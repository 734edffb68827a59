"""An organisation from Export-Clixml files: the offline source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exconn.clixml.reader import iter_clixml
from exconn.errors import InputError, display_path
from exconn.model import Organization
from exconn.sources.convert import assemble, iter_convert

EXPORT_SUFFIXES = frozenset({".xml", ".clixml"})


def export_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to read: files as given, folders searched recursively for exports, each once."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(
                child
                for child in path.rglob("*")
                if child.is_file() and child.suffix.lower() in EXPORT_SUFFIXES
            )
            if not found:
                raise InputError(path, "this folder holds no export files (*.xml, *.clixml)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise InputError(path, "is not a regular file or folder (a device, a FIFO or a socket)")
        else:
            raise InputError(path, "no such file or folder")
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def load(paths: Sequence[str | Path]) -> Organization:
    """Read every export under `paths` into one Organization (several kinds in one file are fine).

    Raises InputError for the first file that is not a readable Export-Clixml export, and when
    none holds an object exconn reads (an export of another cmdlet): auditing nothing is no pass.
    """
    files = export_files(paths)
    results = (
        result for file in files for result in iter_convert(iter_clixml(file), path=display_path(file))
    )
    org = assemble(results, sources=[display_path(file) for file in files])
    if not org.objects():
        kinds = sorted({s.type_name or "no type name" for s in org.skipped})
        held = f"only {', '.join(kinds[:3])}{', ...' if len(kinds) > 3 else ''}" if kinds else "no objects"
        where, verb = (
            (display_path(files[0]), "holds") if len(files) == 1 else (f"{len(files)} files", "hold")
        )
        raise InputError(
            where,
            f"{verb} {held}, nothing exconn audits; export Get-SendConnector, Get-ReceiveConnector, "
            "Get-AcceptedDomain, Get-TransportConfig, Get-ExchangeCertificate "
            "(scripts/Export-ExconnSnapshot.ps1 does it all)",
        )
    return org
