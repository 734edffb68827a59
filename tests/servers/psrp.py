"""A loopback endpoint that answers like Exchange's IIS-hosted `/PowerShell` remoting endpoint.

What is real, end to end, when exconn talks to it:
- HTTP/1.1 with keep-alive over a real socket (`http.server.ThreadingHTTPServer`), optionally TLS with a
  certificate from `tests/servers/ca.py`;
- authentication: NTLM or Kerberos inside SPNEGO/Negotiate (pyspnego's real acceptor, checking an
  NTLM password against `NTLM_USER_FILE`, a Kerberos ticket with the keytab in `KRB5_KTNAME`, see
  `tests/servers/kdc.py`), connection-bound as IIS does it, with Kerberos' mutual-authentication
  token on the answer; or Basic (checked here);
- HTTP message encryption over plain HTTP (`multipart/encrypted`, `HTTP-SPNEGO-session-encrypted`)
  with pypsrp's own `WinRMEncryption` wrapped around the server's NTLM/Kerberos context, so every SOAP
  body after the handshake is sealed with the negotiated session key, faults included;
- WS-Management SOAP: Create, Command, Send, Receive (with operation-timeout faults), Signal,
  Delete, and the WSManFault bodies a real server returns (2150858811 for an unknown resource
  URI, 5 for access denied, 2150858793 for an operation timeout);
- PSRP: psrpcore's `ServerRunspacePool`/`ServerPipeline` decode the client's fragments and
  messages (SessionCapability, InitRunspacePool, CreatePipeline) and encode the server side
  (capability, ApplicationPrivateData, RunspacePoolState, PipelineState, ErrorRecord);
- output objects are real CLIXML: the objects of the real Exchange 2019 exports in
  `../shared/fixtures/real/` (or any CLIXML file), reshaped into the form Exchange's remoting
  serialiser puts on the wire (see `wire_objects_from_clixml`).

What is emulated (there is no Exchange here): the cmdlets themselves (`ExchangeOrg.run`), the
no-language restriction (a script gets the runspace's parse error and the pipeline fails), RBAC
(a user who authenticates but is not in `admins` gets WSManFault 5 on Create, as WinRM's
authorisation does), and which `-Server` names resolve (`ExchangeOrg.aliases`).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import http.server
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psrpcore
import spnego
from lxml import etree
from psrpcore._payload import PSRPMessage, create_message  # raw CLIXML output, see _queue_raw_output
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSInvocationState,
    PSRPMessageType,
)
from pypsrp.encryption import WinRMEncryption

EXCHANGE_RESOURCE_URI = "http://schemas.microsoft.com/powershell/Microsoft.Exchange"
CLIXML_NS = "http://schemas.microsoft.com/powershell/2004/04"

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "wsmanfault": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
ACTION = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"

FAULT_RESOURCE_NOT_FOUND = 2150858811
FAULT_OPERATION_TIMEOUT = 2150858793
FAULT_ACCESS_DENIED = 5

NO_LANGUAGE_MESSAGE = (
    "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."
)


# --------------------------------------------------------------------------------------------------
# Objects: real CLIXML exports reshaped into Exchange's wire form
# --------------------------------------------------------------------------------------------------


def _q(tag: str) -> str:
    return f"{{{CLIXML_NS}}}{tag}"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


class _WireWriter:
    """Writes one standalone object (one PSRP message): RefIds and TN RefIds start at 0."""

    def __init__(self, obj_index: dict[str, etree._Element], tn_index: dict[str, list[str]]) -> None:
        self.obj_index = obj_index
        self.tn_index = tn_index
        self.next_ref = 0
        self.tn_refs: dict[tuple[str, ...], int] = {}

    def _types_of(self, obj: etree._Element) -> list[str]:
        tn = obj.find(_q("TN"))
        if tn is not None:
            return [t.text or "" for t in tn]
        tn_ref = obj.find(_q("TNRef"))
        if tn_ref is not None:
            return self.tn_index.get(tn_ref.get("RefId", ""), [])
        return []

    def _resolve(self, element: etree._Element) -> etree._Element:
        while _local(element) == "Ref":
            element = self.obj_index[element.get("RefId", "")]
        return element

    def _new_obj(self, name: str | None, types: list[str]) -> etree._Element:
        obj = etree.Element(_q("Obj"))
        if name is not None:
            obj.set("N", name)
        obj.set("RefId", str(self.next_ref))
        self.next_ref += 1
        if types:
            key = tuple(types)
            if key in self.tn_refs:
                etree.SubElement(obj, _q("TNRef"), RefId=str(self.tn_refs[key]))
            else:
                self.tn_refs[key] = len(self.tn_refs)
                tn = etree.SubElement(obj, _q("TN"), RefId=str(self.tn_refs[key]))
                for type_name in types:
                    etree.SubElement(tn, _q("T")).text = type_name
        return obj

    def value(self, element: etree._Element, name: str | None) -> etree._Element:
        """A property value as Exchange's remoting serialiser sends it (depth 1, flattened)."""
        element = self._resolve(element)
        tag = _local(element)
        if tag != "Obj":
            out = copy.deepcopy(element)
            out.attrib.pop("N", None)
            if name is not None:
                out.set("N", name)
            return out
        lst = element.find(_q("LST"))
        if lst is not None:
            # Multi-valued properties keep their collection type and a list of strings.
            out = self._new_obj(name, self._types_of(element))
            out_lst = etree.SubElement(out, _q("LST"))
            for item in lst:
                out_lst.append(self.value(item, None))
            return out
        # Enums, sizes, identities, time spans... arrive as their ToString.
        text = element.findtext(_q("ToString"))
        out = etree.Element(_q("S"))
        out.text = text or ""
        if name is not None:
            out.set("N", name)
        return out

    def top(self, obj: etree._Element) -> etree._Element:
        out = self._new_obj(None, self._types_of(obj))
        to_string = obj.find(_q("ToString"))
        if to_string is not None:
            etree.SubElement(out, _q("ToString")).text = to_string.text
        props = obj.find(_q("Props"))
        if props is not None:
            out_props = etree.SubElement(out, _q("Props"))
            for prop in props:
                out_props.append(self.value(prop, prop.get("N")))
        ms = obj.find(_q("MS"))
        if ms is not None:
            # PSComputerName, RunspaceId and PSShowComputerName are added by the *client*
            # (PowerShell, or exconn): only what the server serialised goes on the wire.
            kept = [m for m in ms if m.get("N") not in {"PSComputerName", "RunspaceId", "PSShowComputerName"}]
            if kept:
                out_ms = etree.SubElement(out, _q("MS"))
                for member in kept:
                    out_ms.append(self.value(member, member.get("N")))
        return out


