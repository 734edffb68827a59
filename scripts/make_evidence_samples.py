#!/usr/bin/env python3
# ruff: noqa: E501 - log lines and the README template read better unwrapped
"""Generate `samples/fabrikam-evidence/`: a week-end of Fabrikam's logs and reports, as exconn reads them.

Deterministic (a fixed seed and fixed times: re-running gives byte-identical files), and consistent
with the organisation in `samples/fabrikam/`, which this script READS for connector names, servers,
address spaces, smart hosts and certificates (so renaming a partner domain there carries over):

- EX02's `Default Frontend EX02` presents the expired Sectigo certificate its TlsCertificateName
  names (2024-11-30) in every TLS session of EX02's receive log; EX01 presents the valid one;
- `Legacy Scanner Relay` (IgnoreSTARTTLS) sends in plaintext to its smart host although the smart
  host offers STARTTLS; the scanners deliver to `Relay EX02` with HELO, in plaintext;
- a Microsoft TLS-RPT report with its quirks (date-times without zone, no sending-mta-ip) counts
  certificate-expired failures at EX02's public address; Google's reports arrive as mails in an mbox;
- an IIS log of mta-sts.fabrikam.com shows Google (by user agent), Microsoft and Yahoo (by address)
  and an unknown curl fetching the policy, with a `#Fields:` change mid-file;
- `Outbound to Office 365` carries mail in the tracking logs but has no protocol log (logging None).

    python scripts/make_evidence_samples.py [OUTPUT_DIR]   # default: samples/fabrikam-evidence
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exconn.model import CertificateName, ExchangeCertificate, Organization  # noqa: E402 - after the sys.path tweak
from exconn.sources.files import load  # noqa: E402

SEED = 20250530
DAYS = (dt.date(2025, 5, 30), dt.date(2025, 5, 31))
# Addresses of the made-up network (documentation ranges): internal, then the public NAT of each MX.
LOCAL_IP = {"EX01": "10.0.0.11", "EX02": "10.0.0.12"}
PUBLIC_IP = {"EX01": "198.51.100.25", "EX02": "198.51.100.26"}
MX_HOST = "mail.fabrikam.com"
POLICY_HOST = "mta-sts.fabrikam.com"
SCANNER_IPS = ("10.20.30.41", "10.20.30.42")
# Internet peers invented here (Microsoft's fictitious companies; adjust freely): senders and
# recipients that no connector names.
GMAIL = (
    "gmail.com",
    "gmail-smtp-in.l.google.com",
    "142.250.102.27",
    "mail-ej1-f41.google.com",
    "209.85.218.41",
)
EOP = (
    "outlook.com",
    "outlook-com.olc.protection.outlook.com",
    "52.101.68.1",
    "mail-db8eur05on2101.outbound.protection.outlook.com",
    "40.107.22.101",
)
NO_TLS = ("northwindtraders.com", "mail.northwindtraders.com", "192.0.2.80")
TLS_BROKEN = ("adventure-works.com", "mx1.adventure-works.com", "192.0.2.90")
SMALL_SENDER = ("wingtiptoys.com", "smtp.wingtiptoys.com", "192.0.2.120")

FIELDS = "date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"
TLS_SERVER = "TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 with strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with strength 384 bits"
TLS_CLIENT = TLS_SERVER.replace("_SERVER", "_CLIENT")
GTS_ISSUER = "CN=WR2, O=Google Trust Services, C=US"
LE_ISSUER = "CN=R10, O=Let's Encrypt, C=US"
SENDING_CERT = "Sending certificate Subject Issuer name Serial number Thumbprint Not before Not after Subject alternate names"


class Rng:
    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)  # noqa: S311 - sample data

    def sid(self) -> str:
        return f"08DD{self._r.getrandbits(48):012X}"

    def port(self) -> int:
        return self._r.randrange(20000, 65000)

    def pick(self, n: int) -> int:
        return self._r.randrange(n)


def _csv(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if ("," in value or '"' in value) else value


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def header(kind: str, when: dt.datetime) -> list[str]:
    return [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.02.1544.004",
        f"#Log-type: {kind}",
        f"#Date: {_stamp(when)}",
        f"#Fields: {FIELDS}",
    ]


def cert_line(c: ExchangeCertificate) -> str:
    """The one-line layout of newer builds: subject, issuer, serial, thumbprint, validity, SANs."""
    assert isinstance(c.not_after, dt.datetime) and isinstance(c.not_before, dt.datetime)
    sans = ";".join(c.certificate_domains) if isinstance(c.certificate_domains, tuple) else ""
    serial = c.thumbprint[:32]
    return (
        f" {c.subject} {c.issuer} {serial} {c.thumbprint} {_stamp(c.not_before)} {_stamp(c.not_after)} {sans}"
    )


@dataclass
class Writer:
    """Lines of one protocol log, a session at a time (events, data, context)."""

    rng: Rng
    lines: list[str]

    def session(
        self,
        connector: str,
        local: str,
        remote: str,
        start: dt.datetime,
        events: Sequence[tuple[str, str, str]],
    ) -> None:
        sid = self.rng.sid()
        when = start
        for n, (event, data, context) in enumerate(events):
            self.lines.append(
                f"{_stamp(when)},{_csv(connector)},{sid},{n},{local},{remote},{event},{_csv(data)},{_csv(context)}"
            )
            when += dt.timedelta(milliseconds=7 + 3 * (n % 5))


def inbound(
    w: Writer,
    connector: str,
    server: str,
    ip: str,
    ehlo: str,
    sender: str,
    rcpt: str,
    start: dt.datetime,
    cert: ExchangeCertificate | None,
    *,
    helo: bool = False,
) -> None:
    local = f"{LOCAL_IP[server]}:25"
    remote = f"{ip}:{w.rng.port()}"
    me = MX_HOST if cert is not None else f"{server.lower()}.corp.fabrikam.com"
    ev: list[tuple[str, str, str]] = [
        ("+", "", ""),
        (">", f"220 {me} Microsoft ESMTP MAIL Service ready at {start:%a, %d %b %Y %H:%M:%S} +0000", ""),
    ]
    if helo:
        ev += [("<", f"HELO {ehlo}", ""), (">", f"250 {me} Hello [{ip}]", "")]
    else:
        offer = " STARTTLS" if cert is not None else ""
        ev += [
            ("<", f"EHLO {ehlo}", ""),
            (
                ">",
                f"250  {me} Hello [{ip}] SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES{offer} 8BITMIME BINARYMIME CHUNKING",
                "",
            ),
        ]
        if cert is not None:
            ev += [
                ("<", "STARTTLS", ""),
                (">", "220 2.0.0 SMTP server ready", ""),
                ("*", cert_line(cert), SENDING_CERT),
                ("*", "", TLS_SERVER),
                ("<", f"EHLO {ehlo}", ""),
            ]
    ev += [("<", f"MAIL FROM:<{sender}> SIZE=20480", ""), ("<", f"RCPT TO:<{rcpt}>", ""), ("<", "BDAT 20480 LAST", ""),
           (">", "250 2.6.0 Queued mail for delivery", ""), ("<", "QUIT", ""), (">", "221 2.0.0 Service closing transmission channel", ""), ("-", "", "Local")]  # fmt: skip
    w.session(connector, local, remote, start, ev)


def outbound(
    w: Writer,
    connector: str,
    server: str,
    ip: str,
    port: int,
    mx: str,
    rcpt: str,
    start: dt.datetime,
    *,
    offers: bool,
    sends_starttls: bool,
    tls_ok: bool = True,
    remote_cert: str | None = None,
    auth: bool = False,
) -> None:
    local = f"{LOCAL_IP[server]}:{w.rng.port()}"
    remote = f"{ip}:{port}"
    ev: list[tuple[str, str, str]] = [
        ("*", "", f"attempting to connect. {mx}"),
        ("+", "", ""),
        ("<", f"220 {mx} ESMTP ready", ""),
        (">", f"EHLO {MX_HOST}", ""),
    ]
    ev += [("<", f"250-{mx} Hello [{PUBLIC_IP[server]}]", ""), ("<", "250-SIZE 52428800", "")]
    if offers:
        ev.append(("<", "250-STARTTLS", ""))
    ev.append(("<", "250 AUTH LOGIN PLAIN" if auth else "250 8BITMIME", ""))
    if offers and sends_starttls:
        ev += [(">", "STARTTLS", ""), ("<", "220 2.0.0 Ready to start TLS", "")]
        if tls_ok:
            if remote_cert:
                # The send side's older layout: one line per property of the remote certificate.
                thumb = hashlib.sha1(remote_cert.encode()).hexdigest().upper()  # noqa: S324 - a made-up thumbprint
                ev += [("*", remote_cert, "Certificate subject"), ("*", GTS_ISSUER if "google" in mx else LE_ISSUER, "Certificate issuer name"),
                       ("*", thumb[:32], "Certificate serial number"), ("*", thumb, "Certificate thumbprint"),
                       ("*", mx, "Certificate alternate names"),
                       ("*", "", TLS_CLIENT), (">", f"EHLO {MX_HOST}", ""), ("<", f"250 {mx} Hello", "")]  # fmt: skip
            else:
                ev += [("*", "", TLS_CLIENT), (">", f"EHLO {MX_HOST}", ""), ("<", f"250 {mx} Hello", "")]
        else:
            ev += [("*", "", "TLS negotiation failed with error IllegalMessage"), ("-", "", "Local")]
            w.session(connector, local, remote, start, ev)
            return
    if auth:
        ev += [
            (">", "AUTH LOGIN", ""),
            ("<", "334 <authentication response>", ""),
            (">", "<authentication response>", ""),
            ("<", "235 2.7.0 Authentication successful", ""),
        ]
    ev += [(">", "MAIL FROM:<noreply@fabrikam.com> SIZE=20480", ""), (">", f"RCPT TO:<{rcpt}>", ""), ("<", "250 2.1.5 OK", ""),
           (">", "BDAT 20480 LAST", ""), ("<", "250 2.0.0 OK", ""), (">", "QUIT", ""), ("<", "221 2.0.0 closing connection", ""), ("-", "", "Local")]  # fmt: skip
    w.session(connector, local, remote, start, ev)


@dataclass
class Org:
    send: dict[str, tuple[str | None, str | None, int]]  # name -> (domain, smart host, port)
    certs: dict[str, ExchangeCertificate]  # receive connector -> the certificate its TlsCertificateName names
    receive: dict[str, list[str]]  # server -> receive connector identities
    contoso_ips: tuple[str, ...]


def read_org(folder: Path) -> Org:
    o: Organization = load([folder])
    send: dict[str, tuple[str | None, str | None, int]] = {}
    for c in o.send_connectors:
        spaces = c.address_spaces if isinstance(c.address_spaces, tuple) else ()
        domain = next((a.domain for a in spaces if a.domain), None)
        hosts = c.smart_hosts if isinstance(c.smart_hosts, tuple) else ()
        send[c.name] = (domain, hosts[0] if hosts else None, c.port if isinstance(c.port, int) else 25)
    certs: dict[str, ExchangeCertificate] = {}
    receive: dict[str, list[str]] = {}
    contoso: tuple[str, ...] = ()
    for r in o.receive_connectors:
        server = str(r.server)
        receive.setdefault(server, []).append(r.identity)
        name = r.tls_certificate_name
        if isinstance(name, CertificateName):
            certs[r.identity] = next(
                c
                for c in o.certificates
                if c.server == server and c.issuer == name.issuer and c.subject == name.subject
            )
        if r.name.startswith("Partner") and isinstance(r.remote_ip_ranges, tuple):
            contoso = tuple(x.raw for x in r.remote_ip_ranges)
    return Org(send, certs, receive, contoso)


def _connector(org: Org, prefix: str) -> str:
    return next(n for n in org.send if n.startswith(prefix))


def protocol_logs(
    org: Org, rng: Rng, day: dt.date, server: str
) -> tuple[list[str], list[str], list[tuple[dt.datetime, str, str, str]]]:
    """Receive lines, send lines, and the SEND tracking events (time, connector, message-id, recipient)."""
    t0 = dt.datetime.combine(day, dt.time(6, 0), dt.UTC)
    recv = Writer(rng, header("SMTP Receive Protocol Log", t0))
    send = Writer(rng, header("SMTP Send Protocol Log", t0))
    sent: list[tuple[dt.datetime, str, str, str]] = []
    front = f"{server}\\Default Frontend {server}"
    cert = org.certs[front]
    for i in range(12):
        when = t0 + dt.timedelta(minutes=37 * i)
        if i % 3 == 0:
            inbound(
                recv, front, server, EOP[4], EOP[3], f"user{i}@{EOP[0]}", "sales@fabrikam.com", when, cert
            )
        elif i % 3 == 1:
            inbound(
                recv,
                front,
                server,
                GMAIL[4],
                GMAIL[3],
                f"someone{i}@{GMAIL[0]}",
                "info@fabrikam.com",
                when,
                cert,
            )
        else:
            inbound(
                recv,
                front,
                server,
                SMALL_SENDER[2],
                SMALL_SENDER[1],
                f"orders@{SMALL_SENDER[0]}",
                "sales@fabrikam.com",
                when,
                None,
            )
    relay = f"{server}\\Relay {server}"
    if relay in org.receive.get(server, []):
        for i, ip in enumerate(SCANNER_IPS * 3):
            inbound(
                recv,
                relay,
                server,
                ip,
                f"scanner{i % 2 + 1}",
                "scanner@fabrikam.com",
                "scans@fabrikam.com",
                t0 + dt.timedelta(minutes=50 * i + 3),
                None,
                helo=True,
            )
    partner = next((r for r in org.receive.get(server, []) if "\\Partner " in r), None)
    if partner:
        contoso_domain = org.send[_connector(org, "To ")][0] or "contoso.com"
        for i, rng_ip in enumerate(org.contoso_ips * 2):
            inbound(
                recv,
                partner,
                server,
                rng_ip,
                f"mail.{contoso_domain}",
                f"buyer{i}@{contoso_domain}",
                "sales@fabrikam.com",
                t0 + dt.timedelta(minutes=61 * i + 5),
                org.certs[partner],
            )

    def out(connector: str, ip: str, port: int, mx: str, rcpt: str, when: dt.datetime, **kw: object) -> None:
        outbound(send, connector, server, ip, port, mx, rcpt, when, **kw)  # type: ignore[arg-type]
        sent.append((when, connector, f"<{rng.sid()}@fabrikam.com>", rcpt))

    internet = _connector(org, "Internet")
    for i in range(8):
        when = t0 + dt.timedelta(minutes=41 * i + 11)
        out(
            internet,
            GMAIL[2],
            25,
            GMAIL[1],
            f"friend{i}@{GMAIL[0]}",
            when,
            offers=True,
            sends_starttls=True,
            remote_cert="CN=mx.google.com",
        )
    for i in range(3):
        out(
            internet,
            NO_TLS[2],
            25,
            NO_TLS[1],
            f"ap{i}@{NO_TLS[0]}",
            t0 + dt.timedelta(minutes=97 * i + 13),
            offers=False,
            sends_starttls=False,
        )
    # A failed negotiation; Exchange then retries the same message in plaintext (a new session).
    when = t0 + dt.timedelta(hours=5, minutes=2)
    outbound(
        send,
        internet,
        server,
        TLS_BROKEN[2],
        25,
        TLS_BROKEN[1],
        f"hr@{TLS_BROKEN[0]}",
        when,
        offers=True,
        sends_starttls=True,
        tls_ok=False,
    )
    out(
        internet,
        TLS_BROKEN[2],
        25,
        TLS_BROKEN[1],
        f"hr@{TLS_BROKEN[0]}",
        when + dt.timedelta(seconds=2),
        offers=False,
        sends_starttls=False,
    )
    scanner = _connector(org, "Legacy Scanner")
    s_domain, s_host, s_port = org.send[scanner]
    for i in range(4):
        out(
            scanner,
            "192.0.2.150",
            s_port,
            s_host or f"smtp.{s_domain}",
            f"inbox@{s_domain}",
            t0 + dt.timedelta(minutes=83 * i + 7),
            offers=True,
            sends_starttls=False,
            auth=True,
        )
    contoso = _connector(org, "To ")
    c_domain = org.send[contoso][0]
    for i in range(3):
        out(
            contoso,
            "203.0.113.25",
            25,
            f"mail.{c_domain}",
            f"orders{i}@{c_domain}",
            t0 + dt.timedelta(minutes=120 * i + 9),
            offers=True,
            sends_starttls=True,
            remote_cert=f"CN=mail.{c_domain}",
        )
    hybrid = _connector(org, "Outbound to Office 365")
    # No protocol log for this one: ProtocolLoggingLevel None on the connector.
    sent.extend(
        (
            t0 + dt.timedelta(minutes=77 * i + 17),
            hybrid,
            f"<{rng.sid()}@fabrikam.com>",
            f"cloud{i}@{org.send[hybrid][0]}",
        )
        for i in range(2)
    )
    return recv.lines, send.lines, sent


TRACK_FIELDS = "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,schema-version"


def tracking_log(server: str, day: dt.date, sent: list[tuple[dt.datetime, str, str, str]]) -> list[str]:
    names = TRACK_FIELDS.split(",")
    lines = ["#Software: Microsoft Exchange Server", "#Version: 15.02.1544.004", "#Log-type: Message Tracking Log",
             f"#Date: {_stamp(dt.datetime.combine(day, dt.time(6), dt.UTC))}", f"#Fields: {TRACK_FIELDS}"]  # fmt: skip

    def row(**v: str) -> str:
        return ",".join(_csv(v.get(n.replace("-", "_"), "")) for n in names)

    for n, (when, connector, msgid, rcpt) in enumerate(sorted(sent)):
        lines.append(row(date_time=_stamp(when), server_hostname=server, connector_id=connector, source="SMTP", event_id="SEND", internal_message_id=str(1000 + n),
                         message_id=msgid, recipient_address=rcpt, recipient_status="250 2.0.0 OK", total_bytes="20480", recipient_count="1",
                         sender_address="noreply@fabrikam.com", return_path="noreply@fabrikam.com", directionality="Originating", schema_version="15.02.1544.004"))  # fmt: skip
        t = when + dt.timedelta(minutes=1)
        lines.append(row(date_time=_stamp(t), server_hostname=server, source="STOREDRIVER", event_id="DELIVER", internal_message_id=str(5000 + n),
                         message_id=f"<reply{n}.{server}@partner>", recipient_address="sales@fabrikam.com", recipient_count="1",
                         directionality="Incoming", schema_version="15.02.1544.004"))  # fmt: skip
    return lines


def microsoft_report(day: dt.date) -> bytes:
    """Microsoft's shape: no zone on the date-times, failure details without sending-mta-ip."""
    doc = {
        "organization-name": "Microsoft Corporation",
        "date-range": {"start-datetime": f"{day}T00:00:00", "end-datetime": f"{day}T23:59:59"},
        "contact-info": "tlsrpt-noreply@microsoft.com",
        "report-id": f"1337{day:%Y%m%d}00000000000+fabrikam.com",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": [
                        "version: STSv1",
                        "mode: testing",
                        f"mx: {MX_HOST}",
                        "mx: old-mx.fabrikam.com",
                        "max_age: 86400",
                    ],
                    "policy-domain": "fabrikam.com",
                },
                "summary": {"total-successful-session-count": 181, "total-failure-session-count": 12},
                "failure-details": [
                    {
                        "result-type": "certificate-expired",
                        "receiving-mx-hostname": MX_HOST,
                        "receiving-ip": PUBLIC_IP["EX02"],
                        "failed-session-count": 12,
                    }
                ],
            },
            {
                "policy": {"policy-type": "no-policy-found", "policy-domain": "fabrikam.co.uk"},
                "summary": {"total-successful-session-count": 9, "total-failure-session-count": 0},
            },
        ],
    }
    return (json.dumps(doc, indent=4) + "\n").encode()


