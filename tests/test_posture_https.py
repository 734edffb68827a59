"""The MTA-STS policy fetch (posture/https.py) against real TLS servers on loopback that answer in
ways nginx never does: a connection held open after a complete answer, chunked bodies, oversized
headers and bodies, a broken status line, a truncated body. Each ends with its own clear verdict,
and none waits for the timeout when the answer is already complete."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exconn.posture import https
from tests.servers.ca import IssuedCert, TestCA
from tests.servers.https import CannedTls

HOST = "mta-sts.canned.test"
POLICY = b"version: STSv1\nmode: enforce\nmx: mx.canned.test\nmax_age: 86400\n"
TIMEOUT = 3.0


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestCA, IssuedCert]]:
    ca = TestCA(Path(tmp_path_factory.mktemp("https-ca")))
    yield ca, ca.issue("canned", [HOST])


def _fetch(
    issued: tuple[TestCA, IssuedCert], response: bytes, *, keep_open: bool
) -> tuple[https.Fetch, float]:
    ca, cert = issued
    tls = ssl.create_default_context(cafile=str(ca.pem_path))
    server = CannedTls("127.0.0.1", cert, response, keep_open=keep_open)
    try:
        started = time.monotonic()
        fetched = asyncio.run(
            https.fetch_policy(HOST, ["127.0.0.1"], port=server.port, tls=tls, timeout=TIMEOUT)
        )
        return fetched, time.monotonic() - started
    finally:
        server.stop()


def _head(*fields: str, status: str = "200 OK") -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *fields]) + "\r\n\r\n").encode()


def _chunked(body: bytes, size: int) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_complete_answer_on_a_connection_held_open_ends_at_once(
    issued: tuple[TestCA, IssuedCert], framing: str
) -> None:
    if framing == "length":
        response = _head("Content-Type: text/plain", f"Content-Length: {len(POLICY)}") + POLICY
    else:
        response = _head("Content-Type: text/plain", "Transfer-Encoding: chunked") + _chunked(POLICY, 7)
    fetched, elapsed = _fetch(issued, response, keep_open=True)
    assert fetched.status == "ok" and fetched.text == POLICY.decode(), fetched
    assert elapsed < TIMEOUT / 2, elapsed


def test_an_answer_delimited_by_the_close_is_read_to_the_end(issued: tuple[TestCA, IssuedCert]) -> None:
    fetched, _ = _fetch(issued, _head("Content-Type: text/plain") + POLICY, keep_open=False)
    assert fetched.status == "ok" and fetched.text == POLICY.decode()


@pytest.mark.parametrize("keep_open", [False, True])
def test_a_chunked_body_past_the_limit_is_too_big(issued: tuple[TestCA, IssuedCert], keep_open: bool) -> None:
    body = b"x" * (https.MAX_POLICY_BYTES + 10)
    response = _head("Content-Type: text/plain", "Transfer-Encoding: chunked") + _chunked(body, 1000)
    fetched, elapsed = _fetch(issued, response, keep_open=keep_open)
    assert fetched.status == "invalid"
    assert "larger than 65536 bytes" in fetched.errors[0].detail, fetched.errors
    assert elapsed < TIMEOUT / 2, elapsed


def test_headers_past_the_limit_are_an_error_not_a_wait(issued: tuple[TestCA, IssuedCert]) -> None:
    response = b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * (https.MAX_HEAD_BYTES + 100)
    fetched, elapsed = _fetch(issued, response, keep_open=True)
    assert fetched.status == "error"
    assert "response headers larger than 65536 bytes" in fetched.errors[0].detail, fetched.errors
    assert elapsed < TIMEOUT / 2, elapsed


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (b"SMTP/1.0 220 hello\r\n\r\n", "BadStatusLine"),
        (
            _head("Content-Type: text/plain", "Content-Length: 500") + POLICY,
            f"ended after {len(POLICY)} of its 500",
        ),
        (b"", "RemoteDisconnected"),
    ],
    ids=["not-http", "truncated", "closed-at-once"],
)
def test_a_broken_answer_is_a_fetch_error(
    issued: tuple[TestCA, IssuedCert], response: bytes, fragment: str
) -> None:
    fetched, _ = _fetch(issued, response, keep_open=False)
    assert fetched.status == "error" and fetched.errors[0].type == "sts-policy-fetch-error"
    assert "TLS/HTTP failed" in fetched.errors[0].detail and fragment in fetched.errors[0].detail, (
        fetched.errors
    )


def test_a_refused_address_is_skipped_for_the_next(issued: tuple[TestCA, IssuedCert]) -> None:
    ca, cert = issued
    response = _head("Content-Type: text/plain", f"Content-Length: {len(POLICY)}") + POLICY
    server = CannedTls("127.0.0.1", cert, response, keep_open=False)
    try:
        tls = ssl.create_default_context(cafile=str(ca.pem_path))
        # 127.0.0.2 is loopback too, with nothing listening on that port: refused at once.
        fetched = asyncio.run(
            https.fetch_policy(HOST, ["127.0.0.2", "127.0.0.1"], port=server.port, tls=tls, timeout=TIMEOUT)
        )
    finally:
        server.stop()
    assert fetched.status == "ok", fetched


_HELD_OPEN = {
    "trailer": _head("Content-Type: text/plain", "Transfer-Encoding: chunked")
    + _chunked(POLICY, 9).removesuffix(b"0\r\n\r\n")
    + b"0\r\nX-Checksum: 1\r\n\r\n",
    "chunk-extension": _head("Content-Type: text/plain", "Transfer-Encoding: chunked")
    + _chunked(POLICY, 9).removesuffix(b"0\r\n\r\n")
    + b"0;done=1\r\n\r\n",
    "chunked-over-length": _head(
        "Content-Type: text/plain", "Content-Length: 99999", "Transfer-Encoding: chunked"
    )
    + _chunked(POLICY, 9),
    "interim-100": b"HTTP/1.1 100 Continue\r\n\r\n"
    + _head("Content-Type: text/plain", f"Content-Length: {len(POLICY)}")
    + POLICY,
}


@pytest.mark.parametrize("kind", sorted(_HELD_OPEN))
def test_less_common_framings_end_without_the_timeout(issued: tuple[TestCA, IssuedCert], kind: str) -> None:
    fetched, elapsed = _fetch(issued, _HELD_OPEN[kind], keep_open=True)
    assert fetched.status == "ok" and fetched.text == POLICY.decode(), fetched
    assert elapsed < TIMEOUT / 2, elapsed


def test_a_policy_under_the_limit_in_tiny_chunks_is_a_policy(issued: tuple[TestCA, IssuedCert]) -> None:
    """RFC 8461 §3.3 bounds the policy, not its chunk framing on the wire."""
    line = b"mx: mx%05d.canned.test\n"
    body = POLICY + b"".join(line % n for n in range(3000))[: https.MAX_POLICY_BYTES - len(POLICY)]
    response = _head("Content-Type: text/plain", "Transfer-Encoding: chunked") + _chunked(body, 16)
    fetched, _ = _fetch(issued, response, keep_open=False)
    assert fetched.status == "ok" and fetched.text is not None and len(fetched.text) == len(body), fetched


def test_a_declared_length_past_the_limit_is_judged_at_once(issued: tuple[TestCA, IssuedCert]) -> None:
    response = _head("Content-Type: text/plain", f"Content-Length: {https.MAX_POLICY_BYTES + 1}") + POLICY
    fetched, elapsed = _fetch(issued, response, keep_open=True)
    assert fetched.status == "invalid" and "larger than 65536" in fetched.errors[0].detail
    assert elapsed < TIMEOUT / 2, elapsed


def test_an_idn_policy_host_is_asked_for_in_a_labels(issued: tuple[TestCA, IssuedCert]) -> None:
    ca, _cert = issued
    cert = ca.issue("idn", ["mta-sts.xn--bcher-kva.test"])
    response = _head("Content-Type: text/plain", f"Content-Length: {len(POLICY)}") + POLICY
    server = CannedTls("127.0.0.1", cert, response, keep_open=False)
    try:
        tls = ssl.create_default_context(cafile=str(ca.pem_path))
        fetched = asyncio.run(
            https.fetch_policy(
                "mta-sts.bücher.test", ["127.0.0.1"], port=server.port, tls=tls, timeout=TIMEOUT
            )
        )
    finally:
        server.stop()
    assert fetched.status == "ok", fetched
