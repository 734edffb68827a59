"""Probe one MX host over SMTP: banner, EHLO, plaintext MAIL FROM, STARTTLS and the certificate.

One connection, never RCPT or DATA: the probe sends `EHLO`, `MAIL FROM:<>`, `RSET`, `STARTTLS`,
`EHLO` and `QUIT`, so it can never deliver mail. The handshake uses a context that does not abort on
a bad certificate, so a probe of a misconfigured host still records the TLS version, the cipher and
the chain; trust, expiry and name are then judged here (RFC 6125 / RFC 7672 name rules) and reported
with the RFC 8460 result types (`certificate-not-trusted`, `certificate-expired`,
`certificate-host-mismatch`, `starttls-not-supported`, `validation-failure`).

Nothing the network does raises: every failure is a `ProbeError` in `MxProbe.errors`, and one
`timeout` bounds the whole probe (connect, every read and the handshake share one deadline).
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import os
import re
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from exconn.names import normalize, wildcard_matches
from exconn.posture.errors import ProbeError

__all__ = [
    "CertificateInfo",
    "MxProbe",
    "PlainMailVerdict",
    "SmtpReply",
    "certificate_name_matches",
    "classify_mail_reply",
    "probe_mx",
]

MAX_REPLY_LINES = 100
MAX_REPLY_BYTES = 64 * 1024
_QUIT_WAIT = 2.0  # seconds we wait for the reply to QUIT; a missing one is not an error
_ENHANCED_RE = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
_REPLY_RE = re.compile(rb"^(\d{3})([ -]|$)(.*)$", re.DOTALL)
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_TLS_WORDS_RE = re.compile(r"\bSTARTTLS\b|\bTLS\b|\bSSL\b|\bencrypt", re.IGNORECASE)
_EHLO_NAME_RE = re.compile(r"[A-Za-z0-9.\-]+|\[[A-Za-z0-9.:]+\]")
_AUTH_WORDS_RE = re.compile(r"\bauth|\bnot authenticated\b|\blog ?in\b", re.IGNORECASE)


class PlainMailVerdict(enum.StrEnum):
    """What the reply to `MAIL FROM:<>` before STARTTLS says about the endpoint."""

    ACCEPTED = "accepted"  # 2xx: opportunistic TLS, plaintext mail accepted
    TLS_REQUIRED = "tls-required"  # 530 5.7.0 ... STARTTLS, 451 5.7.3
    AUTH_REQUIRED = "auth-required"  # 530 5.7.57: a submission endpoint, not an MX
    REFUSED = "refused"  # any other reply
    UNKNOWN = "unknown"  # no reply, or never tried


@dataclass(frozen=True, slots=True)
class SmtpReply:
    code: int
    enhanced: str | None  # RFC 3463 enhanced status code of the first line, e.g. "5.7.0"
    text: str  # the lines' text, joined by "\n", enhanced code removed

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SmtpReply:
        enhanced = data.get("enhanced")
        return cls(
            code=int(data["code"]),
            enhanced=None if enhanced is None else str(enhanced),
            text=str(data["text"]),
        )

    def __str__(self) -> str:
        head = f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)
        return f"{head} {self.text}".rstrip()


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    sans: tuple[str, ...]  # DNS names of the subjectAltName
    not_before: str  # ISO 8601 UTC, e.g. 2025-01-31T12:00:00Z
    not_after: str
    trusted: bool  # chains to the trust store (judged inside the validity period)
    name_matches: bool  # RFC 6125 match of the MX host name
    expired: bool  # now is after not_after
    chain_der: tuple[bytes, ...] = field(repr=False)  # as presented by the server, leaf first

    @property
    def leaf_der(self) -> bytes:
        return self.chain_der[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "trusted": self.trusted,
            "name_matches": self.name_matches,
            "expired": self.expired,
            "leaf_der_b64": base64.b64encode(self.chain_der[0]).decode("ascii"),
            "issuers_der_b64": [base64.b64encode(d).decode("ascii") for d in self.chain_der[1:]],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CertificateInfo:
        chain = [base64.b64decode(str(data["leaf_der_b64"]), validate=True)]
        chain.extend(base64.b64decode(str(d), validate=True) for d in data.get("issuers_der_b64", []))
        return cls(
            subject=str(data["subject"]),
            issuer=str(data["issuer"]),
            sans=tuple(str(s) for s in data["sans"]),
            not_before=str(data["not_before"]),
            not_after=str(data["not_after"]),
            trusted=bool(data["trusted"]),
            name_matches=bool(data["name_matches"]),
            expired=bool(data["expired"]),
            chain_der=tuple(chain),
        )


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

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "banner": None if self.banner is None else self.banner.to_json(),
            "ehlo_extensions": list(self.ehlo_extensions),
            "starttls_offered": self.starttls_offered,
            "tls_established": self.tls_established,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "certificate": None if self.certificate is None else self.certificate.to_json(),
            "plaintext_mail_from": (
                None if self.plaintext_mail_from is None else self.plaintext_mail_from.to_json()
            ),
            "plaintext_mail": self.plaintext_mail.value,
            "errors": [e.to_json() for e in self.errors],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MxProbe:
        def opt_str(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        starttls = data.get("starttls_offered")
        return cls(
            host=str(data["host"]),
            address=opt_str("address"),
            port=int(data["port"]),
            banner=None if data.get("banner") is None else SmtpReply.from_json(data["banner"]),
            ehlo_extensions=tuple(str(e) for e in data.get("ehlo_extensions", [])),
            starttls_offered=None if starttls is None else bool(starttls),
            tls_established=bool(data["tls_established"]),
            tls_version=opt_str("tls_version"),
            cipher=opt_str("cipher"),
            certificate=(
                None if data.get("certificate") is None else CertificateInfo.from_json(data["certificate"])
            ),
            plaintext_mail_from=(
                None
                if data.get("plaintext_mail_from") is None
                else SmtpReply.from_json(data["plaintext_mail_from"])
            ),
            plaintext_mail=PlainMailVerdict(str(data.get("plaintext_mail", "unknown"))),
            errors=tuple(ProbeError(str(e["type"]), str(e["detail"])) for e in data.get("errors", [])),
        )


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


def certificate_name_matches(host: str, dns_names: Sequence[str], common_names: Sequence[str] = ()) -> bool:
    """RFC 6125 §6.4 / RFC 7672 §3.2.3 match of `host` against a certificate's names.

    DNS-ID subjectAltNames only; a wildcard is accepted only as the whole left-most label and
    matches exactly one label (not `*.com`, not `f*.example.com`). The CN is consulted only when the
    certificate has no DNS subjectAltName at all.
    """
    target = normalize(host)
    if not target:
        return False
    candidates = list(dns_names) if dns_names else list(common_names)
    for raw in candidates:
        pattern = normalize(raw)
        if not pattern:
            continue
        if "*" not in pattern:
            if pattern == target:
                return True
            continue
        if not pattern.startswith("*.") or "*" in pattern[2:]:
            continue
        base = pattern[2:]
        if base.count(".") < 1:  # "*.com": too broad to honour
            continue
        if wildcard_matches(pattern, target):
            return True
    return False


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
) -> MxProbe:
    """Probe the SMTP service of one MX host; never raises for anything the network does.

    Addresses come from `addresses`, else `resolve(host)`, else the system resolver; they are tried
    in order until one accepts the connection. `timeout` bounds the whole probe from this call on.
    `ehlo_name` defaults to the address literal of our end of the connection (RFC 5321 §4.1.3),
    which needs no DNS. `ca_file` (PEM) replaces the system trust store for the certificate check.
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
                _session(conn, host, ehlo_name, ca_file, state)
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
            state.address = ip
            return sock
    state.errors.append(ProbeError("connect-failed", f"port {port}: " + _j(failures)))
    return None


