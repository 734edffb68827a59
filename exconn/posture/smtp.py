"""Probe one MX host over SMTP: banner, EHLO, plaintext MAIL FROM, STARTTLS and the certificate.

One connection, never RCPT or DATA: the probe sends `EHLO`, `MAIL FROM:<>`, `RSET`, `STARTTLS`,
`EHLO` and `QUIT`, so it can never deliver mail. The handshake uses a context that does not abort on
a bad certificate, so a probe of a misconfigured host still records the TLS version, the cipher and
the chain; `certs.assess_chain` then judges trust, expiry and name against the run's `TrustStore`.

Nothing the network does raises: every failure is a `ProbeError` in `MxProbe.errors`, and one
`timeout` bounds the whole probe (connect, every read and the handshake share one deadline).
`MxProbe` lives only in memory: what a posture keeps of it is `MxHostFacts` (`scan.host_facts`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from exconn.names import normalize
from exconn.posture.certs import TrustStore, assess_chain, certificate_name_matches, is_ip
from exconn.posture.errors import ProbeError
from exconn.posture.facts import CertificateFacts, PlainMailVerdict, SmtpReplyFacts

__all__ = [
    "CertificateInfo",
    "MxProbe",
    "PlainMailVerdict",
    "SmtpReply",
    "TrustStore",
    "certificate_name_matches",
    "classify_mail_reply",
    "probe_mx",
]

#: One SMTP reply and one judged certificate have one shape each, shared with the saved facts.
SmtpReply = SmtpReplyFacts
CertificateInfo = CertificateFacts

MAX_REPLY_LINES = 100
MAX_REPLY_BYTES = 64 * 1024
_QUIT_WAIT = 2.0  # seconds we wait for the reply to QUIT; a missing one is not an error
_ENHANCED_RE = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
_REPLY_RE = re.compile(rb"^(\d{3})([ -]|$)(.*)$", re.DOTALL)
_TLS_WORDS_RE = re.compile(r"\bSTARTTLS\b|\bTLS\b|\bSSL\b|\bencrypt", re.IGNORECASE)
_EHLO_NAME_RE = re.compile(r"[A-Za-z0-9.\-]+|\[[A-Za-z0-9.:]+\]")
_AUTH_WORDS_RE = re.compile(r"\bauth|\bnot authenticated\b|\blog ?in\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MxProbe:
    host: str
    address: str | None  # the IP the probe connected to
    port: int
    banner: SmtpReply | None
    ehlo_extensions: tuple[str, ...]  # upper-case keywords of the plaintext EHLO reply
    starttls_offered: bool | None  # None: could not tell (no EHLO/HELO reply)
    tls_established: bool
    tls_version: str | None  # "TLSv1.3"
    cipher: str | None  # OpenSSL name, e.g. "TLS_AES_256_GCM_SHA384"
    certificate: CertificateInfo | None
    plaintext_mail_from: SmtpReply | None
    plaintext_mail: PlainMailVerdict
    errors: tuple[ProbeError, ...]

    @property
    def error_types(self) -> frozenset[str]:
        return frozenset(e.type for e in self.errors)


# --------------------------------------------------------------------------- verdicts


def classify_mail_reply(reply: SmtpReply | None) -> PlainMailVerdict:
    """Classify the reply to a plaintext `MAIL FROM:<>`."""
    if reply is None:
        return PlainMailVerdict.UNKNOWN
    if 200 <= reply.code < 300:
        return PlainMailVerdict.ACCEPTED
    enhanced = reply.enhanced or ""
    if enhanced == "5.7.57":
        return PlainMailVerdict.AUTH_REQUIRED
    if enhanced in ("5.7.3", "4.7.3") and reply.code in (451, 530, 550, 554):
        return PlainMailVerdict.TLS_REQUIRED
    if reply.code in (530, 451, 454) and _TLS_WORDS_RE.search(reply.text):
        return PlainMailVerdict.TLS_REQUIRED
    if reply.code == 530 and _AUTH_WORDS_RE.search(reply.text):
        return PlainMailVerdict.AUTH_REQUIRED
    return PlainMailVerdict.REFUSED


# --------------------------------------------------------------------------- the session


class _Abort(Exception):
    """Internal control flow: stops the session and carries the error to record."""

    def __init__(self, error: ProbeError) -> None:
        super().__init__(error.detail)
        self.error = error


class _Conn:
    """A line reader/writer over one socket, every operation bounded by one deadline."""

    def __init__(self, sock: socket.socket, deadline: float, timeout: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.timeout = timeout
        self.buf = b""

    def _remaining(self, stage: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Abort(ProbeError("timeout", f"probe time limit of {self.timeout:g}s reached {stage}"))
        return left

    def send(self, line: str, stage: str) -> None:
        self.sock.settimeout(self._remaining(stage))
        try:
            self.sock.sendall(line.encode("ascii") + b"\r\n")
        except TimeoutError as exc:
            raise _Abort(ProbeError("timeout", f"could not send {stage} within the time limit")) from exc
        except OSError as exc:
            raise _Abort(ProbeError("connection-lost", f"sending {stage}: {_os_error(exc)}")) from exc

    def _fill(self, stage: str) -> None:
        self.sock.settimeout(self._remaining(stage))
        try:
            data = self.sock.recv(16384)
        except TimeoutError as exc:
            raise _Abort(
                ProbeError("timeout", f"no complete reply {stage} within {self.timeout:g}s")
            ) from exc
        except OSError as exc:
            raise _Abort(ProbeError("connection-lost", f"reading reply {stage}: {_os_error(exc)}")) from exc
        if not data:
            raise _Abort(
                ProbeError(
                    "connection-lost", f"server closed the connection while we waited for the reply {stage}"
                )
            )
        self.buf += data

    def read_reply(self, stage: str) -> SmtpReply:
        lines: list[str] = []
        code: int | None = None
        used = 0
        while True:
            nl = self.buf.find(b"\n")
            while nl < 0:
                if used + len(self.buf) > MAX_REPLY_BYTES:
                    raise _Abort(
                        ProbeError(
                            "smtp-reply-too-long",
                            f"reply {stage} exceeds {MAX_REPLY_BYTES} bytes; connection dropped",
                        )
                    )
                self._fill(stage)
                nl = self.buf.find(b"\n")
            raw, self.buf = self.buf[:nl], self.buf[nl + 1 :]
            used += nl + 1
            if used > MAX_REPLY_BYTES or len(lines) >= MAX_REPLY_LINES:
                raise _Abort(
                    ProbeError(
                        "smtp-reply-too-long",
                        f"reply {stage} exceeds {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes;"
                        " connection dropped",
                    )
                )
            match = _REPLY_RE.match(raw.rstrip(b"\r"))
            if match is None:
                shown = raw[:80].decode("latin-1")
                raise _Abort(ProbeError("smtp-protocol-error", f"malformed reply line {stage}: {shown!r}"))
            line_code = int(match.group(1))
            code = line_code if code is None else code
            lines.append(match.group(3).decode("utf-8", errors="replace").strip())
            if match.group(2) != b"-":
                return _make_reply(code, lines)


def _make_reply(code: int, lines: list[str]) -> SmtpReply:
    enhanced: str | None = None
    if code >= 200 and lines:
        found = _ENHANCED_RE.match(lines[0])
        if found is not None and found.group(1)[0] == str(code)[0]:
            enhanced = found.group(1)
    if enhanced is not None:
        lines = [ln[len(enhanced) :].lstrip() if ln.startswith(enhanced) else ln for ln in lines]
    return SmtpReply(code=code, enhanced=enhanced, text="\n".join(lines))


def _os_error(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass
class _State:
    address: str | None = None
    banner: SmtpReply | None = None
    ehlo_extensions: tuple[str, ...] = ()
    starttls_offered: bool | None = None
    tls_established: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    certificate: CertificateInfo | None = None
    mail_from: SmtpReply | None = None
    errors: list[ProbeError] = field(default_factory=list)


def probe_mx(
    host: str,
    *,
    addresses: Sequence[str] | None = None,
    port: int = 25,
    timeout: float = 10.0,
    ca_file: str | None = None,
    ehlo_name: str | None = None,
    resolve: Callable[[str], list[str]] | None = None,
    trust: TrustStore | None = None,
) -> MxProbe:
    """Probe the SMTP service of one MX host; never raises for anything the network does.

        Addresses come from `addresses`, else `resolve(host)`, else the system resolver; they are tried
        in order until one accepts the connection. `timeout` bounds the whole probe from this call on.
        `ehlo_name` defaults to the address literal of our end of the connection (RFC 5321 §4.1.3),
        which needs no DNS. `trust` is the run's trust store (a scan loads it once); without it, `ca_file`
    (PEM) or else the system store is loaded for this probe.
        Only a malformed `ehlo_name` (a caller's mistake, not the network's) raises ValueError.
    """
    deadline = time.monotonic() + timeout
    if ehlo_name is not None and not _EHLO_NAME_RE.fullmatch(ehlo_name):
        raise ValueError(f"ehlo_name must be a domain or an address literal, got {ehlo_name!r}")
    host = normalize(host)
    state = _State()
    sock: socket.socket | None = None
    conn: _Conn | None = None
    try:
        targets = _addresses(host, port, addresses, resolve, state.errors)
        if targets:
            sock = _connect(targets, port, deadline, timeout, state)
        if sock is not None:
            conn = _Conn(sock, deadline, timeout)
            try:
                _session(conn, host, ehlo_name, trust or functools.partial(TrustStore.load, ca_file), state)
            except _Abort as abort:
                state.errors.append(abort.error)
    except Exception as exc:  # a probe never raises: an unforeseen failure is data too
        state.errors.append(ProbeError("probe-failed", f"{type(exc).__name__}: {exc}"))
    finally:
        if conn is not None:
            conn.sock.close()  # the TLS socket once STARTTLS succeeded
        elif sock is not None:
            sock.close()
    return MxProbe(
        host=host,
        address=state.address,
        port=port,
        banner=state.banner,
        ehlo_extensions=state.ehlo_extensions,
        starttls_offered=state.starttls_offered,
        tls_established=state.tls_established,
        tls_version=state.tls_version,
        cipher=state.cipher,
        certificate=state.certificate,
        plaintext_mail_from=state.mail_from,
        plaintext_mail=classify_mail_reply(state.mail_from),
        errors=tuple(state.errors),
    )


def _addresses(
    host: str,
    port: int,
    addresses: Sequence[str] | None,
    resolve: Callable[[str], list[str]] | None,
    errors: list[ProbeError],
) -> list[str]:
    if addresses is not None:
        found = list(addresses)
    elif resolve is not None:
        try:
            found = list(resolve(host))
        except Exception as exc:  # the caller's resolver: dnspython or anything else
            errors.append(_dns_error(host, exc))
            return []
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            errors.append(_dns_error(host, exc))
            return []
        found = []
        for info in infos:
            ip = str(info[4][0])
            if ip not in found:
                found.append(ip)
    if not found:
        errors.append(ProbeError("dns-no-address", f"{host} has no address to connect to"))
    return found


def _dns_error(host: str, exc: BaseException) -> ProbeError:
    name = type(exc).__name__
    detail = f"resolving {host}: {name}: {exc}".rstrip(": ")
    if isinstance(exc, socket.gaierror):
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return ProbeError("dns-nxdomain", detail)
        return ProbeError("dns-error", detail)
    if "timeout" in name.lower() or isinstance(exc, TimeoutError):
        return ProbeError("dns-timeout", detail)
    if name == "NXDOMAIN":
        return ProbeError("dns-nxdomain", detail)
    if name == "NoAnswer":
        return ProbeError("dns-no-address", detail)
    if name == "NoNameservers":
        return ProbeError("dns-servfail", detail)
    return ProbeError("dns-error", detail)


def _connect(
    targets: list[str], port: int, deadline: float, timeout: float, state: _State
) -> socket.socket | None:
    failures: list[str] = []
    for ip in targets:
        left = deadline - time.monotonic()
        if left <= 0:
            state.errors.append(
                ProbeError("timeout", f"time limit of {timeout:g}s reached while connecting; " + _j(failures))
            )
            return None
        try:
            sock = socket.create_connection((ip, port), timeout=left)
        except TimeoutError:
            failures.append(f"{ip}: timed out")
        except (OSError, ValueError, OverflowError) as exc:
            failures.append(f"{ip}: {_os_error(exc) if isinstance(exc, OSError) else exc}")
        else:
            # Every command follows a reply, but after STARTTLS the EHLO follows our TLS Finished:
            # without this, Nagle holds it one round trip.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state.address = ip
            return sock
    state.errors.append(ProbeError("connect-failed", f"port {port}: " + _j(failures)))
    return None


def _j(parts: list[str]) -> str:
    return "; ".join(parts) if parts else "no address tried"


def _session(
    conn: _Conn,
    host: str,
    ehlo_name: str | None,
    trust: TrustStore | Callable[[], TrustStore],
    state: _State,
) -> None:
    helo = ehlo_name or _address_literal(conn.sock)

    banner = conn.read_reply("to the connection (banner)")
    state.banner = banner
    if banner.code != 220:
        state.errors.append(ProbeError("smtp-banner-rejected", f"banner is not 220: {banner}"))
        _quit(conn)
        return

    conn.send(f"EHLO {helo}", "EHLO")
    ehlo = conn.read_reply("to EHLO")
    _closing(ehlo, "EHLO")
    if 200 <= ehlo.code < 300:
        state.ehlo_extensions = _extensions(ehlo)
        state.starttls_offered = "STARTTLS" in state.ehlo_extensions
    else:
        conn.send(f"HELO {helo}", "HELO")
        helo_reply = conn.read_reply("to HELO")
        _closing(helo_reply, "HELO")
        if not 200 <= helo_reply.code < 300:
            state.errors.append(ProbeError("ehlo-rejected", f"EHLO: {ehlo}; HELO: {helo_reply}"))
            _quit(conn)
            return
        state.starttls_offered = False  # no ESMTP, so no STARTTLS

    conn.send("MAIL FROM:<>", "MAIL FROM")
    state.mail_from = conn.read_reply("to MAIL FROM")
    _closing(state.mail_from, "MAIL FROM")
    conn.send("RSET", "RSET")
    _closing(conn.read_reply("to RSET"), "RSET")

    if not state.starttls_offered:
        state.errors.append(ProbeError("starttls-not-supported", f"{host} does not advertise STARTTLS"))
        _quit(conn)
        return

    conn.send("STARTTLS", "STARTTLS")
    reply = conn.read_reply("to STARTTLS")
    if reply.code != 220:
        state.errors.append(ProbeError("starttls-refused", f"STARTTLS answered {reply}"))
        if reply.code != 421:
            _quit(conn)
        return
    if conn.buf:
        state.errors.append(
            ProbeError(
                "smtp-protocol-error",
                f"server sent {len(conn.buf)} bytes after its 220 to STARTTLS; discarded (RFC 3207 §5)",
            )
        )
        conn.buf = b""

    tls = _handshake(conn, host, state)
    if tls is None:
        return
    state.tls_established = True
    state.tls_version = tls.version()
    cipher = tls.cipher()
    state.cipher = None if cipher is None else cipher[0]
    chain = _presented_chain(tls)
    if not chain:
        state.errors.append(ProbeError("validation-failure", "server presented no certificate"))
    else:
        store = trust if isinstance(trust, TrustStore) else trust()  # loaded only once TLS is up
        state.certificate = assess_chain(host, chain, store, state.errors)

    conn.send(f"EHLO {helo}", "EHLO after STARTTLS")
    ehlo2 = conn.read_reply("to EHLO after STARTTLS")
    _closing(ehlo2, "EHLO after STARTTLS")
    if not 200 <= ehlo2.code < 300:
        state.errors.append(ProbeError("ehlo-rejected", f"EHLO after STARTTLS answered {ehlo2}"))
    _quit(conn)


def _closing(reply: SmtpReply, stage: str) -> None:
    if reply.code == 421:
        raise _Abort(ProbeError("smtp-service-unavailable", f"{stage} answered {reply}; server closing"))


def _quit(conn: _Conn) -> None:
    """Best effort: a QUIT that is not answered is not an error worth reporting."""
    conn.deadline = min(conn.deadline, time.monotonic() + _QUIT_WAIT)
    try:
        conn.send("QUIT", "QUIT")
        conn.read_reply("to QUIT")
    except _Abort:
        pass


def _extensions(reply: SmtpReply) -> tuple[str, ...]:
    keywords: list[str] = []
    for line in reply.text.split("\n")[1:]:
        word = line.split(" ", 1)[0].strip().upper()
        if word and word not in keywords:
            keywords.append(word)
    return tuple(keywords)


def _address_literal(sock: socket.socket) -> str:
    try:
        ip = str(sock.getsockname()[0])
    except OSError:
        return "[127.0.0.1]"
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


# --------------------------------------------------------------------------- TLS


@functools.cache
def _client_context() -> ssl.SSLContext:
    """One probing context for the process: it loads no trust store, and contexts are thread-safe."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Judge the certificate ourselves after the handshake: a bad one must not hide the version,
    # the cipher and the chain. Old protocols are allowed so the probe can report them.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ssl.SSLError, ValueError):
        pass
    return ctx


