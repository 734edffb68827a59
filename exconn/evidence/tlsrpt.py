"""TLS-RPT aggregate reports (RFC 8460 §4): JSON, gzipped JSON, the mails that carry them, mboxes.

Real reporters bend the format, and each bend must read:
- Microsoft writes date-times without a time zone (read as UTC), failure details without
  `sending-mta-ip` or `receiving-mx-hostname`, a `tlsa` `policy-string` holding ONE string that is
  a JSON-encoded array, and summary-only policies (no `failure-details`);
- Google sends a daily `no-policy-found` report; some reporters omit `policy-domain` there;
- `end-datetime` may be midnight of the next day (Mail.ru): kept as written, not "fixed".
A report with wrong types is refused whole with one line naming the field; other reports go on.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import zlib
from collections.abc import Iterator
from email.message import Message
from typing import Any, BinaryIO

from exconn.evidence.accumulate import Accumulator
from exconn.evidence.inputs import CHUNK
from exconn.evidence.model import TlsFailure, TlsReport

REPORT_LIMIT = 64 * 2**20  # one report's JSON (and one mail of an mbox), decompressed
MAIL_LIMIT = 64 * 2**20
TLSRPT_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json")


class ReportError(ValueError):
    """A report exconn cannot read: the message says which field is wrong."""


def _str(obj: dict[str, Any], name: str, where: str, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ReportError(f"{where}: `{name}` is missing")
        return None
    if not isinstance(value, str):
        raise ReportError(f"{where}: `{name}` is {type(value).__name__}, not a string")
    return value


def _int(obj: dict[str, Any], name: str, where: str) -> int:
    value = obj.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportError(f"{where}: `{name}` is {value!r}, not a count")
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(f"{where} is {type(value).__name__}, not an object")
    return value


def utc_time(text: str, where: str) -> str:
    """ISO 8601 UTC (`...Z`); a date-time without zone (Microsoft) is read as UTC."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{where}: {text!r} is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _policy_strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportError(f"{where}: `policy-string` is not a list of strings")
    if len(value) == 1 and value[0].lstrip().startswith("["):
        # Microsoft's tlsa policy: one string holding a JSON-encoded array of the records.
        try:
            inner = json.loads(value[0])
        except ValueError:
            inner = None
        if isinstance(inner, list) and all(isinstance(v, str) for v in inner):
            return tuple(inner)
    return tuple(value)


def parse_report(doc: Any) -> list[TlsReport]:
    """The policies of one report document. Raises ReportError."""
    report = _obj(doc, "the report")
    org = _str(report, "organization-name", "report") or ""
    report_id = _str(report, "report-id", "report") or ""
    rng = _obj(report.get("date-range"), "`date-range`")
    start = utc_time(_str(rng, "start-datetime", "date-range") or "", "start-datetime")
    end = utc_time(_str(rng, "end-datetime", "date-range") or "", "end-datetime")
    policies = report.get("policies", [])
    if not isinstance(policies, list):
        raise ReportError("`policies` is not a list")
    out = []
    for n, entry in enumerate(policies, 1):
        where = f"policy {n}"
        entry = _obj(entry, where)
        policy = _obj(entry.get("policy"), f"{where} `policy`")
        summary = _obj(entry.get("summary", {}), f"{where} `summary`")
        ptype = _str(policy, "policy-type", where) or ""
        domain = _str(policy, "policy-domain", where, required=False)
        mx = policy.get("mx-host", [])
        if isinstance(mx, str):
            mx = [mx]
        if not isinstance(mx, list) or not all(isinstance(m, str) for m in mx):
            raise ReportError(f"{where}: `mx-host` is not a list of names")
        details = entry.get("failure-details", [])
        if not isinstance(details, list):
            raise ReportError(f"{where}: `failure-details` is not a list")
        failures = []
        for k, d in enumerate(details, 1):
            dw = f"{where} failure {k}"
            d = _obj(d, dw)
            failures.append(
                TlsFailure(
                    result_type=_str(d, "result-type", dw) or "",
                    receiving_mx_hostname=_lower(_str(d, "receiving-mx-hostname", dw, required=False)),
                    receiving_ip=_str(d, "receiving-ip", dw, required=False),
                    sending_mta_ip=_str(d, "sending-mta-ip", dw, required=False),
                    failure_reason_code=_str(d, "failure-reason-code", dw, required=False),
                    count=_int(d, "failed-session-count", dw),
                )
            )
        out.append(
            TlsReport(
                organization=org,
                report_id=report_id,
                start=start,
                end=end,
                policy_domain=_lower(domain),
                policy_type=ptype,
                policy_strings=_policy_strings(policy.get("policy-string"), where),
                mx_hosts=tuple(m.lower() for m in mx),
                successful=_int(summary, "total-successful-session-count", where),
                failed=_int(summary, "total-failure-session-count", where),
                failures=tuple(failures),
            )
        )
    return out


