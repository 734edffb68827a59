"""Live collection from Exchange's remote PowerShell endpoint (`http(s)://HOST/PowerShell`).

exconn runs the same read-only cmdlets as `scripts/Export-ExconnSnapshot.ps1`, over pypsrp, and
either converts the results into the model (through the one converter, like the offline path)
or saves them as a snapshot folder with the export script's shape and manifest.

    options = ConnectionOptions(auth="ntlm", username="CONTOSO\\\\admin", password=secret)
    collection = collect(["ex01.contoso.com", "ex02.contoso.com"], options)
    organization = to_organization(collection)
    save_snapshot(collection, Path("snapshot"))

Exchange's endpoint is a restricted, no-language runspace: only cmdlets and parameters are sent,
never a script. Objects arrive as pypsrp `GenericComplexObject`s; `to_psobject` turns each one into
the `PSObject` the CLIXML reader produces, and the snapshot keeps each object's raw CLIXML exactly
as the server sent it (pypsrp keeps it), with the `Deserialized.` type names and the
`PSComputerName` note property that PowerShell's own `Export-Clixml` would add after remoting.

Every failure an admin can meet while connecting becomes a `ConnectionFailed` (an `InputError`:
exit status 2, one line). The password is never part of a message, a log record, an exception
or a file: `ConnectionOptions` hides it from `repr`, and every message goes through `_scrub`.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
import logging
import math
import platform
import re
import socket
import ssl
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from lxml import etree

from exconn.clixml.objects import Form, PSObject, PSValue, SecureString
from exconn.clixml.reader import strip_type_names, unescape
from exconn.errors import InputError
from exconn.model import (
    Organization,
)
from exconn.output import write_file
from exconn.sources.convert import assemble, convert

log = logging.getLogger(__name__)

Auth = Literal["negotiate", "kerberos", "ntlm", "basic", "certificate", "credssp"]
AUTH_CHOICES: tuple[Auth, ...] = ("negotiate", "kerberos", "ntlm", "basic", "certificate", "credssp")

CONFIGURATION_NAME = "Microsoft.Exchange"
PS_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"
SNAPSHOT_FORMAT = "exconn-snapshot"
SNAPSHOT_VERSION = 1

# WSManFault codes an admin meets.
FAULT_RESOURCE_NOT_FOUND = 2150858811  # wrong endpoint/configuration: "resource URI not found"
FAULT_ACCESS_DENIED = 5

# Organisation-wide cmdlets run once; per-server cmdlets once per `--server`.
ORG_CMDLETS: tuple[str, ...] = (
    "Get-ExchangeServer",
    "Get-OrganizationConfig",  # for the manifest's organisation name only (no file, like the script)
    "Get-SendConnector",
    "Get-AcceptedDomain",
    "Get-TransportConfig",
)
SERVER_CMDLETS: tuple[str, ...] = ("Get-ReceiveConnector", "Get-ExchangeCertificate")

KERBEROS_HINT = (
    "Kerberos needs the optional GSSAPI libraries: pip install 'exconn[kerberos]' "
    "(on Debian/Ubuntu first: apt-get install gcc python3-dev libkrb5-dev krb5-user), "
    "then kinit user@REALM and connect to the server's FQDN"
)
CREDSSP_HINT = "CredSSP needs requests-credssp: pip install 'pypsrp[credssp]'"


class ConnectionFailed(InputError):
    """Connecting to or talking to an endpoint failed: one line, exit status 2."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(endpoint, reason)
        self.endpoint = endpoint


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """How to reach `/PowerShell`. `password` never appears in `repr` or in any message."""

    auth: Auth = "negotiate"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    port: int | None = None
    path: str = "PowerShell"
    ca_file: str | None = None
    cert_validation: bool = True
    timeout: float = 30.0
    cert_pem: str | None = None  # auth=certificate: client certificate and key (PEM)
    cert_key_pem: str | None = None
    # How messages name the trust-store and timeout options: `audit` calls them --server-ca-file
    # and --server-timeout, since its own --ca-file and --timeout belong to the domain observation.
    ca_file_flag: str = "--ca-file"
    timeout_flag: str = "--timeout"

    @property
    def effective_port(self) -> int:
        # IIS: 443 for HTTPS, 80 for HTTP (not WinRM's 5985/5986).
        return self.port if self.port is not None else (443 if self.ssl else 80)

    def endpoint(self, host: str) -> str:
        scheme = "https" if self.ssl else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{self.effective_port}/{self.path.strip('/')}"


