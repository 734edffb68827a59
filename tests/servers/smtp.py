"""Real SMTP servers on loopback, one 127.0.0.x address per MX host name, for the SMTP probe tests.

    with SmtpServers.start(ca, {"mx1.good.test": "good", "mx.silent.test": "silent"}) as servers:
        ip, port, cert = servers["mx1.good.test"]
        ...
        servers.commands("mx1.good.test")  # [Command("EHLO", "[127.0.0.1]", tls=False), ...]

Every server listens on the same port (its own address), so DNS A records elsewhere in the suite
can point MX names at them. aiosmtpd serves every profile except `silent` (a bare socket that
accepts and never speaks). Each server records the commands it received, per connection, so a
test can assert that the probe never sent RCPT or DATA.

Profiles:
    good             STARTTLS with a TestCA certificate for its name; plaintext MAIL FROM gets 250
    no-starttls      no STARTTLS advertised
    require-tls      plaintext MAIL FROM gets `530 5.7.0 Must issue a STARTTLS command first`
    auth-required    MAIL FROM gets `530 5.7.57 Client not authenticated ...` (a submission endpoint)
    expired          certificate expired yesterday (same TestCA)
    untrusted        certificate from a second CA that is never handed to the probe
    wrong-name       certificate for another name (`other-name.invalid`)
    tls12-only       TLS 1.2 at most
    starttls-broken  advertises STARTTLS, answers 220, then sends garbage instead of a handshake
    endless          answers EHLO with a 250- reply that never ends
    banner-554       greets with `554 5.7.1 ...` instead of 220
    helo-only        refuses EHLO with 502 (HELO works), so no ESMTP at all
    silent           accepts TCP, never answers
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, AnyStr, NamedTuple

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.servers.ca import IssuedCert, TestCA

PROFILES = frozenset(
    {
        "good",
        "no-starttls",
        "require-tls",
        "auth-required",
        "expired",
        "untrusted",
        "wrong-name",
        "tls12-only",
        "starttls-broken",
        "endless",
        "banner-554",
        "helo-only",
        "silent",
        "critical-san",  # a private CA's leaf with a critical subjectAltName (OpenSSL trusts it)
    }
)
_NO_TLS = frozenset({"no-starttls", "silent", "endless", "helo-only", "banner-554"})
WRONG_NAME = "other-name.invalid"

REQUIRE_TLS_REPLY = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_REQUIRED_REPLY = "530 5.7.57 Client not authenticated to send anonymous mail during MAIL FROM"
BANNER_554 = "554 5.7.1 No SMTP service here"


class Command(NamedTuple):
    verb: str  # upper-case: EHLO, MAIL, RCPT, ...
    arg: str | None
    tls: bool  # received after STARTTLS


class ServerInfo(NamedTuple):
    ip: str
    port: int
    cert: IssuedCert | None
    profile: str


@dataclass
class _Record:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: list[list[Command]] = field(default_factory=list)

    def new_session(self) -> list[Command]:
        session: list[Command] = []
        with self.lock:
            self.sessions.append(session)
        return session


class _Handler:
    """aiosmtpd handler hooks: the profile's answers to MAIL, and never a delivery."""

    def __init__(self, profile: str) -> None:
        self.profile = profile

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.profile == "auth-required":
            return AUTH_REQUIRED_REPLY
        if self.profile == "require-tls" and session.ssl is None:
            return REQUIRE_TLS_REPLY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        return "550 5.7.1 This test server accepts no recipients"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        return "554 5.6.0 This test server accepts no data"


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP, recording every dispatched command and playing the hostile profiles."""

    def __init__(self, handler: _Handler, *, record: _Record, profile: str, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._profile = profile
        self._commands = record.new_session()
        self._banner_sent = False
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._recorder(verb, method)

    def _recorder(self, verb: str, method: Any) -> Any:
        async def call(arg: str | None) -> None:
            self._commands.append(Command(verb, arg, self._tls_protocol is not None))
            await method(arg)

        return call

    async def push(self, status: AnyStr) -> None:
        if not self._banner_sent:
            self._banner_sent = True
            if self._profile == "banner-554":
                await super().push(BANNER_554)
                return
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:  # noqa: N802
        if self._profile == "helo-only":
            await self.push("502 5.5.2 Command not recognized")
            return
        if self._profile != "endless":
            await super().smtp_EHLO(hostname)
            return
        line = 0
        try:
            while self.transport is not None and not self.transport.is_closing():
                await self.push(f"250-EXTENSION-{line} " + "x" * 60)
                line += 1
        except (ConnectionError, RuntimeError):
            return

    async def smtp_STARTTLS(self, arg: str) -> None:  # noqa: N802
        if self._profile != "starttls-broken":
            await super().smtp_STARTTLS(arg)
            return
        await self.push("220 2.0.0 Ready to start TLS")
        with contextlib.suppress(asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            await asyncio.wait_for(self._reader.read(1), timeout=5)  # the client's ClientHello
        self._writer.write(b"this is not a TLS handshake\r\n" * 8)
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        assert self._handler_coroutine is not None
        self._handler_coroutine.cancel()
        assert self.transport is not None
        self.transport.close()


class _Controller(Controller):
    def __init__(self, *, record: _Record, profile: str, **kwargs: Any) -> None:
        self._record = record
        self._profile = profile
        super().__init__(_Handler(profile), **kwargs)

    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, record=self._record, profile=self._profile, **self.SMTP_kwargs)


class _SilentServer:
    """Accepts TCP connections and never sends a byte."""

    def __init__(self, ip: str, port: int) -> None:
        self._listener = socket.create_server((ip, port), reuse_port=False)
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name=f"silent-smtp-{ip}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._conns:
            conn.close()


def _server_context(cert: IssuedCert, profile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert.chain_path), str(cert.key_path))
    if profile == "tls12-only":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((ip, 0))
        return int(probe.getsockname()[1])


class SmtpServers(Mapping[str, ServerInfo]):
    """Loopback SMTP servers by MX host name; a context manager, `stop()` also works."""

    def __init__(self, ca: TestCA, untrusted_ca: TestCA) -> None:
        self.ca = ca
        self.untrusted_ca = untrusted_ca  # the CA of the `untrusted` profile (never trusted by the probe)
        self._servers: dict[str, ServerInfo] = {}
        self._records: dict[str, _Record] = {}
        self._running: list[_Controller | _SilentServer] = []

    @classmethod
    def start(
        cls,
        ca: TestCA,
        profiles: Mapping[str, str],
        *,
        base_ip: str = "127.0.0.",
        start_octet: int = 100,
        port: int = 0,
        attempts: int = 5,
    ) -> SmtpServers:
        """Start one server per `{hostname: profile}` on base_ip + start_octet, +1, ... .

        `port=0` picks a port free on every address (retrying if another process takes it).
        """
        unknown = sorted(set(profiles.values()) - PROFILES)
        if unknown:
            raise ValueError(f"unknown SMTP server profiles: {unknown}")
        if start_octet < 1 or start_octet + len(profiles) > 255:
            raise ValueError("not enough addresses after start_octet")
        untrusted_dir = Path(ca.directory) / "untrusted-ca"
        servers = cls(ca, TestCA(untrusted_dir, name="exconn Untrusted Test CA"))
        certs = servers._issue(profiles)
        ips = {host: f"{base_ip}{start_octet + i}" for i, host in enumerate(profiles)}
        for attempt in range(attempts):
            chosen = port or _free_port(next(iter(ips.values()), "127.0.0.1"))
            try:
                for host, profile in profiles.items():
                    servers._start_one(host, profile, ips[host], chosen, certs[host])
            except OSError as exc:
                servers.stop()
                if port or exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                continue
            return servers
        raise AssertionError("unreachable")

    def _issue(self, profiles: Mapping[str, str]) -> dict[str, IssuedCert | None]:
        certs: dict[str, IssuedCert | None] = {}
        for host, profile in profiles.items():
            stem = "smtp-" + host.replace("*", "_")
            if profile in _NO_TLS:
                certs[host] = None
            elif profile == "expired":
                certs[host] = self.ca.issue(stem, [host], expired=True)
            elif profile == "untrusted":
                certs[host] = self.untrusted_ca.issue(stem, [host])
            elif profile == "wrong-name":
                certs[host] = self.ca.issue(stem, [WRONG_NAME])
            elif profile == "critical-san":
                certs[host] = self.ca.issue(stem, [host], critical_san=True)
            else:
                certs[host] = self.ca.issue(stem, [host])
        return certs

    def _start_one(self, host: str, profile: str, ip: str, port: int, cert: IssuedCert | None) -> None:
        record = _Record()
        server: _Controller | _SilentServer
        if profile == "silent":
            server = _SilentServer(ip, port)
        else:
            kwargs: dict[str, Any] = {}
            if cert is not None:
                kwargs["tls_context"] = _server_context(cert, profile)
            server = _Controller(
                record=record,
                profile=profile,
                hostname=ip,
                port=port,
                server_hostname=host,
                ready_timeout=10.0,
                **kwargs,
            )
            try:
                server.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    server.stop(no_assert=True)
                raise
            with record.lock:
                record.sessions.clear()  # the readiness check's connection
        self._running.append(server)
        self._servers[host] = ServerInfo(ip, port, cert, profile)
        self._records[host] = record

    def sessions(self, host: str) -> list[list[Command]]:
        """Commands received by `host`, one list per connection that sent any."""
        record = self._records[host]
        with record.lock:
            return [list(s) for s in record.sessions if s]

    def commands(self, host: str) -> list[Command]:
        return [c for s in self.sessions(host) for c in s]

    def clear(self, host: str | None = None) -> None:
        for name, record in self._records.items():
            if host is None or name == host:
                with record.lock:
                    record.sessions.clear()

    def resolve(self, host: str) -> list[str]:
        """A `resolve=` for the probe: the loopback address of `host`, or [] if not served here."""
        info = self._servers.get(host.lower().rstrip("."))
        return [] if info is None else [info.ip]

    def stop(self) -> None:
        while self._running:
            server = self._running.pop()
            if isinstance(server, _SilentServer):
                server.stop()
            else:
                server.stop(no_assert=True)

    def __enter__(self) -> SmtpServers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __getitem__(self, host: str) -> ServerInfo:
        return self._servers[host]

    def __iter__(self) -> Iterator[str]:
        return iter(self._servers)

    def __len__(self) -> int:
        return len(self._servers)