def google_report(day: dt.date, domain: str, sts: bool) -> dict[str, object]:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    policy: dict[str, object] = (
        {
            "policy-type": "sts",
            "policy-string": [
                "version: STSv1",
                "mode: testing",
                f"mx: {MX_HOST}",
                "mx: old-mx.fabrikam.com",
                "max_age: 86400",
            ],
            "policy-domain": domain,
            "mx-host": [MX_HOST, "old-mx.fabrikam.com"],
        }
        if sts
        else {"policy-type": "no-policy-found", "policy-domain": domain}
    )
    entry: dict[str, object] = {
        "policy": policy,
        "summary": {
            "total-successful-session-count": 40 if sts else 6,
            "total-failure-session-count": 7 if sts else 0,
        },
    }
    if sts:
        entry["failure-details"] = [
            {
                "result-type": "certificate-expired",
                "sending-mta-ip": GMAIL[4],
                "receiving-mx-hostname": MX_HOST,
                "receiving-ip": PUBLIC_IP["EX02"],
                "failed-session-count": 7,
            }
        ]
    return {"organization-name": "Google Inc.", "date-range": {"start-datetime": f"{start:%Y-%m-%dT%H:%M:%SZ}", "end-datetime": f"{start + dt.timedelta(seconds=86399):%Y-%m-%dT%H:%M:%SZ}"},
            "contact-info": "smtp-tls-reporting@google.com", "report-id": f"{start:%Y-%m-%dT%H:%M:%SZ}_{domain}", "policies": [entry]}  # fmt: skip