def check_options(options: ConnectionOptions, host: str = "") -> None:
    """Refuse unsafe or impossible combinations before any packet is sent."""
    where = options.endpoint(host) if host else "exconn"
    if options.auth == "basic" and not options.ssl:
        raise ConnectionFailed(
            where,
            "Basic authentication over plain HTTP would send the password in clear; use --ssl "
            "(HTTPS), or --auth negotiate/ntlm/kerberos, which encrypt the session over HTTP",
        )
    if options.auth == "basic" and (not options.username or options.password is None):
        raise ConnectionFailed(where, "Basic authentication needs --username and a password")
    if options.auth == "basic" and not f"{options.username}:{options.password}".isascii():
        try:  # requests sends Basic credentials as Latin-1; its error would quote the character
            f"{options.username}:{options.password}".encode("latin-1")
        except UnicodeEncodeError:
            raise ConnectionFailed(
                where,
                "Basic authentication can carry only Latin-1 characters in the user name and password; "
                "use --auth negotiate or ntlm",
            ) from None
    if options.auth in ("ntlm", "credssp") and (not options.username or options.password is None):
        raise ConnectionFailed(where, f"{options.auth} authentication needs --username and a password")
    if options.auth == "certificate":
        if not options.ssl:
            raise ConnectionFailed(where, "certificate authentication needs HTTPS (--ssl)")
        if not options.cert_pem or not options.cert_key_pem:
            raise ConnectionFailed(where, "certificate authentication needs --cert-pem and --cert-key")
    if options.auth == "kerberos" and not kerberos_available():
        raise ConnectionFailed(where, KERBEROS_HINT)
    if options.auth == "credssp" and importlib.util.find_spec("requests_credssp") is None:
        raise ConnectionFailed(where, CREDSSP_HINT)
    if options.ca_file is not None and not Path(options.ca_file).is_file():
        raise ConnectionFailed(where, f"CA file {options.ca_file} is not a readable file")
    if not (options.timeout > 1 and math.isfinite(options.timeout)):  # `nan > 1` is False too
        raise ConnectionFailed(
            where, f"{options.timeout_flag} must be a number of seconds more than 1, not {options.timeout}"
        )
    if options.port is not None and not 0 < options.port < 65536:
        raise ConnectionFailed(where, f"--port must be between 1 and 65535, not {options.port}")


def kerberos_available() -> bool:
    return (
        importlib.util.find_spec("gssapi") is not None or importlib.util.find_spec("winkerberos") is not None
    )


# --- connecting --------------------------------------------------------------------------------