def wire_objects_from_clixml(path: Path, *, replace: dict[str, str] | None = None) -> list[bytes]:
    """The top-level objects of an Export-Clixml file, each as one PSRP output message body.

    File-wide RefIds are resolved (each message is its own serialisation scope), and values are
    flattened the way Exchange's remoting serialiser sends them: enums, sizes and Exchange types as
    strings, multi-valued properties as a typed object holding an `LST` of strings. `replace`
    rewrites text (e.g. a server name) to derive a second server's objects from the same export.
    """
    data = path.read_bytes()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    root = etree.fromstring(data, parser)
    obj_index = {e.get("RefId", ""): e for e in root.iter(_q("Obj"))}
    tn_index = {e.get("RefId", ""): [t.text or "" for t in e] for e in root.iter(_q("TN"))}
    messages = []
    for obj in root.findall(_q("Obj")):
        element = _WireWriter(obj_index, tn_index).top(obj)
        for node in element.iter():
            node.tag = etree.QName(node).localname  # PSRP messages carry CLIXML without a namespace
        etree.cleanup_namespaces(element)
        text = etree.tostring(element, encoding="unicode")
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        messages.append(text.encode("utf-8"))
    return messages


def wire_object(
    types: list[str],
    to_string: str,
    props: Iterable[tuple[str, str, Any]],
) -> bytes:
    """A synthetic object in the same wire form: props are (name, tag, value); tag LST = strings."""
    root = etree.Element("Obj", RefId="0")
    tn = etree.SubElement(root, "TN", RefId="0")
    for type_name in types:
        etree.SubElement(tn, "T").text = type_name
    etree.SubElement(root, "ToString").text = to_string
    out_props = etree.SubElement(root, "Props")
    ref = 1
    for name, tag, value in props:
        if tag == "LST":
            obj = etree.SubElement(out_props, "Obj", N=name, RefId=str(ref))
            ref += 1
            tn = etree.SubElement(obj, "TN", RefId=str(ref))
            etree.SubElement(tn, "T").text = "Microsoft.Exchange.Data.MultiValuedProperty`1[[System.String]]"
            etree.SubElement(tn, "T").text = "Microsoft.Exchange.Data.MultiValuedPropertyBase"
            etree.SubElement(tn, "T").text = "System.Object"
            lst = etree.SubElement(obj, "LST")
            for item in value:
                etree.SubElement(lst, "S").text = item
        elif tag == "Nil":
            etree.SubElement(out_props, "Nil", N=name)
        elif tag == "B":
            etree.SubElement(out_props, "B", N=name).text = "true" if value else "false"
        else:
            etree.SubElement(out_props, tag, N=name).text = str(value)
    return etree.tostring(root, encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# The emulated organisation and its cmdlets
# --------------------------------------------------------------------------------------------------


@dataclass
class CmdletResult:
    objects: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # non-terminating ErrorRecords
    terminating: tuple[str, str, str] | None = None  # (message, exception type, FullyQualifiedErrorId)


@dataclass
class ExchangeOrg:
    """What the cmdlets return. Org-wide lists, per-server dicts keyed by server name (upper)."""

    send_connectors: list[bytes] = field(default_factory=list)
    accepted_domains: list[bytes] = field(default_factory=list)
    transport_config: list[bytes] = field(default_factory=list)
    exchange_servers: list[bytes] = field(default_factory=list)
    organization_config: list[bytes] = field(default_factory=list)
    receive_connectors: dict[str, list[bytes]] = field(default_factory=dict)
    certificates: dict[str, list[bytes]] = field(default_factory=dict)
    # Every -Server value Exchange would resolve (name, FQDN, or what DNS gives), to a server name.
    aliases: dict[str, str] = field(default_factory=dict)
    # (cmdlet, server or None) -> message of a non-terminating error the cmdlet writes.
    failures: dict[tuple[str, str | None], str] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    PARAMETERS = {
        "Get-SendConnector": {"Identity"},
        "Get-ReceiveConnector": {"Identity", "Server"},
        "Get-AcceptedDomain": {"Identity"},
        "Get-TransportConfig": set(),
        "Get-ExchangeServer": {"Identity"},
        "Get-ExchangeCertificate": {"Identity", "Server", "Thumbprint"},
        "Get-OrganizationConfig": set(),
    }

    def _server(self, value: Any) -> str | None:
        return self.aliases.get(str(value).lower())

    def run(self, name: str, params: dict[str, Any], *, local_server: str) -> CmdletResult:
        with self.lock:
            self.calls.append((name, dict(params)))
        canonical = {n.lower(): n for n in self.PARAMETERS}.get(name.lower())
        if canonical is None:
            return CmdletResult(
                terminating=(
                    f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, "
                    "or operable program. Check the spelling of the name, or if a path was included, "
                    "verify that the path is correct and try again.",
                    "System.Management.Automation.CommandNotFoundException",
                    "CommandNotFoundException",
                )
            )
        for param in params:
            if param.lower() not in {p.lower() for p in self.PARAMETERS[canonical]}:
                return CmdletResult(
                    terminating=(
                        f"A parameter cannot be found that matches parameter name '{param}'.",
                        "System.Management.Automation.ParameterBindingException",
                        f"NamedParameterNotFound,{canonical}",
                    )
                )
        server: str | None = None
        if "Server" in params:
            server = self._server(params["Server"])
            if server is None:
                return CmdletResult(
                    errors=[
                        f"The operation couldn't be performed because object '{params['Server']}' "
                        "couldn't be found on 'dc01.contoso.lab'."
                    ]
                )
        elif canonical == "Get-ExchangeCertificate":
            server = local_server
        failure = self.failures.get((canonical, server)) or self.failures.get((canonical, None))
        if failure is not None:
            return CmdletResult(errors=[failure])
        if canonical == "Get-SendConnector":
            return CmdletResult(objects=list(self.send_connectors))
        if canonical == "Get-AcceptedDomain":
            return CmdletResult(objects=list(self.accepted_domains))
        if canonical == "Get-TransportConfig":
            return CmdletResult(objects=list(self.transport_config))
        if canonical == "Get-ExchangeServer":
            return CmdletResult(objects=list(self.exchange_servers))
        if canonical == "Get-OrganizationConfig":
            return CmdletResult(objects=list(self.organization_config))
        if canonical == "Get-ReceiveConnector":
            if server is None:
                return CmdletResult(objects=[o for objs in self.receive_connectors.values() for o in objs])
            return CmdletResult(objects=list(self.receive_connectors.get(server, [])))
        return CmdletResult(objects=list(self.certificates.get(server or local_server, [])))


# --------------------------------------------------------------------------------------------------
# WSMan + PSRP server state
# --------------------------------------------------------------------------------------------------


def _queue_raw_output(pipeline: psrpcore.ServerPipeline, xml: bytes) -> None:
    """Queue a PIPELINE_OUTPUT message whose body is this CLIXML, byte for byte.

    psrpcore's `write_output` serialises its own PSObjects; to put the exact CLIXML of a real
    export on the wire, the message is built with psrpcore's framing and queued directly.
    """
    pool = pipeline.runspace_pool
    body = create_message(
        False, PSRPMessageType.PipelineOutput, xml, pool.runspace_pool_id, pipeline.pipeline_id
    )
    message = PSRPMessage(
        PSRPMessageType.PipelineOutput,
        bytearray(body),
        pool.runspace_pool_id,
        pipeline.pipeline_id,
        pool._fragment_counter,
    )
    pool._send_buffer.append(message)


def _error_record(message: str, exception_type: str, fqid: str, category: ErrorCategory) -> ErrorRecord:
    exception = NETException(Message=message, HResult=-2146233087)
    exception.PSObject.type_names = [
        exception_type,
        "System.SystemException",
        "System.Exception",
        "System.Object",
    ]
    return ErrorRecord(
        Exception=exception,
        CategoryInfo=ErrorCategoryInfo(Category=category, Reason=exception_type.rsplit(".", 1)[-1]),
        FullyQualifiedErrorId=fqid,
    )


class _Shell:
    def __init__(self, shell_id: str, owner: str) -> None:
        self.id = shell_id
        self.owner = owner
        self.pool = psrpcore.ServerRunspacePool()
        self.outgoing: dict[uuid.UUID | None, list[bytes]] = {}
        self.done: set[uuid.UUID] = set()
        self.lock = threading.Condition()

    def pump(self) -> None:
        while True:
            payload = self.pool.data_to_send(amount=150_000)
            if payload is None:
                break
            self.outgoing.setdefault(payload.pipeline_id, []).append(payload.data)
        self.lock.notify_all()


class _IPv6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class ExchangeEndpoint:
    """One emulated Exchange server's `/PowerShell` endpoint on a loopback address."""

    def __init__(
        self,
        org: ExchangeOrg,
        *,
        server_name: str,
        users: dict[str, str],
        admins: set[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/PowerShell",
        tls_chain: Path | None = None,
        tls_key: Path | None = None,
        schemes: tuple[str, ...] = ("Negotiate",),
        configurations: tuple[str, ...] = ("Microsoft.Exchange",),
    ) -> None:
        self.org = org
        self.server_name = server_name
        self.users = users  # "DOMAIN\\user" -> password (Basic); NTLM reads NTLM_USER_FILE
        self.admins = {u.lower() for u in (admins if admins is not None else set(users))}
        self.path = path
        self.schemes = schemes
        # WinRM's /wsman has Microsoft.PowerShell but no Microsoft.Exchange: pass that to emulate it.
        self.resource_uris = {f"http://schemas.microsoft.com/powershell/{name}" for name in configurations}
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.requests: list[dict[str, Any]] = []
        # (client principal, mechanism) of every completed Negotiate login: "kerberos" or "ntlm".
        self.logins: list[tuple[str, str]] = []
        self.shells: dict[str, _Shell] = {}
        self.lock = threading.Lock()
        endpoint = self

        class Handler(_Handler):
            pass

        Handler.endpoint = endpoint
        server_class = _IPv6Server if ":" in host else http.server.ThreadingHTTPServer
        self.httpd = server_class((host, port), Handler)
        self.httpd.daemon_threads = True
        self.tls = tls_chain is not None
        if tls_chain is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls_chain), str(tls_key))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name=f"psrp-{server_name}", daemon=True
        )

    def start(self) -> ExchangeEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    def record_login(self, principal: str, mechanism: str) -> None:
        with self.lock:
            self.logins.append((principal, mechanism))

    def raw_traffic(self) -> bytes:
        with self.lock:
            return b"".join(r["authorization"] + r["body"] for r in self.requests)