def _handshake(conn: _Conn, host: str, state: _State) -> ssl.SSLSocket | None:
    sni = None if is_ip(host) else host
    try:
        tls = _client_context().wrap_socket(conn.sock, server_hostname=sni, do_handshake_on_connect=False)
    except (ssl.SSLError, OSError, ValueError) as exc:
        state.errors.append(ProbeError("validation-failure", f"TLS setup failed: {exc}"))
        return None
    conn.sock = tls
    try:
        tls.settimeout(conn._remaining("during the TLS handshake"))
        tls.do_handshake()
    except _Abort as abort:
        state.errors.append(abort.error)
        return None
    except TimeoutError:
        state.errors.append(ProbeError("timeout", f"TLS handshake did not finish within {conn.timeout:g}s"))
        return None
    except ssl.SSLError as exc:
        state.errors.append(ProbeError("validation-failure", f"TLS handshake failed: {exc.reason or exc}"))
        return None
    except OSError as exc:
        state.errors.append(ProbeError("validation-failure", f"TLS handshake failed: {_os_error(exc)}"))
        return None
    return tls


def _presented_chain(tls: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The chain the server sent, leaf first (public in 3.13, private `_sslobj` method in 3.10-3.12)."""
    items: Any = None
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        items = public()
    else:
        sslobj = getattr(tls, "_sslobj", None)
        private = getattr(sslobj, "get_unverified_chain", None)
        if private is not None:
            try:
                items = private()
            except (ssl.SSLError, ValueError):
                items = None
    chain: list[bytes] = []
    for item in items or ():
        if isinstance(item, bytes):
            chain.append(item)
        else:
            chain.append(bytes(item.public_bytes(ssl._ssl.ENCODING_DER)))  # type: ignore[attr-defined]
    if not chain:
        leaf = tls.getpeercert(binary_form=True)
        if leaf:
            chain.append(leaf)
    return tuple(chain)