def google_mail(day: dt.date, domain: str, sts: bool) -> bytes:
    doc = google_report(day, domain, sts)
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    msg = EmailMessage()
    msg["Date"] = f"{day + dt.timedelta(days=1):%a, %d %b %Y} 03:53:20 -0700"
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = "google.com"
    msg["Message-ID"] = f"<{start}.{domain}tls@google.com>"
    msg["Subject"] = f"Report Domain: {domain} Submitter: google.com Report-ID: <{doc['report-id']}>"
    msg["From"] = "noreply-smtp-tls-reporting@google.com"
    msg["To"] = "tlsrpt@fabrikam.com"
    msg.set_content("This is an aggregate TLS report from google.com\n")
    data = gzip.compress(json.dumps(doc).encode(), mtime=0)
    msg.add_attachment(
        data,
        maintype="application",
        subtype="tlsrpt+gzip",
        filename=f"google.com!{domain}!{start}!{start + 86399}!001.json.gz",
    )
    msg.set_boundary(f"{start:016x}tlsrpt")  # fixed, so the samples stay byte-identical
    msg.set_param("report-type", "tlsrpt")
    msg.set_type("multipart/report")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\n"))


def mbox(mails: Iterator[bytes]) -> bytes:
    out = b""
    for m in mails:
        body = b"\n".join(b">" + ln if ln.startswith(b"From ") else ln for ln in m.split(b"\n"))
        out += (
            b"From noreply-smtp-tls-reporting@google.com Sun Jun  1 10:53:20 2025\n"
            + body.rstrip(b"\n")
            + b"\n\n"
        )
    return out


