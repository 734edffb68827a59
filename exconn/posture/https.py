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
import ssl
import time
from dataclasses import dataclass
from typing import Any

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
    writer: asyncio.StreamWriter | None = None
    step = "connect"
    request = (
        f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host if port == 443 else f'{host}:{port}'}\r\n"
        "User-Agent: exconn-posture\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
            reader, writer = await asyncio.open_connection(address, port)
            step = "TLS/HTTP"
            await writer.start_tls(tls, server_hostname=host)
            writer.write(request)
            data, over = await _read_response(reader)
    except ssl.SSLCertVerificationError as exc:
        return Fetch("invalid", None, (_webpki_error(host, exc),))
    except TimeoutError:
        return ProbeError(_FETCH_ERROR, f"{url} ({address}): no complete answer in time")
    except OSError as exc:
        return ProbeError(_FETCH_ERROR, f"{url} ({address}): {step} failed: {exc}")
    finally:
        if writer is not None:
            writer.transport.abort()  # nothing more to say; a dead peer holds nothing open
    if over == "head":
        detail = f"{url} ({address}): TLS/HTTP failed: response headers larger than {MAX_HEAD_BYTES} bytes"
        return ProbeError(_FETCH_ERROR, detail)
    try:
        return judge(_parse(data), url, too_big=over == "body")
    except http.client.HTTPException as exc:
        detail = f"{url} ({address}): TLS/HTTP failed: {type(exc).__name__}: {exc}"
        return ProbeError(_FETCH_ERROR, detail)


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
    """The response's bytes, up to the peer's close or the end of a complete answer; the second
    item says which bound was passed ("head", "body"), if any."""
    data = bytearray()
    head_end = -1
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return bytes(data), None
        searched = max(len(data) - 3, 0)
        data += chunk
        if head_end < 0:
            head_end = data.find(b"\r\n\r\n", searched)
            if head_end < 0:
                if len(data) > MAX_HEAD_BYTES:
                    return bytes(data), "head"
                continue
        if len(data) - head_end - 4 > MAX_POLICY_BYTES + 4096:  # chunk framing included
            return bytes(data), "body"
        if _complete(data, head_end):
            return bytes(data), None


def _complete(data: bytearray, head_end: int) -> bool:
    """Whether a server that keeps the connection open has sent all of its answer already."""
    head = bytes(data[:head_end]).decode("latin-1").lower()
    status_line, _, fields = head.partition("\r\n")
    if not status_line.startswith("http/1.1 200") and not status_line.startswith("http/1.0 200"):
        return True  # only the status and headers of anything but a policy are judged
    body = len(data) - head_end - 4
    for field in fields.split("\r\n"):
        name, _, value = field.partition(":")
        name, value = name.strip(), value.strip()
        if name == "content-length" and value.isdigit():
            return body >= int(value)
        if name == "transfer-encoding" and "chunked" in value:
            return data.endswith(b"\r\n0\r\n\r\n")
    return False  # delimited by the close


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
    length = response.getheader("Content-Length")
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
