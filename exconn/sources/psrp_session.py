"""The transport to Exchange's remote PowerShell endpoint (`http(s)://HOST[:PORT]/PowerShell`).

How to reach a server (`ConnectionOptions`, `Server`), opening a runspace pool over pypsrp's
WSMan (authentication, certificate validation, timeouts, message encryption), running one cmdlet
(`run_cmdlet`: no script, the endpoint is no-language), and turning every failure an admin can
meet into one line (`describe_error`). Nothing here knows what the objects mean: that is
`psrp_adapt`; which cmdlets run where is `psrp`.

Every failure while connecting becomes a `ConnectionFailed` (an `InputError`: exit status 2, one
line). The password is never part of a message, a log record, an exception or a file:
`ConnectionOptions` hides it from `repr`, and every message goes through `_scrub`.
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import logging
import math
import re
import socket
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from exconn.errors import InputError, UsageError

log = logging.getLogger(__name__)

Auth = Literal["negotiate", "kerberos", "ntlm", "basic", "certificate", "credssp"]
AUTH_CHOICES: tuple[Auth, ...] = ("negotiate", "kerberos", "ntlm", "basic", "certificate", "credssp")

CONFIGURATION_NAME = "Microsoft.Exchange"

# WSManFault codes an admin meets.
FAULT_RESOURCE_NOT_FOUND = 2150858811  # wrong endpoint/configuration: "resource URI not found"
FAULT_ACCESS_DENIED = 5

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
        """The port of a server given without one: --port, else IIS's 443 for HTTPS and 80 for
        HTTP (not WinRM's 5985/5986)."""
        return self.port if self.port is not None else (443 if self.ssl else 80)

    def port_for(self, server: Server) -> int:
        return server.port if server.port is not None else self.effective_port

    def endpoint(self, host: str | Server) -> str:
        server = as_server(host)
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://{_bracketed(server.host)}:{self.port_for(server)}/{self.path.strip('/')}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, slots=True)
class Server:
    """One `--server HOST[:PORT]`; without a port, `ConnectionOptions.port` (or its default) holds."""

    host: str
    port: int | None = None

    @property
    def label(self) -> str:
        """The server as messages, keys and `psrp://` sources name it: the port only when given."""
        return self.host if self.port is None else f"{_bracketed(self.host)}:{self.port}"


def parse_server(text: str) -> Server:
    """`HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT` or a bare IPv6 address (no port); a
    UsageError with one line otherwise."""
    value = text.strip()
    port_text: str | None = None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or not _is_ipv6(host) or (rest and not rest.startswith(":")):
            raise UsageError(f"--server {text!r}: write an IPv6 address as [ADDRESS] or [ADDRESS]:PORT")
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value and not _is_ipv6(value):
        raise UsageError(f"--server {text!r}: write HOST:PORT, or [ADDRESS]:PORT for IPv6")
    else:
        host = value
    if not host or any(ch.isspace() or ch in "/?#@[]" for ch in host):
        raise UsageError(f"--server {text!r} is not a host name or address (HOST or HOST:PORT)")
    if port_text is None:
        return Server(host)
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise UsageError(f"--server {text!r}: the port must be a number between 1 and 65535")
    return Server(host, int(port_text))


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])  # a zone (`%eth0`) is part of the host
    except ValueError:
        return False
    return True


def as_server(value: str | Server) -> Server:
    return value if isinstance(value, Server) else parse_server(value)


def check_options(options: ConnectionOptions, host: str | Server = "") -> None:
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