def iis_log(day: dt.date) -> str:
    lines = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", f"#Date: {day} 00:00:02",
             "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken",
             f"{day} 00:00:02 10.0.0.20 GET /.well-known/mta-sts.txt - 443 - 66.249.93.10 Google-SMTP-STS - 200 0 0 12",
             f"{day} 03:12:40 10.0.0.20 GET /.well-known/mta-sts.txt - 443 - 40.107.22.101 - - 200 0 0 9",
             f"{day} 05:40:11 10.0.0.20 GET / - 443 - 203.0.113.77 Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64) - 403 14 0 3",
             "#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", f"#Date: {day} 06:00:00",
             "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) cs-host sc-status sc-substatus sc-win32-status time-taken",
             f"{day} 07:00:05 10.0.0.20 GET /.well-known/mta-sts.txt - 443 - 98.137.157.43 - - {POLICY_HOST} 200 0 0 8",
             f"{day} 09:30:00 10.0.0.20 GET /.well-known/mta-sts.txt - 443 - 66.249.93.12 Google-SMTP-STS - {POLICY_HOST} 200 0 0 10",
             f"{day} 11:15:27 10.0.0.20 GET /.well-known/mta-sts.txt - 443 - 192.0.2.200 curl/8.5.0 - {POLICY_HOST} 200 0 0 4",
             f"{day} 11:15:31 10.0.0.20 GET /.well-known/mta-sts.TXT - 443 - 192.0.2.200 curl/8.5.0 - {POLICY_HOST} 404 0 2 2"]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


