"""DNS questions over UDP straight from the wire: send now, read the answers when they are needed.

dnspython's `Resolver.resolve` costs ~0.8 ms of CPU per question on a DNSSEC (DO) answer, most of it
building a full `Message` (RRSIGs, authority, additional sections) that the posture never reads. A
scan asks six or more questions per domain under one GIL, so that CPU was the limit of the whole
run. Here a question is a few bytes built by hand, and only the answer section of a response is
read (the records of the type asked, through `dns.rdata.from_wire`).

Only the common answers are read here: NOERROR with or without records, and NXDOMAIN, without an
alias (CNAME/DNAME). `read_answer` returns None for anything else (truncation, SERVFAIL and every
other rcode, aliases, a malformed message) and the caller asks again through dnspython, which
classifies it (posture/dns.py `lookup`). A `Batch` of questions shares one socket, so a caller
sends A and AAAA (or TXT beside them) at once and collects both: `Pending` over a blocking socket
for a one-off lookup, the scan's event loop (posture/adns.py) over a non-blocking one.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

_TC, _AD = 0x0200, 0x0020
_CNAME, _DNAME, _OPT, _IN = 5, 39, 41, 1
_RDTYPES: dict[str, int] = {}


def _name_wire(name: str) -> bytes | None:
    """The wire form of a plain ASCII host name (no escapes), None for anything else: dnspython's
    `from_text` (~0.1 ms) then parses and judges it (IDNA, escapes, bad labels)."""
    if not name.isascii() or "\\" in name:
        return None
    labels = name.encode().split(b".")
    if labels[-1] == b"":
        labels.pop()
    if not labels or any(not 0 < len(label) < 64 for label in labels):
        return None
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    return wire if len(wire) <= 255 else None


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    rdtype: str
    qtype: int
    wire: bytes  # the question section: name, type, class

    @classmethod
    def make(cls, name: str, rdtype: str) -> Question:
        """Raises dnspython's name errors for a bad name (the caller's full path classifies them)."""
        qtype = _RDTYPES.get(rdtype)
        if qtype is None:
            qtype = _RDTYPES.setdefault(rdtype, int(dns.rdatatype.from_text(rdtype)))
        wire = _name_wire(name)
        if wire is None:
            wire = dns.name.from_text(name).to_wire() or b""
        return cls(name, rdtype, qtype, wire + struct.pack("!HH", qtype, _IN))

    @property
    def qname(self) -> dns.name.Name:
        return dns.name.from_wire(self.wire, 0)[0]


@dataclass(frozen=True, slots=True)
class Answer:
    status: str  # "ok" | "nodata" | "nxdomain"
    records: tuple[dns.rdata.Rdata, ...]
    authenticated: bool


@dataclass(frozen=True, slots=True)
class Header:
    """What goes into every query besides the question (from the resolver's configuration)."""

    flags: int
    edns: int  # -1: no OPT record
    payload: int
    ednsflags: int


class Batch:
    """Questions to a resolver: their queries (each its own id) and the responses matched so far,
    with the index of the server each came from.

    Transport-free: `Pending` drives it over a blocking socket, the scan's event loop (posture/adns.py)
    over a non-blocking one."""

    def __init__(self, questions: Sequence[Question], header: Header) -> None:
        self.questions = list(questions)
        self.wires: list[bytes | None] = [None] * len(self.questions)
        self.sources: list[int] = [0] * len(self.questions)  # which server answered (index)
        self._ids: dict[int, int] = {}
        self._queries: list[bytes] = []
        opt = b""
        if header.edns >= 0:
            opt = b"\x00" + struct.pack("!HHBBHH", _OPT, header.payload, 0, header.edns, header.ednsflags, 0)
        for index, question in enumerate(self.questions):
            ident = int.from_bytes(os.urandom(2), "big")
            while ident in self._ids:
                ident = (ident + 1) & 0xFFFF
            self._ids[ident] = index
            counts = struct.pack("!6H", ident, header.flags, 1, 0, 0, 1 if opt else 0)
            self._queries.append(counts + question.wire + opt)

    @property
    def complete(self) -> bool:
        return None not in self.wires

    def send(self, sock: socket.socket) -> None:
        """(Re)send every unanswered query on `sock` (connected to the server)."""
        for query, wire in zip(self._queries, self.wires, strict=True):
            if wire is None:
                sock.send(query)

    def match(self, wire: bytes, source: int = 0) -> None:
        """Keep `wire` if it answers one of ours: our id, a response, our question (any case);
        `source` says which server it came from (the index of the caller's list)."""
        if len(wire) < 12 or not wire[2] & 0x80 or wire[4:6] != b"\x00\x01":
            return
        index = self._ids.get(int.from_bytes(wire[:2], "big"))
        if index is None:
            return
        question = self.questions[index].wire
        if self.wires[index] is None and wire[12 : 12 + len(question)].lower() == question.lower():
            self.wires[index], self.sources[index] = wire, source


def connected_socket(server: str, port: int) -> socket.socket:
    """A UDP socket connected to the server: the kernel drops datagrams from anyone else."""
    sock = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((server, port))
    except OSError:
        sock.close()
        raise
    return sock


class Pending:
    """A `Batch` sent on one blocking socket now; `collect` reads its answers.

    Unanswered questions are sent again every `attempt` seconds until `end` (time.monotonic()).
    """

    def __init__(
        self,
        server: str,
        port: int,
        batch: Batch,
        attempt: float,
        end: float,
    ) -> None:
        self.batch = batch
        self.server, self.port = server, port
        self.questions = self.batch.questions
        self.started, self.end, self.attempt = time.monotonic(), end, attempt
        self.failed = False  # a socket error: the unanswered go the full path
        self._sock: socket.socket | None = None
        try:
            self._sock = connected_socket(server, port)
            self._send()
        except OSError:
            self.failed = True
            self.close()

    def _send(self) -> None:
        assert self._sock is not None
        self.batch.send(self._sock)
        self._resend_at = time.monotonic() + self.attempt

    def collect(self) -> list[bytes | None]:
        """The response to each question, None where none came by `end` (or the socket failed)."""
        sock, batch = self._sock, self.batch
        try:
            if sock is not None:  # what came while the caller was busy counts, even past `end`
                sock.setblocking(False)
                while not batch.complete:
                    try:
                        batch.match(sock.recv(65535))
                    except BlockingIOError:
                        break
            while sock is not None and not batch.complete:
                now = time.monotonic()
                if now >= self.end:
                    break
                if now >= self._resend_at:
                    self._send()
                sock.settimeout(max(min(self.end, self._resend_at) - now, 0.0001))
                try:
                    wire = sock.recv(65535)
                except TimeoutError:
                    continue
                batch.match(wire)
        except OSError:
            self.failed = True
        finally:
            self.close()
        return batch.wires

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __del__(self) -> None:  # a caller that never collects leaks no socket
        self.close()


def _skip_name(wire: bytes, offset: int) -> int:
    while True:
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length >= 0xC0:
            return offset + 2
        offset += length + 1


def read_answer(wire: bytes, question: Question) -> Answer | None:
    """The answer in `wire` when it is a common one (see the module docstring), else None."""
    try:
        _ident, flags, _qd, ancount, _ns, _ar = struct.unpack_from("!6H", wire)
        if flags & _TC:
            return None  # the full path retries over TCP
        rcode = flags & 0x000F
        authenticated = bool(flags & _AD)
        if rcode == dns.rcode.NXDOMAIN and ancount == 0:
            return Answer("nxdomain", (), authenticated)
        if rcode != dns.rcode.NOERROR:
            return None
        offset = 12 + len(question.wire)
        records: list[dns.rdata.Rdata] = []
        for _ in range(ancount):
            owner = offset
            offset = _skip_name(wire, offset)
            rrtype, rrclass, _ttl, rdlen = struct.unpack_from("!HHIH", wire, offset)
            offset += 10
            if rrtype in (_CNAME, _DNAME):
                return None  # aliases: the full path follows (and names) them
            if rrtype == question.qtype and rrclass == _IN:
                if (
                    wire[owner : owner + 2] != b"\xc0\x0c"
                    and dns.name.from_wire(wire, owner)[0] != question.qname
                ):
                    return None
                rdtype = dns.rdatatype.RdataType(question.qtype)
                record = dns.rdata.from_wire(dns.rdataclass.IN, rdtype, wire, offset, rdlen)
                if record not in records:  # an rrset holds each record once
                    records.append(record)
            offset += rdlen
    except (IndexError, struct.error, dns.exception.DNSException):
        return None  # malformed: let dnspython say what it is
    return Answer("ok" if records else "nodata", tuple(records), authenticated)