def _wsman(server: Server, options: ConnectionOptions) -> Any:
    from pypsrp.wsman import WSMan

    connection_timeout, read_timeout, operation_timeout = _timeouts(options.timeout)
    cert_validation: bool | str = True
    if options.ssl:
        cert_validation = options.ca_file if options.ca_file else options.cert_validation
    kwargs: dict[str, Any] = {}
    if options.auth == "certificate":
        kwargs = {"certificate_pem": options.cert_pem, "certificate_key_pem": options.cert_key_pem}
    if options.auth in ("negotiate", "kerberos"):
        # Exchange's endpoint is an IIS site: Kerberos asks for HTTP/<host>, as PowerShell's own
        # client does (Active Directory maps HTTP to the computer's HOST SPN), not WSMAN/<host>.
        kwargs = {"negotiate_service": "HTTP"}
    return WSMan(
        server.host,
        port=options.port_for(server),
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
    """An open runspace pool on one server's `Microsoft.Exchange` configuration."""

    server: Server
    endpoint: str
    pool: Any
    options: ConnectionOptions
    runspace_id: uuid.UUID

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def label(self) -> str:
        return self.server.label

    def run(self, cmdlet: str, parameters: dict[str, str] | None = None) -> CmdletRun:
        return run_cmdlet(self, cmdlet, parameters or {})


@contextmanager
def open_session(host: str | Server, options: ConnectionOptions) -> Iterator[Session]:
    """Open a runspace pool on `host` (`HOST[:PORT]`), or raise ConnectionFailed with one line."""
    from pypsrp.powershell import RunspacePool

    server = as_server(host)
    check_options(options, server)
    endpoint = options.endpoint(server)
    try:
        pool = RunspacePool(_wsman(server, options), configuration_name=CONFIGURATION_NAME)
        pool.open()
    except Exception as error:  # noqa: BLE001 - every failure becomes one line for the admin
        raise ConnectionFailed(endpoint, describe_error(error, server, options)) from None
    session = Session(server, endpoint, pool, options, uuid.UUID(pool.id))
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
    """One cmdlet invocation: the objects it returned (raw pypsrp objects) and its errors.

    `host` is the server's label (`HOST`, or `HOST:PORT` when its own port was given), which
    keys a collection; `computer_name` is the bare host, PowerShell's `PSComputerName`.
    """

    cmdlet: str
    parameters: dict[str, str]
    host: str
    objects: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    computer_name: str = ""

    def __post_init__(self) -> None:
        if not self.computer_name:
            self.computer_name = self.host

    @property
    def server(self) -> str | None:
        return self.parameters.get("Server")


def run_cmdlet(session: Session, cmdlet: str, parameters: dict[str, str]) -> CmdletRun:
    """Run one cmdlet (no script: the endpoint is no-language). Errors are recorded, not raised."""
    from pypsrp.powershell import PowerShell

    run = CmdletRun(cmdlet, dict(parameters), session.label, computer_name=session.host)
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
        run.errors.append(describe_error(error, session.server, session.options))
    return run


def _error_text(record: Any, options: ConnectionOptions) -> str:
    text = str(record) if getattr(record, "_to_string", None) else ""
    if not text:
        exception = getattr(record, "exception", None)
        text = str(getattr(exception, "message", "") or getattr(record, "message", "") or "")
    if not text:
        text = str(getattr(record, "fq_error", "") or "error record without a message")
    return _oneline(_scrub(text, options))


# --- errors as one line --------------------------------------------------------------------------


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _scrub(text: str, options: ConnectionOptions) -> str:
    """Remove the password (and its Basic-header forms) from any text shown or stored."""
    secret = options.password
    if not secret:
        return text
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


def describe_error(error: BaseException, host: str | Server, options: ConnectionOptions) -> str:
    """What went wrong, in one line an Exchange admin can act on (never the password)."""
    server = host if isinstance(host, Server) else Server(host)
    return _oneline(_scrub(_describe(error, server, options), options))


def _describe(error: BaseException, server: Server, options: ConnectionOptions) -> str:  # noqa: PLR0911, PLR0912
    import requests
    from pypsrp.exceptions import (
        AuthenticationError,
        InvalidPSRPOperation,
        WinRMTransportError,
        WSManFaultError,
    )

    host, port = server.host, options.port_for(server)
    seconds = _timeouts(options.timeout)[1]
    if options.auth in ("kerberos", "negotiate"):
        kerberos = _kerberos_reason(" ".join(str(e) for e in _chain(error)), options)
        if kerberos is not None:
            return kerberos
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
                f"HTTP 404 at {options.endpoint(server)}: nothing there; check --path (Exchange: PowerShell) "
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


_KRB_CLIENT_UNKNOWN = re.compile(r"Client '?([^' ]+)'? not found in Kerberos database")
_KRB_SERVER_UNKNOWN = re.compile(r"Server '?([^' ]+)'? not found in Kerberos database")
_KRB_NO_KDC = re.compile(r"Cannot (?:contact|find) any KDC for (?:requested )?realm '?([^' ]+?)'?(?: |$)")


def _kerberos_reason(text: str, options: ConnectionOptions) -> str | None:
    """What MIT Kerberos (through GSSAPI or krb5) said, as advice; None if it was not Kerberos."""
    if "Clock skew too great" in text:
        return (
            "Kerberos: this computer's clock and the domain controller's differ by more than the allowed "
            "skew (5 minutes by default); synchronise the time (e.g. w32tm /resync, chronyc makestep) "
            "and try again"
        )
    if match := _KRB_CLIENT_UNKNOWN.search(text):
        return (
            f"Kerberos: the domain controller (KDC) knows no user {match.group(1)}: check --username "
            "(user@REALM, the realm in capitals)"
        )
    if match := _KRB_SERVER_UNKNOWN.search(text):
        return (
            f"Kerberos: the domain controller knows no service principal {match.group(1)}: connect with "
            "the server's FQDN (the name its HTTP/HOST SPN is registered for), not an IP address or an "
            "alias (or use --auth ntlm)"
        )
    if "Preauthentication failed" in text or "Decrypt integrity check failed" in text:
        return (
            f"Kerberos: the password of {options.username or 'the user'} was refused (pre-authentication "
            "failed): check it, and whether the account is locked or expired"
        )
    if "No Kerberos credentials available" in text or "No credentials cache found" in text:
        return (
            "Kerberos: no ticket in the credential cache and no password given: run kinit user@REALM "
            "first, or give --username and --password-env"
        )
    if match := _KRB_NO_KDC.search(text):
        return (
            f"Kerberos: no domain controller (KDC) of realm {match.group(1)} answers: check that this "
            "computer can reach one (DNS SRV records, or the realm's kdc in krb5.conf)"
        )
    return None


def _last_line(text: str) -> str:
    text = re.sub(r"<[^>]*>", " ", text)
    return _oneline(text)[:300]