README = """# Fabrikam's evidence: logs and reports of 2025-05-30 and 2025-05-31

Generated by `python scripts/make_evidence_samples.py` from `samples/fabrikam/` (connector names,
servers, address spaces, smart hosts and certificates are read from there); deterministic, do not
edit by hand. Try: `exconn evidence samples/fabrikam-evidence`.

| path | what |
|---|---|
| `EX0n/TransportRoles/Logs/FrontEnd/ProtocolLog/SmtpReceive/RECV*.LOG` | receive protocol logs: Default Frontend (EX02 presents the expired Sectigo certificate, EX01 the valid one), Relay EX02 (scanners, HELO, plaintext), Partner Contoso |
| `EX0n/TransportRoles/Logs/Hub/ProtocolLog/SmtpSend/SEND*.LOG` | send protocol logs: Internet (TLS to Google; no STARTTLS at northwindtraders.com; a failed negotiation at adventure-works.com retried in plaintext), Legacy Scanner Relay (STARTTLS offered, never sent: IgnoreSTARTTLS; AUTH in plaintext), To Contoso |
| `EX0n/TransportRoles/Logs/MessageTracking/MSGTRK*.LOG` | SEND events per connector (Outbound to Office 365 too, which has no protocol log: logging None), DELIVER to fabrikam.com |
| `tlsrpt/microsoft.com!fabrikam.com!*.json` | Microsoft's reports: date-times without zone, certificate-expired at EX02's address without sending-mta-ip, a no-policy-found policy |
| `tlsrpt/rua.mbox` | the rua mailbox: Google's report mails (`application/tlsrpt+gzip`): sts with certificate-expired failures, daily no-policy-found |
| `mta-sts/W3SVC1/u_ex*.log` | IIS log of mta-sts.fabrikam.com, `#Fields:` changing mid-file: Google by user agent, Microsoft and Yahoo by address, curl unknown |
"""


