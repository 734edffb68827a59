"""Exchange SMTP protocol logs (receive and send): one state machine per session-id.

A line is `date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,
data,context`, CSV-quoted. Event `+` connects, `-` disconnects, `*` is information, `<` and `>` are
what was received and sent. On the receive side the remote is the client (`<` are its commands),
on the send side we are (`>` are ours); otherwise both sides read alike, so one machine reads both.

A session ends at `-`, or at the end of the file. Sessions are classified once (`tls`, `tls_failed`:
STARTTLS sent but the negotiation failed, `plaintext`: everything else, HELO included).

Known limits, on purpose: a session that spans an hourly log rollover counts once in each file
(Exchange starts the next file mid-session; joining them would need every open session of every
file in one place, which breaks the per-file reduction); a session's `last` is its `-` line, or,
for one cut off by the end of a file, the last line that changed its state.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable

from exconn.evidence.accumulate import Accumulator
from exconn.evidence.inputs import Lines

FIELDS = "date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"
OPEN_SESSION_LIMIT = 100_000  # sessions without a `-` line kept open at once; the oldest are closed

# The one-line layout of newer builds: "<subject> <issuer> <serial> <thumbprint> <not before>
# <not after> <SANs>". Subject and issuer are distinguished names with spaces and commas, so the
# line is read from its fixed tail.
_CERT_TAIL = re.compile(
    r"^\s*(?P<names>.*?)\s+(?P<serial>[0-9A-Fa-f]+)\s+(?P<thumb>[0-9A-Fa-f]{40})\s+"
    r"(?P<nb>\d{4}-\d\d-\d\dT\S+)\s+(?P<na>\d{4}-\d\d-\d\dT\S+)(?:\s+(?P<sans>\S*))?\s*$"
)
# Where the issuer starts: a space not after a comma, before an attribute type (`CN=`, `O=`, ...).
_ISSUER_START = re.compile(r"(?<!,) (?=[A-Za-z][A-Za-z0-9.]*=)")
_TLS_OK = re.compile(r"TLS protocol SP_PROT_(TLS|SSL)(\d)_(\d)?")
_COMMAND_STARTS = frozenset("EHSMRehsmr")  # EHLO HELO STARTTLS MAIL RCPT, any case
_REPLIES = frozenset(("250", "220", "454", "451", "530"))
_REFUSALS = ("530 5.7.0", "451 5.7.3", "454 4.7.5", "454 4.7.0")
_HEX = re.compile(r"[0-9A-Fa-f]{40}")
_ADDRESS = re.compile(r"<[^<>@]*@([^<>\s]+)>")


def split_names(names: str) -> tuple[str, str | None]:
    """Subject and issuer of the one-line layout (the issuer is None when only one name is there)."""
    m = _ISSUER_START.search(names)
    if not m:
        return names.strip(), None
    return names[: m.start()].strip(), names[m.end() :].strip()


def _endpoint_ip(endpoint: str) -> str:
    host, _, _port = endpoint.rpartition(":")
    return (host or endpoint).strip("[]")


def _tls_version(context: str) -> str | None:
    m = _TLS_OK.search(context)
    if not m:
        return None
    return f"{m.group(1)}{m.group(2)}.{m.group(3) or 0}"


class _Session:
    __slots__ = (
        "cert",
        "cert_parts",
        "connector",
        "ehlo",
        "first",
        "host",
        "last",
        "local_ip",
        "offered",
        "rcpt",
        "refusal",
        "remote_ip",
        "sender",
        "starttls",
        "state",
        "version",
    )

    def __init__(self, when: str, connector: str, local: str, remote: str) -> None:
        self.first = self.last = when
        self.connector = connector
        self.local_ip = _endpoint_ip(local)
        self.remote_ip = _endpoint_ip(remote)
        self.host: str | None = None
        self.ehlo = False  # an EHLO/HELO reply was seen
        self.offered = False
        self.starttls = False
        self.state = ""  # "", "tls", "failed"
        self.version: str | None = None
        self.cert: tuple[str, str, str | None, str | None] | None = None
        self.cert_parts: dict[str, str] | None = None
        self.rcpt: str | None = None
        self.refusal: str | None = None
        self.sender: str | None = None


class ProtocolLogReader:
    """Feed rows with `rows()`; `close()` finishes the sessions still open."""

    def __init__(self, acc: Accumulator, inbound: bool, since: str | None = None) -> None:
        self.acc = acc
        self.inbound = inbound
        self.since = since
        self.open: dict[str, _Session] = {}
        self.bad = 0
        # From the remote's side: which event character carries the client's commands.
        self.client_event = "<" if inbound else ">"

    def rows(self, rows: Iterable[list[str]]) -> int:
        """Feed rows; returns how many rows there were."""
        # This loop runs once per line of gigabytes of logs, and most lines (BDAT, QUIT, the 250
        # to each RCPT, ...) change nothing: the dispatch is inlined, the fields are unpacked
        # once (a wrong count raises, cheaper than checking every row's length), and a session's
        # `last` moves only on the lines that matter and on its `-` line.
        open_ = self.open
        get = open_.get
        client = self.client_event
        commands = _COMMAND_STARTS
        replies = _REPLIES
        n = 0
        for n, row in enumerate(rows, 1):  # noqa: B007 - n is the count returned
            try:
                when, connector, sid, _seq, local, remote, event, data, context = row
            except ValueError:
                if row and not row[0].startswith("#"):
                    self.bad += 1
                continue
            s = get(sid)
            if s is None:
                if event == "-" or when.startswith("#"):
                    continue
                if len(open_) >= OPEN_SESSION_LIMIT:
                    self._finish(open_.pop(next(iter(open_))))
                s = open_[sid] = _Session(when, connector, local, remote)
            if event == client:
                if data[:1] in commands:
                    s.last = when
                    self._command(s, data)
            elif event == "*":
                if context:
                    s.last = when
                    self._info(s, data, context)
            elif event == "-":
                s.last = when
                self._finish(open_.pop(sid))
            elif event != "+" and data[:3] in replies:
                s.last = when
                self._reply(s, data)
        return n

    def _command(self, s: _Session, data: str) -> None:
        verb = data[:4].upper()
        if verb == "EHLO" or verb == "HELO":
            if self.inbound and s.host is None:
                s.host = data[5:].strip() or None
        elif verb == "STAR" and data.upper().startswith("STARTTLS"):
            s.starttls = True
        elif verb == "RCPT":
            if s.rcpt is None:
                m = _ADDRESS.search(data)
                if m:
                    s.rcpt = m.group(1).lower().rstrip(".")
        elif verb == "MAIL" and s.sender is None:
            m = _ADDRESS.search(data)
            if m:
                s.sender = m.group(1).lower().rstrip(".")

    def _reply(self, s: _Session, data: str) -> None:
        code = data[:3]
        if code == "250":
            if not s.ehlo:
                s.ehlo = True
                if "STARTTLS" in data.upper() and not s.starttls:
                    s.offered = True
            elif not s.starttls and not s.offered and "STARTTLS" in data.upper():
                s.offered = True  # the send side logs the EHLO reply's lines one by one
        elif code == "220":
            if not self.inbound and s.host is None and not s.ehlo:
                parts = data[4:].split(None, 1)
                if parts:
                    s.host = parts[0].lower().rstrip(".")
        else:
            if data[:9] in _REFUSALS and s.refusal is None:
                s.refusal = data[:9]
            if code == "454" and s.starttls and s.state != "tls":
                s.state = "failed"

    def _info(self, s: _Session, data: str, context: str) -> None:
        c0 = context[:4]
        if c0 == "TLS ":
            if "negotiation succeeded" in context:
                s.state = "tls"
                s.version = _tls_version(context)
            elif "negotiation failed" in context and s.state != "tls":
                s.state = "failed"
        elif c0 == "Send" or c0 == "Rece" or c0 == "Remo":
            if "certificate" in context:
                m = _CERT_TAIL.match(data)
                if m:
                    subject, issuer = split_names(m.group("names"))
                    s.cert = (m.group("thumb").upper(), subject, issuer, _iso(m.group("na")))
                elif data.strip():
                    parts = s.cert_parts = s.cert_parts or {}
                    parts.setdefault("thumbprint", data.strip())
        elif c0 == "Cert":
            # The older layout: one line per property ("Certificate subject", "... thumbprint").
            parts = s.cert_parts = s.cert_parts or {}
            what = context[12:].strip().lower()
            if what == "subject":
                parts["subject"] = data
            elif what == "issuer name":
                parts["issuer"] = data
            elif what == "thumbprint":
                parts["thumbprint"] = data.strip()
            elif what in ("not after", "expiration date"):
                parts["not_after"] = data.strip()

    def _finish(self, s: _Session) -> None:
        if self.since and s.first[:10] < self.since:
            return
        if s.cert is None and s.cert_parts:
            p = s.cert_parts
            thumb = p.get("thumbprint", "")
            thumb = thumb.upper() if _HEX.fullmatch(thumb) else thumb or p.get("subject", "")
            if thumb:
                na = p.get("not_after")
                s.cert = (thumb, p.get("subject", ""), p.get("issuer"), _iso(na) if na else None)
        if s.state == "tls":
            outcome = "tls"
        elif s.starttls or s.state == "failed":
            outcome = "tls_failed"
        else:
            outcome = "plaintext"
        if self.inbound:
            server, _, _name = s.connector.partition("\\")
            server = server if _name else ""
            domain = s.sender.split("@")[-1] if s.sender else None
            key = ("inbound", server, s.connector, s.remote_ip, s.host, domain, s.local_ip)
            if server and s.local_ip:
                self.acc.local_addresses.setdefault(s.local_ip, server)
        else:
            key = ("outbound", s.local_ip, s.connector, s.remote_ip, s.host, s.rcpt, s.local_ip)
        self.acc.session(
            key,
            outcome,
            s.offered,
            s.ehlo,
            s.version if outcome == "tls" else None,
            s.cert,
            _iso(s.first),
            _iso(s.last),
            s.refusal,
        )

    def close(self) -> None:
        for s in self.open.values():
            self._finish(s)
        self.open.clear()
        self.acc.bad_lines += self.bad


def _iso(when: str) -> str:
    """Exchange writes `2023-01-11T15:59:51.433Z` already; keep it, fixing only a missing zone."""
    if when.endswith("Z") or "+" in when[10:]:
        return when
    return when + "Z"


def read_protocol_log(acc: Accumulator, lines: Lines, inbound: bool, since: str | None) -> None:
    """Read the lines of one protocol log. Header lines (`#...`) may also recur mid-stream, in
    logs concatenated by hand. A line with unbalanced quotes would make the CSV reader swallow the
    lines after it: such a line is dropped on its own, so nothing else breaks. Rows stream from
    the CSV reader into the state machine, never held as a list (that doubles the cost)."""
    reader = ProtocolLogReader(acc, inbound, since)
    for chunk in lines.chunks():
        if chunk and chunk[0].startswith("#"):
            chunk = [ln for ln in chunk if not ln.startswith("#")]
        if not lines.balanced:
            kept = [ln for ln in chunk if not (ln.count('"') & 1)]
            reader.bad += len(chunk) - len(kept)
            chunk = kept
        seen = reader.rows(csv.reader(chunk))
        if seen < len(chunk):
            # Two broken lines whose quotes pair up: the lines between them were swallowed.
            reader.bad += len(chunk) - seen
    reader.close()
