"""The MTA-STS policy fetch (RFC 8461 §3.3) from the scan's event loop.

`https://<host>/.well-known/mta-sts.txt` at an address our resolver gave, TLS with SNI and a
certificate valid for the host, one deadline for the whole fetch (a host that accepts and never
answers costs exactly that). The response is read whole, bounded (headers 64 KiB, the body one
byte past the policy limit), then parsed by http.client, so status, headers, Content-Length and
chunked bodies are judged by the standard library's parser; 3xx is never followed, only 200
`text/plain` UTF-8 is a policy.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from exconn.names import to_a_labels
from exconn.posture.errors import ProbeError

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
_FETCH_ERROR = "sts-policy-fetch-error"


@dataclass(frozen=True, slots=True)
class Fetch:
    status: str  # "ok" | "invalid" (the server answered wrongly) | "error" (could not observe)
    text: str | None
    errors: tuple[ProbeError, ...]


def policy_url(host: str, port: int) -> str:
    return f"https://{host}{POLICY_PATH}" if port == 443 else f"https://{host}:{port}{POLICY_PATH}"


async def fetch_policy(
    host: str, addresses: list[str], *, port: int, tls: ssl.SSLContext, timeout: float
) -> Fetch:
    """GET the policy from `host` at the first of `addresses` that takes a connection, within
    `timeout` seconds overall."""
    host = to_a_labels(host)  # as DNS, SNI and the Host header carry an IDN
    url = policy_url(host, port)
    deadline = time.monotonic() + timeout
    last: ProbeError | None = None
    for address in addresses:
        if deadline - time.monotonic() <= 0:
            break
        result = await _fetch_from(host, address, port, url, tls=tls, deadline=deadline)
        if isinstance(result, Fetch):
            return result
        last = result
        if "connect failed" not in result.detail:
            break  # only a refused/unreachable address is worth trying the next one for
    error = last or ProbeError(_FETCH_ERROR, f"{url}: no answer within {timeout:g}s")
    return Fetch("error", None, (error,))


def _webpki_error(host: str, exc: ssl.SSLCertVerificationError) -> ProbeError:
    code = exc.verify_code
    if code == 10:
        reason = "certificate expired"
    elif code == 62:
        reason = f"certificate not valid for {host}"
    else:
        reason = f"certificate not trusted ({exc.verify_message})"
    return ProbeError("sts-webpki-invalid", f"https://{host}{POLICY_PATH}: {reason}")


async def _fetch_from(
    host: str, address: str, port: int, url: str, *, tls: ssl.SSLContext, deadline: float
) -> Fetch | ProbeError:
    loop = asyncio.get_running_loop()
    transport: asyncio.Transport | None = None
    step = "connect"
    request = (
        f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host if port == 443 else f'{host}:{port}'}\r\n"
        "User-Agent: exconn-posture\r\nAccept: text/plain\r\nAccept-Encoding: identity\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")  # `host` is in A-labels (fetch_policy)
    answer = _Answer(loop.create_future())
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
            # Inside the try: out of file descriptors, or no IPv6 here, is this address's error.
            sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            # asyncio sets this only on sockets it makes itself: without it the request waits
            # behind the TLS Finished for its ACK (Nagle), one round trip more per fetch.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, (address, port))
            step = "TLS/HTTP"
            # The transport owns the socket from here on (and closes it).
            transport, _ = await loop.create_connection(
                lambda: answer, sock=sock, ssl=tls, server_hostname=host
            )
            transport.write(request)
            over = await answer.ended
    except ssl.SSLCertVerificationError as exc:
        return Fetch("invalid", None, (_webpki_error(host, exc),))
    except TimeoutError:
        return ProbeError(_FETCH_ERROR, f"{url} ({address}): no complete answer in time")
    except OSError as exc:
        return ProbeError(_FETCH_ERROR, f"{url} ({address}): {step} failed: {exc}")
    finally:
        if transport is not None:
            transport.abort()  # nothing more to say; a dead peer holds nothing open
        elif sock is not None:
            sock.close()
    data = bytes(answer.framing.data)
    if over == "head":
        detail = f"{url} ({address}): TLS/HTTP failed: response headers larger than {MAX_HEAD_BYTES} bytes"
        return ProbeError(_FETCH_ERROR, detail)
    try:
        return judge(_parse(data), url, too_big=over == "body")
    except http.client.HTTPException as exc:
        detail = f"{url} ({address}): TLS/HTTP failed: {type(exc).__name__}: {exc}"
        return ProbeError(_FETCH_ERROR, detail)


class _Answer(asyncio.Protocol):
    """The response as it arrives, straight into its `_Framing` (no stream buffer between): `ended`
    gets None at the peer's close or the end of a complete answer, or the bound passed ("head",
    "body"), or the connection's error."""

    def __init__(self, ended: asyncio.Future[str | None]) -> None:
        self.framing = _Framing()
        self.ended = ended

    def data_received(self, data: bytes) -> None:
        if not self.ended.done():
            verdict = self.framing.feed(data)
            if verdict is not None:
                self.ended.set_result(verdict or None)

    def eof_received(self) -> bool:
        if not self.ended.done():
            self.ended.set_result(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            if exc is None:
                self.ended.set_result(None)
            else:
                self.ended.set_exception(exc)
        if self.ended.done() and not self.ended.cancelled():
            self.ended.exception()  # retrieved: an error after the answer is nobody's concern


class _Framing:
    """Where the answer ends, learnt as bytes come: the head is read once (its status and framing),
    then only lengths are compared or chunk sizes walked, so each byte is looked at a bounded
    number of times however the peer splits its answer (linear cost, bounded memory)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._head_from = 0  # where the head being looked for begins (past any 1xx answer)
        self._body = -1  # where the final answer's body begins, once its head is read
        self._length: int | None = None
        self._chunked = False
        self._walked = 0  # chunked: where the next chunk-size line begins
        self._decoded = 0

    def feed(self, chunk: bytes) -> str | None:
        """None: read on. "": the answer is complete. "head"/"body": a bound was passed."""
        searched = max(len(self.data) - 3, self._head_from)
        self.data += chunk
        while self._body < 0:
            end = self.data.find(b"\r\n\r\n", searched)
            if end < 0 or end - self._head_from > MAX_HEAD_BYTES:
                return "head" if len(self.data) - self._head_from > MAX_HEAD_BYTES else None
            verdict = self._read_head(bytes(self.data[self._head_from : end]), end + 4)
            if verdict is not None:
                return verdict
            searched = self._head_from
        body = len(self.data) - self._body
        if self._chunked:
            return self._walk()
        if self._length is not None:
            return "" if body >= self._length else None
        return "body" if body > MAX_POLICY_BYTES else None  # delimited by the close

    def _read_head(self, head: bytes, body: int) -> str | None:
        lines = head.decode("latin-1").lower().split("\r\n")
        parts = lines[0].split(" ", 2)
        code = parts[1] if len(parts) > 1 else ""
        if code.startswith("1") and code != "101":
            self._head_from = body  # an interim answer (100 Continue): the final one follows
            return None
        if code != "200":
            return ""  # only the status and headers of anything but a policy are judged
        self._body = self._walked = body
        for field in lines[1:]:
            name, _, value = field.partition(":")
            name, value = name.strip(), value.strip()
            if name == "transfer-encoding" and "chunked" in value:
                self._chunked = True  # chunked takes precedence over any Content-Length
            elif name == "content-length" and value.isdigit() and self._length is None:
                self._length = int(value)
        if self._chunked:
            self._length = None
        if self._length is not None and self._length > MAX_POLICY_BYTES:
            return "body"  # declared too big: judged without waiting for it
        return None

    def _walk(self) -> str | None:
        data = self.data
        while True:
            line_end = data.find(b"\r\n", self._walked)
            if line_end < 0:
                return "body" if len(data) - self._walked > 1024 else None  # no size line is that long
            size_text = bytes(data[self._walked : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return ""  # malformed: http.client's parser says how
            if size == 0:  # the last chunk; the trailer section ends with an empty line
                if data[line_end + 2 : line_end + 4] == b"\r\n":
                    return ""
                trailer_end = data.find(b"\r\n\r\n", line_end)
                if trailer_end >= 0:
                    return ""
                return "head" if len(data) - line_end > MAX_HEAD_BYTES else None
            if self._decoded + size > MAX_POLICY_BYTES:
                return "body"
            following = line_end + 2 + size + 2
            if len(data) < following:
                return None  # the chunk is still coming: walked again from its size line
            self._decoded += size
            self._walked = following


class _Canned:
    """What http.client reads a response from: the bytes already received."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, *_args: Any, **_kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self._data)


def _parse(data: bytes) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(_Canned(data), method="GET")  # type: ignore[arg-type]
    response.begin()
    return response


def judge(response: http.client.HTTPResponse, url: str, *, too_big: bool = False) -> Fetch:
    """RFC 8461 §3.3 on a response: only a 200 `text/plain` UTF-8 body of at most 64 KiB is a
    policy; `too_big` says the body went past the limit before it was all read."""
    if 300 <= response.status < 400:
        location = response.getheader("Location") or "?"
        detail = f"{url}: HTTP {response.status} redirect to {location} not followed (RFC 8461 §3.3)"
        return Fetch("invalid", None, (ProbeError(_FETCH_ERROR, detail),))
    if response.status != 200:
        detail = f"{url}: HTTP {response.status} {response.reason}; only 200 is a policy (RFC 8461 §3.3)"
        return Fetch("invalid", None, (ProbeError(_FETCH_ERROR, detail),))
    length = None if response.chunked else response.getheader("Content-Length")  # chunked wins
    big = Fetch(
        "invalid", None, (ProbeError(_FETCH_ERROR, f"{url}: policy larger than {MAX_POLICY_BYTES} bytes"),)
    )
    if too_big or (length is not None and length.strip().isdigit() and int(length) > MAX_POLICY_BYTES):
        return big
    body = bytearray()
    while True:
        chunk = response.read(4096)
        if not chunk:
            break
        body += chunk
        if len(body) > MAX_POLICY_BYTES:
            return big
    declared = int(length) if length is not None and length.strip().isdigit() else None
    if declared is not None and len(body) < declared:  # http.client returns a short body as it is
        detail = f"{url}: TLS/HTTP failed: the answer ended after {len(body)} of its {declared} bytes"
        return Fetch("error", None, (ProbeError(_FETCH_ERROR, detail),))
    content_type = response.getheader("Content-Type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "text/plain":
        detail = f"{url}: Content-Type {content_type!r}, the policy must be text/plain (RFC 8461 §3.2)"
        return Fetch("invalid", None, (ProbeError("sts-policy-invalid", detail),))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Fetch(
            "invalid", None, (ProbeError("sts-policy-invalid", f"{url}: the policy is not UTF-8 text"),)
        )
    return Fetch("ok", text, ())