def build(folder: Path) -> dict[str, bytes]:
    org = read_org(folder)
    rng = Rng(SEED)
    files: dict[str, bytes] = {"README.md": README.encode()}
    for day in DAYS:
        stamp = f"{day:%Y%m%d}00"
        for server in sorted(LOCAL_IP):
            recv, send, sent = protocol_logs(org, rng, day, server)
            base = f"{server}/TransportRoles/Logs"
            files[f"{base}/FrontEnd/ProtocolLog/SmtpReceive/RECV{stamp}-1.LOG"] = (
                "\r\n".join(recv) + "\r\n"
            ).encode()
            files[f"{base}/Hub/ProtocolLog/SmtpSend/SEND{stamp}-1.LOG"] = (
                "\r\n".join(send) + "\r\n"
            ).encode()
            files[f"{base}/MessageTracking/MSGTRK{stamp}-1.LOG"] = (
                "\r\n".join(tracking_log(server, day, sent)) + "\r\n"
            ).encode()
        start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
        files[f"tlsrpt/microsoft.com!fabrikam.com!{start}!{start + 86399}.json"] = microsoft_report(day)
        files[f"mta-sts/W3SVC1/u_ex{day:%y%m%d}.log"] = iis_log(day).encode()
    files["tlsrpt/rua.mbox"] = mbox(
        google_mail(d, dom, sts)
        for d in DAYS
        for dom, sts in (("fabrikam.com", True), ("fabrikam.co.uk", False))
    )
    return files


def main(argv: Sequence[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "samples" / "fabrikam-evidence"
    files = build(ROOT / "samples" / "fabrikam")
    for rel, data in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