def _j(parts: list[str]) -> str:
    return "; ".join(parts) if parts else "no address tried"


def _session(conn: _Conn, host: str, ehlo_name: str | None, ca_file: str | None, state: _State) -> None:
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
        state.certificate = _assess(host, chain, ca_file, state.errors)

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


def _client_context() -> ssl.SSLContext:
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
    sni = None if _is_ip(host) else host
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


def _is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except OSError:
            continue
        return True
    return False


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


def _assess(
    host: str, chain_der: tuple[bytes, ...], ca_file: str | None, errors: list[ProbeError]
) -> CertificateInfo | None:
    try:
        leaf = x509.load_der_x509_certificate(chain_der[0])
    except ValueError as exc:
        errors.append(ProbeError("validation-failure", f"cannot parse the server certificate: {exc}"))
        return None
    issuers: list[x509.Certificate] = []
    for der in chain_der[1:]:
        try:
            issuers.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue

    now = dt.datetime.now(dt.UTC)
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    expired = now > not_after
    sans = _dns_sans(leaf)
    cns = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    name_matches = certificate_name_matches(host, sans, cns)

    trusted, why = _judge_trust(host, leaf, issuers, sans, name_matches, now, ca_file)
    if not trusted:
        errors.append(ProbeError("certificate-not-trusted", why))
    if expired:
        errors.append(ProbeError("certificate-expired", f"certificate expired on {_iso(not_after)}"))
    elif now < not_before:
        errors.append(ProbeError("certificate-not-yet-valid", f"valid from {_iso(not_before)}"))
    if not name_matches:
        shown = ", ".join(sans) if sans else "CN=" + ", ".join(cns)
        errors.append(ProbeError("certificate-host-mismatch", f"{host} is not among the names: {shown}"))

    return CertificateInfo(
        subject=_rfc4514(leaf.subject),
        issuer=_rfc4514(leaf.issuer),
        sans=tuple(sans),
        not_before=_iso(not_before),
        not_after=_iso(not_after),
        trusted=trusted,
        name_matches=name_matches,
        expired=expired,
        chain_der=chain_der,
    )