def _timeouts(timeout: float) -> tuple[int, int, int]:
    """(connection, read, operation) timeouts: WSMan's operation timeout stays below the read one."""
    read = max(2, int(round(timeout)))
    operation = max(1, min(20, read // 2))
    return read, read, operation


def _wsman(host: str, options: ConnectionOptions) -> Any:
    from pypsrp.wsman import WSMan

    connection_timeout, read_timeout, operation_timeout = _timeouts(options.timeout)
    cert_validation: bool | str = True
    if options.ssl:
        cert_validation = options.ca_file if options.ca_file else options.cert_validation
    kwargs: dict[str, Any] = {}
    if options.auth == "certificate":
        kwargs = {"certificate_pem": options.cert_pem, "certificate_key_pem": options.cert_key_pem}
    return WSMan(
        host,
        port=options.effective_port,
        path=options.path.strip("/"),
        ssl=options.ssl,
        auth=options.auth,
        username=options.username,
        password=options.password,
        cert_validation=cert_validation,  # type: ignore[arg-type] # a CA path works (requests' verify)
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
        operation_timeout=operation_timeout,
        # NTLM/Kerberos/CredSSP over HTTP: pypsrp seals every message ("auto" = on without TLS).
        encryption="auto",
        reconnection_retries=0,
        reconnection_backoff=0.5,
        **kwargs,
    )


@dataclass
class Session:
    """An open runspace pool on one host's `Microsoft.Exchange` configuration."""

    host: str
    endpoint: str
    pool: Any
    options: ConnectionOptions
    runspace_id: uuid.UUID

    def run(self, cmdlet: str, parameters: dict[str, str] | None = None) -> CmdletRun:
        return run_cmdlet(self, cmdlet, parameters or {})


@contextmanager
def open_session(host: str, options: ConnectionOptions) -> Iterator[Session]:
    """Open a runspace pool on `host`, or raise ConnectionFailed with one clear line."""
    from pypsrp.powershell import RunspacePool

    check_options(options, host)
    endpoint = options.endpoint(host)
    try:
        pool = RunspacePool(_wsman(host, options), configuration_name=CONFIGURATION_NAME)
        pool.open()
    except Exception as error:  # noqa: BLE001 - every failure becomes one line for the admin
        raise ConnectionFailed(endpoint, describe_error(error, host, options)) from None
    session = Session(host, endpoint, pool, options, uuid.UUID(pool.id))
    try:
        yield session
    finally:
        try:
            pool.close()
        except Exception as error:  # noqa: BLE001 - closing is best effort
            log.debug("closing the session to %s failed: %s", endpoint, _scrub(str(error), options))


# --- running cmdlets ---------------------------------------------------------------------------


@dataclass
class CmdletRun:
    """One cmdlet invocation: the objects it returned (raw pypsrp objects) and its errors."""

    cmdlet: str
    parameters: dict[str, str]
    host: str
    objects: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def server(self) -> str | None:
        return self.parameters.get("Server")


def run_cmdlet(session: Session, cmdlet: str, parameters: dict[str, str]) -> CmdletRun:
    """Run one cmdlet (no script: the endpoint is no-language). Errors are recorded, not raised."""
    from pypsrp.powershell import PowerShell

    run = CmdletRun(cmdlet, dict(parameters), session.host)
    try:
        ps = PowerShell(session.pool)
        ps.add_cmdlet(cmdlet)
        for name, value in parameters.items():
            ps.add_parameter(name, value)
        output = ps.invoke()
        # Non-terminating errors leave had_errors False: the error stream is always read.
        run.errors.extend(_error_text(record, session.options) for record in ps.streams.error)
        if ps.had_errors and not run.errors:
            run.errors.append(f"{cmdlet} failed without an error record")
        for item in output:
            if hasattr(item, "adapted_properties"):
                run.objects.append(item)
            else:
                run.errors.append(f"{cmdlet} returned a value that is not an object: {type(item).__name__}")
        try:
            ps.close()
        except Exception as error:  # noqa: BLE001 - the results are in; closing is best effort
            log.debug("closing %s failed: %s", cmdlet, _scrub(str(error), session.options))
    except Exception as error:  # noqa: BLE001 - one cmdlet's failure must not stop the others
        run.errors.append(describe_error(error, session.host, session.options))
    return run


def _error_text(record: Any, options: ConnectionOptions) -> str:
    text = str(record) if getattr(record, "_to_string", None) else ""
    if not text:
        exception = getattr(record, "exception", None)
        text = str(getattr(exception, "message", "") or getattr(record, "message", "") or "")
    if not text:
        text = str(getattr(record, "fq_error", "") or "error record without a message")
    return _oneline(_scrub(text, options))


# --- collecting from several servers -----------------------------------------------------------


@dataclass
class Collection:
    """Everything one `collect` run gathered, in the order the export script writes it."""

    hosts: tuple[str, ...]
    runs: list[CmdletRun]
    started: dt.datetime
    runspace_ids: dict[str, uuid.UUID]
    endpoints: tuple[str, ...] = ()


ProgressCallback = Callable[[str, str], None]  # (host, cmdlet) when one finishes


def collect(
    hosts: Sequence[str],
    options: ConnectionOptions,
    *,
    progress: ProgressCallback | None = None,
    max_workers: int = 8,
) -> Collection:
    """Connect to every host (in parallel), then run the org-wide cmdlets once and the per-server
    ones on each host. A host that cannot be reached raises ConnectionFailed (nothing is half
    collected); a cmdlet that fails is recorded in its run's errors and the others go on."""
    if not hosts:
        raise ConnectionFailed("exconn", "no --server given")
    unique = list(dict.fromkeys(hosts))
    for host in unique:
        check_options(options, host)
    started = dt.datetime.now(dt.UTC)
    workers = max(1, min(max_workers, len(unique)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exconn-psrp") as executor:
        opened = list(executor.map(lambda h: _open_or_error(h, options), unique))
        failures = [result for result in opened if isinstance(result, ConnectionFailed)]
        sessions = [result for result in opened if isinstance(result, _OpenSession)]
        try:
            if failures:
                raise failures[0]
            first = sessions[0].session
            servers_run = first.run("Get-ExchangeServer")
            if progress:
                progress(first.host, "Get-ExchangeServer")
            names = {s.session.host: _server_name(s.session.host, servers_run.objects) for s in sessions}

            def work(index: int, opened_session: _OpenSession) -> list[CmdletRun]:
                session = opened_session.session
                runs: list[CmdletRun] = []
                if index == 0:
                    runs.append(servers_run)
                    for cmdlet in ORG_CMDLETS[1:]:
                        runs.append(session.run(cmdlet))
                        if progress:
                            progress(session.host, cmdlet)
                for cmdlet in SERVER_CMDLETS:
                    runs.append(session.run(cmdlet, {"Server": names[session.host]}))
                    if progress:
                        progress(session.host, cmdlet)
                return runs

            per_host = list(executor.map(work, range(len(sessions)), sessions))
        finally:
            for item in sessions:
                item.close()
    runs = [run for host_runs in per_host for run in host_runs]
    return Collection(
        hosts=tuple(unique),
        runs=runs,
        started=started,
        runspace_ids={s.session.host: s.session.runspace_id for s in sessions},
        endpoints=tuple(options.endpoint(host) for host in unique),
    )


class _OpenSession:
    """A session opened in a worker thread and closed later (the context manager spans calls)."""

    def __init__(self, host: str, options: ConnectionOptions) -> None:
        self._manager = open_session(host, options)
        self.session = self._manager.__enter__()

    def close(self) -> None:
        self._manager.__exit__(None, None, None)


def _open_or_error(host: str, options: ConnectionOptions) -> _OpenSession | ConnectionFailed:
    try:
        return _OpenSession(host, options)
    except ConnectionFailed as error:
        return error


def _server_name(host: str, servers: Iterable[Any]) -> str:
    """The Exchange server `host` names (its Name or FQDN); else the host as given."""
    wanted = host.lower().rstrip(".")
    for server in servers:
        props = getattr(server, "adapted_properties", {})
        name = str(props.get("Name") or "")
        fqdn = str(props.get("Fqdn") or "")
        if name and wanted in (name.lower(), fqdn.lower().rstrip(".")):
            return name
    return host


# --- pypsrp objects -> PSObject ------------------------------------------------------------------

_CONTAINER_TAGS = {"LST", "IE", "STK", "QUE"}


class _Adapter:
    """Converts one top-level pypsrp object (one PSRP message) into the reader's PSObject.

    pypsrp gives `types`, `to_string`, `adapted_properties`, `extended_properties` and, for
    collections it does not know, the raw `<LST>` XML in `property_sets`. What it flattens
    (DateTime, TimeSpan and Decimal stay strings; collections lose their type names) is read
    back from the object's own CLIXML, which pypsrp keeps, so values come out typed exactly as the
    CLIXML reader types them. RefIds and TN RefIds are per message, as in PSRP.
    """

    def __init__(self, top: Any) -> None:
        self.type_names: dict[str, tuple[tuple[str, ...], Form]] = {}
        self.refs: dict[str, PSObject] = {}
        self.memo: dict[int, PSObject] = {}
        raw = getattr(top, "_xml", None)
        self.root = _parse_fragment(raw) if raw else None
        if self.root is not None:
            for tn in self.root.iter("TN"):
                self.type_names[tn.get("RefId") or ""] = strip_type_names(
                    tuple(unescape(t.text or "") for t in tn)
                )

    def obj(self, value: Any, element: etree._Element | None) -> PSObject:
        known = self.memo.get(id(value))
        if known is not None:
            return known
        result = PSObject()
        self.memo[id(value)] = result
        if element is not None and element.get("RefId") is not None:
            self.refs[element.get("RefId") or ""] = result
        result.type_names, result.form = strip_type_names(tuple(str(t) for t in value.types))
        if element is not None and not value.types:
            result.type_names, result.form = self._types(element)
        to_string = getattr(value, "to_string", None)
        result.to_string = None if to_string is None else str(to_string)
        members = {
            "Props": (value.adapted_properties, result.props),
            "MS": (value.extended_properties, result.extended),
        }
        for tag, (source, target) in members.items():
            elements = _members(element, tag)
            for name, item in source.items():
                if name == "SerializationData":
                    continue
                target[name] = self.value(item, elements.get(name))
        for entry in value.property_sets:
            content = _parse_fragment(entry) if isinstance(entry, str) and entry.startswith("<") else None
            if content is not None and content.tag in _CONTAINER_TAGS:
                result.items = [self.element(child) for child in content]
            elif content is not None and content.tag == "DCT":
                result.dct = [self.entry(child) for child in content]
            else:
                result.value = self.value(entry, _primitive_child(element))
        return result

    def value(self, value: Any, element: etree._Element | None) -> PSValue:
        if element is not None:
            tag = element.tag
            if tag == "Nil":
                return None
            if tag == "Ref":
                ref = self.refs.get(element.get("RefId") or "")
                if ref is not None:
                    return ref
            if tag in ("DT", "TS", "D", "SS", "Version", "URI", "XD", "SBK"):
                return _primitive(tag, element.text or "")
        if value is None or isinstance(value, (bool, int, float, str, bytes, uuid.UUID)):
            if isinstance(value, str) and element is not None and element.tag == "Obj":
                return self.element(element)  # an object pypsrp could not map: read its CLIXML
            return value
        if hasattr(value, "adapted_properties"):
            return self.obj(value, element if element is not None and element.tag == "Obj" else None)
        if isinstance(value, list):
            container = PSObject(items=[])
            if element is not None:
                container.type_names, container.form = self._types(element)
                children = _container_children(element)
            else:
                children = []
            assert container.items is not None
            for index, item in enumerate(value):
                container.items.append(self.value(item, children[index] if index < len(children) else None))
            return container
        if isinstance(value, dict):
            container = PSObject(dct=[])
            if element is not None:
                container.type_names, container.form = self._types(element)
            assert container.dct is not None
            for key, item in value.items():
                container.dct.append((self.value(key, None), self.value(item, None)))
            return container
        if isinstance(value, etree._Element) or hasattr(value, "tag"):
            return SecureString(getattr(value, "text", "") or "")
        return str(value)

    def element(self, element: etree._Element) -> PSValue:
        """A value that pypsrp left as raw CLIXML (items of an unknown collection)."""
        tag = element.tag
        if tag == "Nil":
            return None
        if tag == "Ref":
            return self.refs.get(element.get("RefId") or "")
        if tag != "Obj":
            return _primitive(tag, element.text or "")
        result = PSObject()
        if element.get("RefId") is not None:
            self.refs[element.get("RefId") or ""] = result
        result.type_names, result.form = self._types(element)
        for child in element:
            if child.tag == "ToString":
                result.to_string = unescape(child.text or "")
            elif child.tag in ("Props", "MS"):
                target = result.props if child.tag == "Props" else result.extended
                for member in child:
                    name = unescape(member.get("N") or "")
                    if name == "SerializationData" and member.tag == "BA":
                        continue
                    target[name] = self.element(member)
            elif child.tag in _CONTAINER_TAGS:
                result.items = [self.element(item) for item in child]
            elif child.tag == "DCT":
                result.dct = [self.entry(entry) for entry in child]
            elif child.tag not in ("TN", "TNRef"):
                result.value = self.element(child)
        return result

    def entry(self, element: etree._Element) -> tuple[PSValue, PSValue]:
        key: PSValue = None
        value: PSValue = None
        for child in element:
            if child.get("N") == "Key":
                key = self.element(child)
            else:
                value = self.element(child)
        return key, value

    def _types(self, element: etree._Element) -> tuple[tuple[str, ...], Form]:
        tn = element.find("TN")
        if tn is not None:
            return self.type_names.get(tn.get("RefId") or "", ((), Form.LIVE))
        tn_ref = element.find("TNRef")
        if tn_ref is not None:
            return self.type_names.get(tn_ref.get("RefId") or "", ((), Form.LIVE))
        return (), Form.LIVE


def _parse_fragment(text: str) -> etree._Element | None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except etree.XMLSyntaxError:
        return None
    for node in root.iter():
        if isinstance(node.tag, str) and node.tag.startswith("{"):
            node.tag = etree.QName(node).localname
    return root


def _members(element: etree._Element | None, tag: str) -> dict[str, etree._Element]:
    if element is None:
        return {}
    container = element.find(tag)
    if container is None:
        return {}
    return {unescape(child.get("N") or ""): child for child in container}


def _container_children(element: etree._Element) -> list[etree._Element]:
    for child in element:
        if child.tag in _CONTAINER_TAGS:
            return list(child)
    return []


def _primitive_child(element: etree._Element | None) -> etree._Element | None:
    if element is None:
        return None
    for child in element:
        if child.tag not in ("TN", "TNRef", "ToString", "Props", "MS", *_CONTAINER_TAGS, "DCT"):
            return child
    return None


_DURATION = re.compile(
    r"(?P<sign>-)?P(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def _primitive(tag: str, text: str) -> PSValue:
    """A CLIXML primitive, typed as the CLIXML reader types it (MS-PSRP §2.2.5.1)."""
    import base64
    import decimal

    try:
        if tag in ("S", "URI", "XD", "SBK"):
            return unescape(text)
        if tag == "B":
            return text.strip() in ("true", "1")
        if tag in ("By", "SB", "U16", "I16", "U32", "I32", "U64", "I64"):
            return int(text)
        if tag in ("Sg", "Db"):
            return float(text)
        if tag == "D":
            return decimal.Decimal(text)
        if tag == "DT":
            return dt.datetime.fromisoformat(text.strip())
        if tag == "TS":
            match = _DURATION.fullmatch(text.strip())
            if match is None:
                return text
            parts = {k: float(v) for k, v in match.groupdict().items() if v is not None and k != "sign"}
            delta = dt.timedelta(**parts)
            return -delta if match["sign"] else delta
        if tag == "G":
            return uuid.UUID(text)
        if tag == "BA":
            return base64.b64decode(text)
        if tag == "C":
            return chr(int(text))
        if tag == "SS":
            return SecureString(text)
    except (ValueError, ArithmeticError):
        return text
    return unescape(text)


def to_psobject(
    obj: Any, *, computer_name: str | None = None, runspace_id: uuid.UUID | None = None
) -> PSObject:
    """A pypsrp `GenericComplexObject` as the `PSObject` the CLIXML reader makes of the same object.

    Like PowerShell after remoting, the object gets the `PSComputerName`, `RunspaceId` and
    `PSShowComputerName` note properties, and its form is `deserialized`.
    """
    adapter = _Adapter(obj)
    result = adapter.obj(obj, adapter.root)
    result.form = Form.DESERIALIZED
    if computer_name is not None:
        result.extended.setdefault("PSComputerName", computer_name)
        if runspace_id is not None:
            result.extended.setdefault("RunspaceId", runspace_id)
        result.extended.setdefault("PSShowComputerName", False)
    return result


def psobjects(collection: Collection) -> list[tuple[CmdletRun, list[PSObject]]]:
    """Every run with its objects converted, in collection order."""
    return [
        (
            run,
            [
                to_psobject(o, computer_name=run.host, runspace_id=collection.runspace_ids.get(run.host))
                for o in run.objects
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
            (obj, run.host, collection.runspace_ids.get(run.host)) for run in runs for obj in run.objects
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


# --- errors as one line --------------------------------------------------------------------------


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _scrub(text: str, options: ConnectionOptions) -> str:
    """Remove the password (and its Basic-header forms) from any text shown or stored."""
    secret = options.password
    if not secret:
        return text
    import base64

    # As given, as repr() shows it inside a message, and as the Basic header carries it (UTF-8
    # or, as requests encodes it, Latin-1).
    forms = {secret, repr(secret)[1:-1]}
    if options.username:
        pair = f"{options.username}:{secret}"
        for codec in ("utf-8", "latin-1"):
            try:
                forms.add(base64.b64encode(pair.encode(codec)).decode())
            except UnicodeEncodeError:
                pass
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = (current.__cause__, current.__context__, *current.args, getattr(current, "reason", None))
        stack.extend(item for item in nested if isinstance(item, BaseException))


def describe_error(error: BaseException, host: str, options: ConnectionOptions) -> str:
    """What went wrong, in one line an Exchange admin can act on (never the password)."""
    return _oneline(_scrub(_describe(error, host, options), options))


def _describe(error: BaseException, host: str, options: ConnectionOptions) -> str:  # noqa: PLR0911, PLR0912
    import requests
    from pypsrp.exceptions import (
        AuthenticationError,
        InvalidPSRPOperation,
        WinRMTransportError,
        WSManFaultError,
    )

    port = options.effective_port
    seconds = _timeouts(options.timeout)[1]
    if isinstance(error, AuthenticationError):
        message = str(error)
        if "did not response with one of" in message:
            offered = message.split("actual:", 1)[-1].strip(" '")
            return (
                f"the endpoint does not offer {options.auth} authentication "
                f"(it offers: {offered or 'none'}); choose --auth accordingly"
            )
        return (
            "authentication failed (HTTP 401): the user name or password is wrong, the account is locked, "
            f"or it may not log on with {options.auth} here"
        )
    if isinstance(error, WSManFaultError) and error.code is None:
        # pypsrp reads any XML body of an HTTP error as a fault (an IIS error page is XHTML): the
        # HTTP status is the real news, on the transport error it was raised from.
        transport = next((e for e in _chain(error) if isinstance(e, WinRMTransportError)), None)
        if transport is not None:
            error = transport
    if isinstance(error, WSManFaultError):
        code = error.code
        reason = _oneline(str(error.reason or error.provider_fault or ""))
        if code == FAULT_RESOURCE_NOT_FOUND:
            return (
                f"WSManFault {code}: the endpoint has no {CONFIGURATION_NAME} configuration (resource "
                "URI not found); this is not Exchange's endpoint: check --path (Exchange: PowerShell) "
                "and the port (IIS 80/443, not WinRM's 5985/5986)"
            )
        if (
            code == FAULT_ACCESS_DENIED
            or "access is denied" in reason.lower()
            or "management role" in reason.lower()
        ):
            return (
                f"access denied (WSManFault {code}): the account authenticated but may not use Exchange's "
                "remote PowerShell; it needs an Exchange management role (e.g. View-Only Organization "
                "Management) and RemotePowerShellEnabled"
            )
        return f"WSManFault {code}: {reason or 'no reason given'}"
    if isinstance(error, WinRMTransportError):
        code = error.code
        if code == 404:
            return (
                f"HTTP 404 at {options.endpoint(host)}: nothing there; check --path (Exchange: PowerShell) "
                "and that the PowerShell virtual directory exists"
            )
        if code == 403:
            return (
                "access denied (HTTP 403): the account may not use Exchange's remote PowerShell "
                "(needs a management role and RemotePowerShellEnabled), or the site requires SSL (--ssl)"
            )
        if code == 503:
            return "HTTP 503: the service is unavailable (is the MSExchangePowerShellAppPool running?)"
        if code == 500:
            return (
                "HTTP 500 from the endpoint: the Exchange PowerShell application failed; "
                "see the server's event log"
            )
        return f"HTTP {code} from the endpoint"
    if isinstance(error, requests.exceptions.SSLError) or any(
        isinstance(e, ssl.SSLError) for e in _chain(error)
    ):
        text = " ".join(str(e) for e in _chain(error))
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            if "hostname" in text.lower() or "IP address mismatch" in text or "doesn't match" in text:
                return (
                    f"TLS certificate does not match {host}: connect with the name on the certificate "
                    "(usually the server's FQDN)"
                )
            detail = "expired" if "expired" in text else "not trusted"
            return (
                f"TLS certificate of {host} is {detail}: pass {options.ca_file_flag} with the PEM of the "
                "CA that issued it (or, in a lab only, --no-cert-validation)"
            )
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return f"TLS handshake failed: port {port} does not speak HTTPS (drop --ssl or fix --port)"
        return f"TLS handshake with {host}:{port} failed: {_last_line(text)}"
    for item in _chain(error):
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return f"cannot resolve host name {host!r} (DNS): check the name"
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return (
            f"timed out connecting to {host}:{port} after {seconds}s: "
            "host down, or a firewall drops the traffic"
        )
    if (
        isinstance(error, (requests.exceptions.ReadTimeout, TimeoutError))
        or "timed out" in str(error).lower()
    ):
        return (
            f"{host}:{port} stopped answering (no reply within {seconds}s; "
            f"raise {options.timeout_flag} if the server is slow)"
        )
    for item in _chain(error):
        if isinstance(item, ConnectionRefusedError):
            return (
                f"connection refused by {host}:{port}: nothing listens there; is IIS running "
                f"(HTTP 80 / HTTPS 443), or is --port/--ssl wrong?"
            )
    if isinstance(error, requests.exceptions.ConnectionError):
        return f"cannot connect to {host}:{port}: {_last_line(str(error))}"
    if isinstance(error, InvalidPSRPOperation):
        return f"the server refused the PowerShell session: {_last_line(str(error))}"
    if isinstance(error, UnicodeError):
        # Its message quotes the offending character, which may be part of the password.
        return f"a value could not be encoded ({type(error).__name__}); check the user name and password"
    if isinstance(error, KeyError) and str(error.args[0] if error.args else "").lower() == host.lower():
        # pypsrp looks up the security context of an authentication that never happened: the
        # server answered the first request (a web page, a redirect) without asking for any.
        return (
            f"{host}:{port} answered without asking for authentication, so it is not Exchange's "
            "remote PowerShell endpoint (a plain web page or a redirect?): check --port, --path "
            "(Exchange: PowerShell) and --ssl"
        )
    if isinstance(error, ImportError):
        return CREDSSP_HINT if options.auth == "credssp" else f"a library is missing: {error}"
    if isinstance(error, ValueError) and "incompatible with the specified auth_provider" in str(error):
        return f"the endpoint does not offer {options.auth} authentication: choose another --auth"
    if options.auth in ("kerberos", "negotiate") and "gssapi" in str(error).lower():
        return KERBEROS_HINT
    return f"{type(error).__name__}: {_last_line(str(error)) or 'no detail'}"


def _last_line(text: str) -> str:
    text = re.sub(r"<[^>]*>", " ", text)
    return _oneline(text)[:300]


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self.lock = threading.Lock()

    def __call__(self, host: str, cmdlet: str) -> None:
        with self.lock:
            self.done += 1
            if not self.enabled:
                return
            width = 24
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {host}: {cmdlet}".ljust(79)[:79])
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


def expected_runs(host_count: int) -> int:
    return len(ORG_CMDLETS) + len(SERVER_CMDLETS) * host_count


def run_collection(
    hosts: Sequence[str], options: ConnectionOptions, *, warn: Callable[[str], None]
) -> Collection:
    """Collect from `hosts` with a progress bar on a terminal; each cmdlet's error goes to `warn`."""
    progress = Progress(expected_runs(len(hosts)))
    try:
        collection = collect(list(hosts), options, progress=progress)
    finally:
        progress.finish()
    for run in collection.runs:
        where = f" -Server {run.server}" if run.server else ""
        for error in run.errors:
            warn(f"{run.host}: {run.cmdlet}{where}: {error}")
    return collection