class _Handler(http.server.BaseHTTPRequestHandler):
    endpoint: ExchangeEndpoint
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"

    # connection state (NTLM is connection-bound, like IIS)
    auth_context: Any = None
    user: str | None = None
    encryption: WinRMEncryption | None = None
    final_token: bytes | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if self.final_token is not None:
            # Kerberos mutual authentication: the AP-REP rides on the first answer after the login.
            self.send_header("WWW-Authenticate", f"Negotiate {base64.b64encode(self.final_token).decode()}")
            self.final_token = None
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _challenge(self, token: bytes | None = None) -> None:
        headers = {}
        values = []
        for scheme in self.endpoint.schemes:
            if scheme == "Negotiate" and token is not None:
                values.append(f"Negotiate {base64.b64encode(token).decode()}")
            elif scheme == "Basic":
                values.append('Basic realm="ex"')
            else:
                values.append(scheme)
        headers["WWW-Authenticate"] = ", ".join(values)
        self._send(401, headers=headers)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._send(405)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        endpoint = self.endpoint
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        authorization = self.headers.get("Authorization", "")
        endpoint.record(
            {
                "path": self.path,
                "authorization": authorization.encode(),
                "content_type": self.headers.get("Content-Type", ""),
                "body": body,
            }
        )
        if endpoint.stalled.is_set():
            endpoint.released.wait(60)
            self.close_connection = True
            return
        if self.path.split("?")[0].rstrip("/").lower() != endpoint.path.lower():
            self._send(
                404,
                b"<html><body>404 - File or directory not found.</body></html>",
                {"Content-Type": "text/html"},
            )
            return

        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() in ("negotiate", "ntlm") and "Negotiate" in endpoint.schemes:
                if self.auth_context is None or self.auth_context.complete:
                    self.auth_context = spnego.server(protocol="negotiate")
                    self.user = None
                    self.encryption = None
                try:
                    out = self.auth_context.step(base64.b64decode(token))
                except Exception:  # noqa: BLE001 - any refused token is a 401, as IIS answers it
                    self.auth_context = None
                    self._challenge()
                    return
                if not self.auth_context.complete:
                    self._challenge(out)
                    return
                self.user = str(self.auth_context.client_principal)
                self.final_token = out
                endpoint.record_login(self.user, str(self.auth_context.negotiated_protocol))
                self.encryption = WinRMEncryption(self.auth_context, WinRMEncryption.SPNEGO)
            elif scheme.lower() == "basic" and "Basic" in endpoint.schemes:
                user, _, password = base64.b64decode(token).decode("utf-8", "replace").partition(":")
                if endpoint.users.get(user) != password:
                    self._challenge()
                    return
                self.user = user
            else:
                self._challenge()
                return
        if self.user is None:
            self._challenge()
            return

        encrypted = self.headers.get("Content-Type", "").startswith("multipart/encrypted")
        if encrypted:
            assert self.encryption is not None
            body = self.encryption.unwrap_message(body, "Encrypted Boundary")
        elif body and not endpoint.tls:
            # Like WinRM's AllowUnencrypted=false: no SOAP in clear over plain HTTP.
            self._send(401)
            return
        if not body:
            self._send(200)  # the empty request pypsrp sends to set up the security context
            return

        status, reply = _dispatch(self, body)
        headers = {}
        if encrypted and self.encryption is not None:
            content_type, reply = self.encryption.wrap_message(reply)
            headers["Content-Type"] = (
                f'{content_type};protocol="{WinRMEncryption.SPNEGO}";boundary="Encrypted Boundary"'
            )
        else:
            headers["Content-Type"] = "application/soap+xml;charset=UTF-8"
        self._send(status, reply, headers)


