"""Message tracking logs: which send connector carried mail to which recipient domains.

Fields come from the `#Fields:` header (2010 and 2013+ sets differ; a header may recur), so the
columns are looked up by name. `recipient-address` holds several addresses joined by `;`.
`Get-MessageTrackingLog | Export-Clixml` files carry the same events as objects.

Counting: distinct messages (message-id) of `SEND` events per recipient domain. A message sent to
three people at one domain counts once; a retry of the same message counts once as long as it
stays among the last `RECENT` messages seen (tracking logs are written in time order, and retries
come minutes apart), which keeps memory bounded. Intra-organisation hops never count; the
organisation's own domains (recipients of `DELIVER` events: mailboxes here) are dropped later,
when the aggregates are read, so that a domain seen delivered in another file is dropped too.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable

from exconn.clixml.objects import PSObject, PSValue
from exconn.clixml.reader import iter_clixml
from exconn.evidence.accumulate import Accumulator

INTRA_ORG = "intra-organization smtp send connector"
RECENT = 200_000


class TrackingReader:
    def __init__(self, acc: Accumulator, since: str | None) -> None:
        self.acc = acc
        self.since = since
        self.seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.index: dict[str, int] = {}
        self.bad = 0

    def header(self, line: str) -> None:
        if line.startswith("#Fields:"):
            names = [f.strip().lower() for f in line[8:].split(",")]
            self.index = {n: i for i, n in enumerate(names)}

    def event(
        self, when: str, event: str, source: str, connector: str, message_id: str, recipients: Iterable[str]
    ) -> None:
        if self.since and when[:10] < self.since:
            return
        event = event.upper()
        if event == "DELIVER":
            for r in recipients:
                domain = r.rpartition("@")[2].strip().lower()
                if domain:
                    self.acc.own_domains.add(domain)
            return
        if event != "SEND" or source.upper() != "SMTP":
            return
        connector = connector.strip()
        if not connector or connector.lower() == INTRA_ORG:
            return
        self.acc.tracking_connectors.add(connector)
        domains = {r.rpartition("@")[2].strip().lower().rstrip(".") for r in recipients if "@" in r}
        for domain in domains:
            if not domain:
                continue
            key = (message_id or f"{when}/{connector}", domain)
            if key in self.seen:
                self.acc.recipient(domain, connector, 0)
                continue
            self.seen[key] = None
            if len(self.seen) > RECENT:
                self.seen.popitem(last=False)
            self.acc.recipient(domain, connector, 1)

    def rows(self, lines: list[str]) -> None:
        if any(ln.startswith("#") for ln in lines):
            body: list[str] = []
            for ln in lines:
                if ln.startswith("#"):
                    self._rows(body)
                    body = []
                    self.header(ln)
                else:
                    body.append(ln)
            self._rows(body)
        else:
            self._rows(lines)

    def _rows(self, lines: list[str]) -> None:
        if not lines:
            return
        ix = self.index
        if not ix:
            self.bad += len(lines)
            return
        try:
            i_when, i_event, i_source = ix["date-time"], ix["event-id"], ix["source"]
            i_conn, i_msg, i_rcpt = ix["connector-id"], ix["message-id"], ix["recipient-address"]
        except KeyError:
            self.bad += len(lines)
            return
        width = len(ix)
        rows = list(csv.reader(lines))
        if len(rows) != len(lines):
            kept = [ln for ln in lines if not (ln.count('"') & 1)]
            self.bad += len(lines) - len(kept)
            rows = list(csv.reader(kept))
        for row in rows:
            if len(row) != width:
                self.bad += 1
                continue
            event = row[i_event]
            if event not in ("SEND", "DELIVER"):
                continue
            self.event(row[i_when], event, row[i_source], row[i_conn], row[i_msg], row[i_rcpt].split(";"))

    def close(self) -> None:
        self.acc.bad_lines += self.bad


TRACKING_TYPE = "MessageTrackingEvent"


def _text(value: PSValue) -> str:
    if isinstance(value, PSObject):
        return value.to_string or ("" if value.value is None else str(value.value))
    return "" if value is None else str(value)


def _when(value: PSValue) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return _text(value)


def _recipients(value: PSValue) -> list[str]:
    if isinstance(value, PSObject) and value.items is not None:
        return [_text(v) for v in value.items]
    return [r for r in _text(value).replace(",", ";").replace(" ", ";").split(";") if r]


def read_tracking_clixml(acc: Accumulator, path: str, since: str | None) -> None:
    """`Get-MessageTrackingLog | Export-Clixml` objects (live or deserialized): the same events."""
    reader = TrackingReader(acc, since)
    for obj in iter_clixml(path):
        if not isinstance(obj, PSObject) or not any(TRACKING_TYPE in t for t in obj.type_names):
            continue
        reader.event(
            _when(obj.get("Timestamp")),
            _text(obj.get("EventId")),
            _text(obj.get("Source")),
            _text(obj.get("ConnectorId")),
            _text(obj.get("MessageId")),
            _recipients(obj.get("Recipients")),
        )
    reader.close()


def looks_like_tracking_clixml(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head[:16384].decode("utf-16", "replace").encode()
    return b"<Objs" in head[:4096] and TRACKING_TYPE.encode() in head


def read_tracking_log(acc: Accumulator, chunks: Iterable[list[str]], since: str | None) -> None:
    reader = TrackingReader(acc, since)
    for lines in chunks:
        reader.rows(lines)
    reader.close()