def _lower(text: str | None) -> str | None:
    return text.lower().rstrip(".") if text else text


def _load_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"not JSON: {exc}") from None


def gunzip_bytes(data: bytes, limit: int = REPORT_LIMIT) -> bytes:
    """Decompress one small gzip blob, refusing more than `limit` bytes (a bomb) or a truncation."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ReportError(f"broken gzip: {exc}") from None
    if len(out) > limit:
        raise ReportError(f"expands past {limit // 2**20} MiB (a compression bomb?)")
    if not d.eof:
        raise ReportError("truncated gzip")
    return out


def read_json_stream(acc: Accumulator, stream: BinaryIO, head: bytes, since: str | None) -> None:
    data = head + stream.read(REPORT_LIMIT + 1 - len(head))
    if len(data) > REPORT_LIMIT:
        raise ReportError(f"larger than {REPORT_LIMIT // 2**20} MiB, too large for a report")
    _add(acc, parse_report(_load_json(data)), since)


def _add(acc: Accumulator, reports: list[TlsReport], since: str | None) -> None:
    for r in reports:
        if since and r.end[:10] < since:
            continue
        acc.report(r)


def reports_in_mail(msg: Message) -> Iterator[bytes]:
    """The JSON documents a report mail carries (gzipped or not)."""
    for part in msg.walk():
        ctype = part.get_content_type()
        name = (part.get_filename() or "").lower()
        if ctype in TLSRPT_TYPES or (
            ctype in ("application/gzip", "application/json", "application/octet-stream")
            and (name.endswith(".json") or name.endswith(".json.gz"))
        ):
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            yield gunzip_bytes(payload) if payload[:2] == b"\x1f\x8b" else payload


def read_mail_bytes(acc: Accumulator, data: bytes, since: str | None) -> int:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    found = 0
    for doc in reports_in_mail(msg):
        _add(acc, parse_report(_load_json(doc)), since)
        found += 1
    return found


def read_mail_stream(acc: Accumulator, stream: BinaryIO, head: bytes, since: str | None, name: str) -> None:
    """One mail (.eml), or an mbox of many: each mail's reports; a broken mail is one note."""
    buf = io.BufferedReader(_Prefixed(head, stream), CHUNK)
    mbox = head.startswith(b"From ")
    count = 0
    for n, mail in enumerate(_mails(buf, mbox), 1):
        try:
            count += read_mail_bytes(acc, mail, since)
        except ReportError as exc:
            acc.note(f"{name}: mail {n}: {exc}" if mbox else f"{name}: {exc}")
    if count == 0 and not mbox:
        acc.note(f"{name}: a mail without a TLS-RPT report attached")


def _mails(stream: BinaryIO, mbox: bool) -> Iterator[bytes]:
    if not mbox:
        data = stream.read(MAIL_LIMIT + 1)
        if len(data) > MAIL_LIMIT:
            raise ReportError(f"a mail larger than {MAIL_LIMIT // 2**20} MiB")
        yield data
        return
    parts: list[bytes] = []
    size = 0
    for line in iter(lambda: stream.readline(1 << 20), b""):
        if line.startswith(b"From ") and parts:
            yield b"".join(parts)
            parts, size = [], 0
            continue
        if line.startswith(b"From ") and not parts:
            continue
        if size <= MAIL_LIMIT:
            # mboxrd quoting: ">From " at the start of a body line was "From ".
            parts.append(line[1:] if line.startswith(b">From ") else line)
            size += len(line)
    if parts:
        yield b"".join(parts)


class _Prefixed(io.RawIOBase):
    """A stream that first gives back the bytes already read for recognition."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def looks_like_report(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and (b'"policies"' in head or b'"organization-name"' in head)


def looks_like_mail(head: bytes) -> bool:
    if head.startswith(b"From "):
        return True  # an mbox: the rua mailbox
    low = head.lower()
    return (b"\nsubject:" in low or low.startswith(b"return-path:")) and (
        b"tlsrpt" in low or b"tls-report" in low
    )