def _envelope(action: str, relates_to: str, body: etree._Element | None) -> bytes:
    env = etree.Element(f"{{{NS['s']}}}Envelope", nsmap=dict(NS))
    header = etree.SubElement(env, f"{{{NS['s']}}}Header")
    etree.SubElement(header, f"{{{NS['wsa']}}}Action").text = action
    etree.SubElement(header, f"{{{NS['wsa']}}}MessageID").text = f"uuid:{str(uuid.uuid4()).upper()}"
    etree.SubElement(
        header, f"{{{NS['wsa']}}}To"
    ).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    etree.SubElement(header, f"{{{NS['wsa']}}}RelatesTo").text = relates_to
    soap_body = etree.SubElement(env, f"{{{NS['s']}}}Body")
    if body is not None:
        soap_body.append(body)
    return etree.tostring(env, encoding="utf-8", xml_declaration=False)


def _fault(relates_to: str, code: int, message: str, machine: str, subcode: str = "w:InternalError") -> bytes:
    fault = etree.Element(f"{{{NS['s']}}}Fault")
    code_el = etree.SubElement(fault, f"{{{NS['s']}}}Code")
    etree.SubElement(code_el, f"{{{NS['s']}}}Value").text = "s:Receiver"
    sub = etree.SubElement(code_el, f"{{{NS['s']}}}Subcode")
    etree.SubElement(sub, f"{{{NS['s']}}}Value").text = subcode
    reason = etree.SubElement(fault, f"{{{NS['s']}}}Reason")
    text = etree.SubElement(reason, f"{{{NS['s']}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    text.text = message
    detail = etree.SubElement(fault, f"{{{NS['s']}}}Detail")
    wsman_fault = etree.SubElement(
        detail, f"{{{NS['wsmanfault']}}}WSManFault", Code=str(code), Machine=machine
    )
    etree.SubElement(wsman_fault, f"{{{NS['wsmanfault']}}}Message").text = message
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, fault)