def _judge_trust(
    host: str,
    leaf: x509.Certificate,
    issuers: list[x509.Certificate],
    sans: list[str],
    name_matches: bool,
    now: dt.datetime,
    ca_file: str | None,
) -> tuple[bool, str]:
    """Does the leaf chain to the trust store, whatever its name and validity period?

    Name and expiry are reported on their own, so the chain is checked under the name the
    certificate claims (the MX name when it matches) and at a moment inside the leaf's validity.
    """
    roots, store_error = _trust_store(ca_file)
    if not roots:
        return False, store_error or "trust store is empty"
    in_validity = leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    when = now
    if now > leaf.not_valid_after_utc:
        when = leaf.not_valid_after_utc - dt.timedelta(seconds=1)
    elif now < leaf.not_valid_before_utc:
        when = leaf.not_valid_before_utc + dt.timedelta(seconds=1)

    names = [host] if name_matches and not _is_ip(host) else []
    names += ["exconn-probe" + s[1:] if s.startswith("*.") else s for s in sans]
    subject: x509.DNSName | None = None
    for name in names:
        try:
            subject = x509.DNSName(name)
            break
        except ValueError:
            continue
    failure = "certificate has no DNS subjectAltName"
    if subject is not None:
        try:
            verifier = (
                verification.PolicyBuilder()
                .store(verification.Store(roots))
                .time(when)
                .build_server_verifier(subject)
            )
            verifier.verify(leaf, issuers)
            return True, ""
        except verification.VerificationError as exc:
            failure = str(exc)
        except ValueError as exc:
            failure = f"cannot verify: {exc}"
        if in_validity or "validation time" not in failure:
            return False, _untrusted_detail(leaf, issuers, roots, failure)
    # The leaf is outside its validity period and an issuer was not valid at any moment of it (or
    # there is no SAN to verify under): fall back to following signatures alone.
    if _walk_signatures(leaf, issuers, roots)[0]:
        return True, ""
    return False, _untrusted_detail(leaf, issuers, roots, failure)


def _untrusted_detail(
    leaf: x509.Certificate, issuers: list[x509.Certificate], roots: list[x509.Certificate], failure: str
) -> str:
    reached, top = _walk_signatures(leaf, issuers, roots)
    if reached:
        return f"chain reaches a trusted root but breaks the Web PKI profile: {failure}"
    if top is leaf and leaf.issuer == leaf.subject:
        return f"self-signed certificate ({_rfc4514(leaf.subject)})"
    if top.issuer == top.subject:
        return f"chain ends at {_rfc4514(top.subject)}, a root that is not in the trust store"
    return f"issuer {_rfc4514(top.issuer)} is neither presented nor in the trust store"


def _walk_signatures(
    leaf: x509.Certificate, issuers: list[x509.Certificate], roots: list[x509.Certificate]
) -> tuple[bool, x509.Certificate]:
    """Follow issuer names and signatures from the leaf; (reached a trusted root, last cert)."""
    current = leaf
    pool = list(issuers)
    for _ in range(8):
        for root in roots:
            if root.subject == current.issuer and _issued_by(current, root):
                return True, current
        parent = next(
            (c for c in pool if c != current and c.subject == current.issuer and _issued_by(current, c)),
            None,
        )
        if parent is None:
            return False, current
        pool.remove(parent)
        current = parent
    return False, current


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _trust_store(ca_file: str | None) -> tuple[list[x509.Certificate], str | None]:
    if ca_file is not None:
        try:
            with open(ca_file, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return [], f"cannot read CA file {ca_file}: {_os_error(exc)}"
        certs = _load_pem_certs(data)
        if not certs:
            try:
                certs = [x509.load_der_x509_certificate(data)]
            except ValueError:
                return [], f"no certificate found in CA file {ca_file}"
        return certs, None
    paths = ssl.get_default_verify_paths()
    certs = []
    if paths.cafile:
        try:
            with open(paths.cafile, "rb") as fh:
                certs = _load_pem_certs(fh.read())
        except OSError:
            certs = []
    if not certs and paths.capath and os.path.isdir(paths.capath):
        for entry in sorted(os.listdir(paths.capath)):
            full = os.path.join(paths.capath, entry)
            if not os.path.isfile(full):
                continue
            try:
                with open(full, "rb") as fh:
                    certs.extend(_load_pem_certs(fh.read()))
            except OSError:
                continue
    if not certs:
        return [], "no system trust store found (pass ca_file)"
    return certs, None


def _load_pem_certs(data: bytes) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for block in _PEM_RE.findall(data):
        if block in seen:
            continue
        seen.add(block)
        try:
            with warnings.catch_warnings():  # legacy roots with non-positive serials still load
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            continue  # one unparsable root must not empty the store
    return certs


def _dns_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        return []
    return [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]


def _rfc4514(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return repr(name)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
