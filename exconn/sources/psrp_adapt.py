"""PSRP objects into exconn's shapes: the model (through the one converter) and snapshot files.

`to_psobject` decodes each object's CLIXML, as the server sent it and pypsrp kept it, with the
CLIXML reader's own decoder (`exconn.clixml.primitives`), so a live object and the same object
read back from a snapshot are the same `PSObject`. `save_snapshot` writes the folder
`scripts/Export-ExconnSnapshot.ps1` writes: the raw CLIXML with the `Deserialized.` type names and
the `PSComputerName` note property that PowerShell's own `Export-Clixml` adds after remoting.
"""

from __future__ import annotations

import json
import platform
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lxml import etree

from exconn.clixml.objects import Form, PSObject
from exconn.clixml.primitives import Decoder
from exconn.errors import InputError
from exconn.model import Organization
from exconn.output import write_file
from exconn.sources.convert import assemble, convert
from exconn.sources.psrp import Collection
from exconn.sources.psrp_session import CmdletRun

PS_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"
SNAPSHOT_FORMAT = "exconn-snapshot"
SNAPSHOT_VERSION = 1

# --- pypsrp objects -> PSObject -> model -----------------------------------------------------------


class _MessageDecoder(Decoder):
    """One PSRP message: its own RefId and TN scope, errors naming the cmdlet run and object."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def fail(self, reason: str) -> Exception:
        return InputError(self.where, reason)


def to_psobject(
    obj: Any,
    *,
    computer_name: str | None = None,
    runspace_id: uuid.UUID | None = None,
    where: str = "psrp",
) -> PSObject:
    """A pypsrp `GenericComplexObject` as the `PSObject` the CLIXML reader makes of the same object.

    Decoded from the object's own CLIXML, which pypsrp keeps, with the reader's decoder: pypsrp's
    own reading differs from PowerShell's (`<B>1</B>` is False to it, DateTime stays a string),
    and one object must not mean two things depending on whether it came live or from a file.
    Like PowerShell after remoting, the object gets the `PSComputerName`, `RunspaceId` and
    `PSShowComputerName` note properties, and its form is `deserialized`. A value PowerShell
    would refuse is an InputError naming `where`.
    """
    root = _parse_fragment(getattr(obj, "_xml", None) or "")
    if root is None or root.tag != "Obj":
        raise InputError(where, "the server sent an object whose CLIXML pypsrp did not keep or cannot parse")
    result = _MessageDecoder(where).obj(root)
    result.form = Form.DESERIALIZED
    if computer_name is not None:
        result.extended.setdefault("PSComputerName", computer_name)
        if runspace_id is not None:
            result.extended.setdefault("RunspaceId", runspace_id)
        result.extended.setdefault("PSShowComputerName", False)
    return result


def _parse_fragment(text: str) -> etree._Element | None:
    """One message's CLIXML, namespaces dropped (PSRP messages carry none; a file's do)."""
    if not text:
        return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except etree.XMLSyntaxError:
        return None
    for node in root.iter():
        if isinstance(node.tag, str) and node.tag.startswith("{"):
            node.tag = etree.QName(node).localname
    return root


def psobjects(collection: Collection) -> list[tuple[CmdletRun, list[PSObject]]]:
    """Every run with its objects converted, in collection order."""
    return [
        (
            run,
            [
                to_psobject(
                    o,
                    computer_name=run.computer_name,
                    runspace_id=collection.runspace_ids.get(run.host),
                    where=f"psrp://{run.host}/{run.cmdlet} object #{index}",
                )
                for index, o in enumerate(run.objects)
            ],
        )
        for run in collection.runs
    ]


def to_organization(collection: Collection) -> Organization:
    """The model, made by the one converter from the converted objects (no file in between).

    Each object's source is `psrp://HOST/CMDLET` with form `psrp`. An object read twice (kind and
    identity, certificates per server) is kept once and the copy listed as skipped, as `load` does.
    """
    results = (
        result
        for run, objects in psobjects(collection)
        for index, obj in enumerate(objects)
        for result in convert(obj, path=f"psrp://{run.host}/{run.cmdlet}", index=index, form="psrp")
    )
    return assemble(results, sources=collection.endpoints)


# --- the snapshot folder -------------------------------------------------------------------------


def snapshot_file(cmdlet: str, server: str | None) -> str | None:
    """File names as the export script writes them (None: the script keeps no file)."""
    if cmdlet == "Get-OrganizationConfig":
        return None
    if cmdlet == "Get-ExchangeCertificate":
        return f"Get-ExchangeCertificate-{_safe_file_part(server or 'local')}.xml"
    return f"{cmdlet}.xml"


def _safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _snapshot_object(
    obj: Any, computer_name: str, runspace_id: uuid.UUID | None, next_ref: int
) -> tuple[str, int]:
    """One object's CLIXML as received, made ready for a file: RefIds renumbered file-wide (they
    are per message in PSRP), type names prefixed `Deserialized.`, and the note properties
    PowerShell adds after remoting, as `Export-Clixml` in a remote session writes them."""
    raw = getattr(obj, "_xml", None)
    if not raw:
        raise ValueError("pypsrp kept no CLIXML for this object")
    root = _parse_fragment(raw)
    if root is None:
        raise ValueError("the CLIXML pypsrp kept is not well-formed")
    obj_ids: dict[str, str] = {}
    tn_ids: dict[str, str] = {}
    for element in root.iter():
        if element.tag == "Obj" and element.get("RefId") is not None:
            obj_ids[element.get("RefId") or ""] = str(next_ref + len(obj_ids))
    offset = next_ref + len(obj_ids)
    for element in root.iter():
        if element.tag == "TN" and element.get("RefId") is not None:
            tn_ids[element.get("RefId") or ""] = str(offset + len(tn_ids))
    for element in root.iter():
        ref_id = element.get("RefId")
        if ref_id is None:
            continue
        if element.tag in ("Obj", "Ref"):
            element.set("RefId", obj_ids.get(ref_id, ref_id))
        elif element.tag in ("TN", "TNRef"):
            element.set("RefId", tn_ids.get(ref_id, ref_id))
        if element.tag == "TN":
            for type_name in element:
                if type_name.text and not type_name.text.startswith("Deserialized."):
                    type_name.text = "Deserialized." + type_name.text
    members = root.find("MS")
    if members is None:
        members = etree.SubElement(root, "MS")
    present = {child.get("N") for child in members}
    extra = []
    if "PSComputerName" not in present:
        node = etree.Element("S", N="PSComputerName")
        node.text = computer_name
        extra.append(node)
    if "RunspaceId" not in present and runspace_id is not None:
        node = etree.Element("G", N="RunspaceId")
        node.text = str(runspace_id)
        extra.append(node)
    if "PSShowComputerName" not in present:
        node = etree.Element("B", N="PSShowComputerName")
        node.text = "false"
        extra.append(node)
    for index, node in enumerate(extra):
        members.insert(index, node)
    return etree.tostring(root, encoding="unicode"), offset + len(tn_ids)


def _document(objects: Iterable[tuple[Any, str, uuid.UUID | None]]) -> str:
    parts = [f'<Objs Version="1.1.0.1" xmlns="{PS_NAMESPACE}">']
    next_ref = 0
    for obj, computer_name, runspace_id in objects:
        text, next_ref = _snapshot_object(obj, computer_name, runspace_id, next_ref)
        parts.append(text)
    parts.append("</Objs>")
    return "\r\n".join(parts)


def _organisation(collection: Collection) -> str | None:
    for run in collection.runs:
        if run.cmdlet == "Get-OrganizationConfig" and run.objects:
            name = run.objects[0].adapted_properties.get("Name")
            if name:
                return str(name)
    # Without Get-OrganizationConfig's answer: the organisation container in any object's DN.
    pattern = re.compile(r",CN=([^,]+),CN=Microsoft Exchange,CN=Services,", re.IGNORECASE)
    for run in collection.runs:
        for obj in run.objects:
            dn = str(getattr(obj, "adapted_properties", {}).get("DistinguishedName") or "")
            match = pattern.search(dn)
            if match:
                return match.group(1)
    return None


def _servers(collection: Collection) -> list[dict[str, str]]:
    return [
        {
            "name": str(obj.adapted_properties.get("Name") or ""),
            "build": str(obj.adapted_properties.get("AdminDisplayVersion") or ""),
            "role": str(obj.adapted_properties.get("ServerRole") or ""),
        }
        for run in collection.runs
        if run.cmdlet == "Get-ExchangeServer"
        for obj in run.objects
    ]


def save_snapshot(collection: Collection, directory: Path) -> dict[str, Any]:
    """Write the snapshot folder as `Export-ExconnSnapshot.ps1` lays it out: one CLIXML file per
    cmdlet (UTF-16LE, like its `Export-Clixml -Encoding Unicode`), every server's receive
    connectors in one file, certificates per server, and `manifest.json` (UTF-8 without BOM) with
    one entry per cmdlet run. Returns the manifest."""
    from exconn._version import __version__
    from exconn.clixml.writer import encode

    directory.mkdir(parents=True, exist_ok=True)
    grouped: dict[str, list[CmdletRun]] = {}
    for run in collection.runs:
        file_name = snapshot_file(run.cmdlet, run.server)
        if file_name is not None:
            grouped.setdefault(file_name, []).append(run)
    written: set[str] = set()
    for file_name, runs in grouped.items():
        objects = [
            (obj, run.computer_name, collection.runspace_ids.get(run.host))
            for run in runs
            for obj in run.objects
        ]
        if objects:
            write_file(directory / file_name, encode(_document(objects), "utf-16"))
            written.add(file_name)
    commands = []
    for run in collection.runs:
        file_name = snapshot_file(run.cmdlet, run.server)
        commands.append(
            {
                "cmdlet": run.cmdlet,
                "server": run.server,
                "file": file_name if file_name in written and run.objects else None,
                "count": len(run.objects),
                "errors": list(run.errors),
            }
        )
    servers = _servers(collection)
    builds = sorted((s["build"] for s in servers if s["build"]), reverse=True)
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "environment": "ExchangeServer",
        "organization": _organisation(collection),
        "exchangeBuild": builds[0] if builds else None,
        "servers": servers,
        "createdUtc": collection.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "computerName": platform.node() or None,
        "powerShellVersion": None,
        "scriptVersion": f"exconn collect {__version__}",
        "collectedFrom": list(collection.endpoints),
        "commands": commands,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_file(directory / "manifest.json", text.encode("utf-8"))
    return manifest