def _rsp(tag: str, **attrib: str) -> etree._Element:
    return etree.Element(f"{{{NS['rsp']}}}{tag}", **attrib)


def _dispatch(handler: _Handler, body: bytes) -> tuple[int, bytes]:
    endpoint = handler.endpoint
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    env = etree.fromstring(body, parser)
    action = env.findtext("s:Header/wsa:Action", namespaces=NS) or ""
    message_id = env.findtext("s:Header/wsa:MessageID", namespaces=NS) or ""
    resource_uri = env.findtext("s:Header/wsman:ResourceURI", namespaces=NS) or ""
    timeout_text = env.findtext("s:Header/wsman:OperationTimeout", namespaces=NS) or "PT20S"
    operation_timeout = float(re.sub(r"[^0-9.]", "", timeout_text) or 20)
    shell_id = env.findtext("s:Header/wsman:SelectorSet/wsman:Selector[@Name='ShellId']", namespaces=NS)
    machine = endpoint.server_name.lower()

    if resource_uri not in endpoint.resource_uris:
        return 500, _fault(
            message_id,
            FAULT_RESOURCE_NOT_FOUND,
            f"The WS-Management service cannot process the request. The resource URI ({resource_uri}) was "
            "not found in the WS-Management catalog. The catalog contains the metadata that describes "
            "resources, or logical endpoints.",
            machine,
            "w:DestinationUnreachable",
        )
    if action == ACTION + "Create":
        if (handler.user or "").lower() not in endpoint.admins:
            return 500, _fault(
                message_id, FAULT_ACCESS_DENIED, "Access is denied.", machine, "w:AccessDenied"
            )
        shell_el = env.find("s:Body/rsp:Shell", NS)
        assert shell_el is not None
        new_id = shell_el.get("ShellId") or str(uuid.uuid4()).upper()
        shell = _Shell(new_id, handler.user or "")
        creation = shell_el.findtext("pwsh:creationXml", namespaces=NS) or ""
        with shell.lock:
            _feed(endpoint, shell, base64.b64decode(creation), None)
        with endpoint.lock:
            endpoint.shells[new_id] = shell
        created = etree.Element(f"{{{NS['wst']}}}ResourceCreated")
        etree.SubElement(created, f"{{{NS['wsa']}}}Address").text = f"http://{machine}{endpoint.path}"
        refs = etree.SubElement(created, f"{{{NS['wsa']}}}ReferenceParameters")
        etree.SubElement(refs, f"{{{NS['wsman']}}}ResourceURI").text = resource_uri
        selectors = etree.SubElement(refs, f"{{{NS['wsman']}}}SelectorSet")
        etree.SubElement(selectors, f"{{{NS['wsman']}}}Selector", Name="ShellId").text = new_id
        env_out = etree.fromstring(_envelope(ACTION + "CreateResponse", message_id, created))
        body_out = env_out.find("s:Body", NS)
        assert body_out is not None
        shell_out = etree.SubElement(body_out, f"{{{NS['rsp']}}}Shell")
        for tag, value in (
            ("ShellId", new_id),
            ("ResourceUri", resource_uri),
            ("Owner", handler.user or ""),
            ("ClientIP", handler.client_address[0]),
            ("IdleTimeOut", "PT900.000S"),
            ("InputStreams", "stdin pr"),
            ("OutputStreams", "stdout"),
        ):
            etree.SubElement(shell_out, f"{{{NS['rsp']}}}{tag}").text = value
        return 200, etree.tostring(env_out, encoding="utf-8")

    with endpoint.lock:
        found = endpoint.shells.get(shell_id or "")
    if found is None:
        return 500, _fault(
            message_id,
            2150858843,
            "The request for the Windows Remote Shell with ShellId "
            f"{shell_id} failed because the shell was not found on the server.",
            machine,
        )
    shell = found
    if action == ACTION + "Delete":
        with endpoint.lock:
            endpoint.shells.pop(shell.id, None)
        return 200, _envelope(ACTION + "DeleteResponse", message_id, None)
    if action == SHELL + "Command":
        command = env.find("s:Body/rsp:CommandLine", NS)
        assert command is not None
        command_id = command.get("CommandId") or str(uuid.uuid4()).upper()
        data = base64.b64decode(command.findtext("rsp:Arguments", namespaces=NS) or "")
        with shell.lock:
            psrpcore.ServerPipeline(shell.pool, uuid.UUID(command_id))
            _feed(endpoint, shell, data, uuid.UUID(command_id))
        response = _rsp("CommandResponse")
        etree.SubElement(response, f"{{{NS['rsp']}}}CommandId").text = command_id
        return 200, _envelope(SHELL + "CommandResponse", message_id, response)
    if action == SHELL + "Send":
        stream = env.find("s:Body/rsp:Send/rsp:Stream", NS)
        assert stream is not None
        command_id = stream.get("CommandId")
        with shell.lock:
            _feed(
                endpoint,
                shell,
                base64.b64decode(stream.text or ""),
                uuid.UUID(command_id) if command_id else None,
            )
        return 200, _envelope(SHELL + "SendResponse", message_id, _rsp("SendResponse"))
    if action == SHELL + "Signal":
        signal = env.find("s:Body/rsp:Signal", NS)
        assert signal is not None
        pipeline_id = uuid.UUID(signal.get("CommandId", ""))
        with shell.lock:
            pipeline = shell.pool.pipeline_table.get(pipeline_id)
            if pipeline is not None:
                pipeline.close()
            shell.outgoing.pop(pipeline_id, None)
        return 200, _envelope(SHELL + "SignalResponse", message_id, _rsp("SignalResponse"))
    if action == SHELL + "Receive":
        desired = env.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
        command_id = desired.get("CommandId") if desired is not None else None
        target = uuid.UUID(command_id) if command_id else None
        deadline = time.monotonic() + max(0.5, operation_timeout - 0.5)
        with shell.lock:
            while not shell.outgoing.get(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or endpoint.released.is_set():
                    return 500, _fault(
                        message_id,
                        FAULT_OPERATION_TIMEOUT,
                        "The WS-Management service cannot complete the operation within the time specified "
                        "in OperationTimeout.",
                        machine,
                        "w:TimedOut",
                    )
                shell.lock.wait(remaining)
            chunk = shell.outgoing[target].pop(0)
            finished = target is not None and target in shell.done and not shell.outgoing[target]
        response = _rsp("ReceiveResponse")
        stream_attrs = {"Name": "stdout"}
        if command_id:
            stream_attrs["CommandId"] = command_id
        etree.SubElement(response, f"{{{NS['rsp']}}}Stream", **stream_attrs).text = base64.b64encode(
            chunk
        ).decode()
        if command_id:
            state = SHELL + "CommandState/" + ("Done" if finished else "Running")
            etree.SubElement(response, f"{{{NS['rsp']}}}CommandState", CommandId=command_id, State=state)
        return 200, _envelope(SHELL + "ReceiveResponse", message_id, response)
    return 500, _fault(message_id, 2150858817, f"The action {action} is not supported.", machine)


def _feed(endpoint: ExchangeEndpoint, shell: _Shell, data: bytes, pipeline_id: uuid.UUID | None) -> None:
    """Give the client's PSRP fragments to psrpcore and act on the events (caller holds shell.lock)."""
    shell.pool.receive_data(psrpcore.PSRPPayload(data, psrpcore.StreamType.default, pipeline_id))
    while True:
        event = shell.pool.next_event()
        if event is None:
            break
        if isinstance(event, psrpcore.CreatePipelineEvent):
            pipeline = shell.pool.pipeline_table[event.pipeline_id]
            _run_pipeline(endpoint, pipeline, event.pipeline)
            shell.done.add(event.pipeline_id)
    shell.pump()


def _run_pipeline(
    endpoint: ExchangeEndpoint, pipeline: psrpcore.ServerPipeline, spec: psrpcore.PowerShell
) -> None:
    pipeline.start()
    if any(command.is_script for command in spec.commands):
        # Exchange's endpoint is a restricted, no-language runspace: cmdlets and parameters only.
        record = _error_record(
            NO_LANGUAGE_MESSAGE,
            "System.Management.Automation.PSInvalidOperationException",
            "ScriptsNotAllowed",
            ErrorCategory.ParserError,
        )
        pipeline._change_state(PSInvocationState.Failed, record)
        return
    for command in spec.commands:
        params: dict[str, Any] = {}
        for name, value in command.parameters:
            params[str(name)] = value
        result = endpoint.org.run(command.command_text, params, local_server=endpoint.server_name)
        if result.terminating is not None:
            message, exception_type, fqid = result.terminating
            pipeline._change_state(
                PSInvocationState.Failed,
                _error_record(message, exception_type, fqid, ErrorCategory.ObjectNotFound),
            )
            return
        for obj in result.objects:
            _queue_raw_output(pipeline, obj)
        for message in result.errors:
            pipeline.write_error(
                NETException(Message=message, HResult=-2146233087),
                ErrorCategoryInfo(
                    Category=ErrorCategory.NotSpecified, Reason="ManagementObjectNotFoundException"
                ),
                fully_qualified_error_id=f"ManagementObjectNotFound,{command.command_text}",
            )
    pipeline.complete()


def write_ntlm_user_file(path: Path, users: dict[str, str]) -> Path:
    """pyspnego's NTLM acceptor reads `DOMAIN:USER:PASSWORD` lines from the NTLM_USER_FILE file."""
    lines = []
    for principal, password in users.items():
        domain, _, user = principal.partition("\\")
        lines.append(f"{domain}:{user}:{password}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Factory = Callable[..., ExchangeEndpoint]
