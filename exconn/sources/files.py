"""An organisation from Export-Clixml files: the offline source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exconn.clixml.reader import iter_clixml
from exconn.errors import InputError
from exconn.model import (
    AcceptedDomain,
    ExchangeCertificate,
    ExchangeServer,
    InboundConnector,
    ModelObject,
    Organization,
    OutboundConnector,
    ReceiveConnector,
    SendConnector,
    Skipped,
    TransportConfig,
    identity_of,
    kind_of,
)
from exconn.sources.convert import convert_all

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
        else:
            raise InputError(path, "no such file or folder")
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def _key(obj: ModelObject) -> tuple[str, ...]:
    # Exchange identities are case-insensitive. A certificate is the same object only on the same
    # server: one certificate installed on every server is exported once per server.
    key = (kind_of(obj), identity_of(obj).casefold())
    if isinstance(obj, ExchangeCertificate):
        return (*key, str(obj.server).casefold())
    return key


def load(paths: Sequence[str | Path]) -> Organization:
    """Read every export under `paths` into one Organization.

    Several kinds in one file are fine. The same object (kind and identity) read twice, e.g. from
    two overlapping exports, is kept once; the later copy is listed as skipped.
    Raises InputError for the first file that is not a readable Export-Clixml export.
    """
    files = export_files(paths)
    kept: dict[tuple[str, ...], ModelObject] = {}
    skipped: list[Skipped] = []
    for file in files:
        for result in convert_all(iter_clixml(file), path=str(file)):
            if isinstance(result, Skipped):
                skipped.append(result)
                continue
            key = _key(result)
            first = kept.setdefault(key, result)
            if first is not result:
                where = f"{first.source.path} (object #{first.source.index})"
                kind = kind_of(result)
                skipped.append(
                    Skipped(
                        result.source, kind, identity_of(result), f"duplicate of the {kind} read from {where}"
                    )
                )
    objects = list(kept.values())
    return Organization(
        send_connectors=tuple(o for o in objects if isinstance(o, SendConnector)),
        receive_connectors=tuple(o for o in objects if isinstance(o, ReceiveConnector)),
        accepted_domains=tuple(o for o in objects if isinstance(o, AcceptedDomain)),
        transport_configs=tuple(o for o in objects if isinstance(o, TransportConfig)),
        certificates=tuple(o for o in objects if isinstance(o, ExchangeCertificate)),
        inbound_connectors=tuple(o for o in objects if isinstance(o, InboundConnector)),
        outbound_connectors=tuple(o for o in objects if isinstance(o, OutboundConnector)),
        servers=tuple(o for o in objects if isinstance(o, ExchangeServer)),
        skipped=tuple(skipped),
        sources=tuple(str(file) for file in files),
    )
