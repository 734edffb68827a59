"""The aggregates as the JSON contract of the evidence issue, and as text ("on the wire").

`to_json` gives the five sections `traffic`, `tls_reports`, `policy_fetches`, `recipient_domains`
and `coverage`, field for field as the issue specifies; `audit` adds the same sections to its JSON.
`on_the_wire` is the short text section: per connector, TLS share and the worst peers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from exconn.evidence.model import Evidence, Traffic

WORST_PEERS = 3


def traffic_json(t: Traffic) -> dict[str, Any]:
    return {
        "direction": t.direction,
        "server": t.server,
        "connector": t.connector,
        "remote_ip": t.remote_ip,
        "remote_host": t.remote_host,
        "remote_domain": t.remote_domain,
        "sessions": t.sessions,
        "tls": t.tls,
        "plaintext": t.plaintext,
        "tls_failed": t.tls_failed,
        "starttls_offered": t.starttls_offered if t.ehlo_seen else None,
        "tls_versions": dict(t.tls_versions),
        "certificates": [
            {
                "thumbprint": c.thumbprint,
                "subject": c.subject,
                "not_after": c.not_after,
                "sessions": c.sessions,
            }
            for c in t.certificates
        ],
        "first": t.first,
        "last": t.last,
    }


def to_json(ev: Evidence, own_domains: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "traffic": [traffic_json(t) for t in ev.resolved_traffic()],
        "tls_reports": [
            {
                "organization": r.organization,
                "report_id": r.report_id,
                "start": r.start,
                "end": r.end,
                "policy_domain": r.policy_domain,
                "policy_type": r.policy_type,
                "successful": r.successful,
                "failed": r.failed,
                "failures": [
                    {
                        "result_type": f.result_type,
                        "receiving_mx_hostname": f.receiving_mx_hostname,
                        "receiving_ip": f.receiving_ip,
                        "sending_mta_ip": f.sending_mta_ip,
                        "count": f.count,
                    }
                    for f in r.failures
                ],
            }
            for r in ev.tls_reports
        ],
        "policy_fetches": [
            {
                "host": f.host,
                "fetcher": f.fetcher,
                "attributed_by": f.attributed_by,
                "requests": f.requests,
                "status": dict(f.status),
                "first": f.first,
                "last": f.last,
            }
            for f in ev.policy_fetches
        ],
        "recipient_domains": [
            {"domain": r.domain, "messages": r.messages, "connectors": list(r.connectors)}
            for r in ev.recipient_domains(own_domains)
        ],
        "coverage": coverage_json(ev),
    }


def coverage_json(ev: Evidence) -> dict[str, Any]:
    servers = dict(ev.local_addresses)
    cov = ev.coverage
    return {
        "files": cov.files,
        "unreadable_lines": cov.bad_lines,
        "servers": sorted({*cov.servers, *(servers.get(c.server, c.server) for c in cov.connectors)}),
        "days": list(cov.days),
        "connectors": [
            {
                "direction": c.direction,
                "server": servers.get(c.server, c.server) if c.direction == "outbound" else c.server,
                "connector": c.connector,
                "sessions": c.sessions,
                "days": list(c.days),
            }
            for c in cov.connectors
        ],
        # Carried mail in the tracking logs, no protocol-log session: ProtocolLoggingLevel None.
        "connectors_logging_nothing": ev.unlogged_connectors(),
        "notes": list(ev.notes),
    }


def _share(tls: int, sessions: int) -> str:
    return f"{100 * tls / sessions:.0f} %" if sessions else "-"


def _peer(t: Traffic) -> str:
    # Inbound, the sender's address is what RequireTLS would refuse; outbound, the recipient domain.
    name = t.remote_ip if t.direction == "inbound" else (t.remote_domain or t.remote_host or t.remote_ip)
    return f"{name} ({t.plaintext + t.tls_failed}/{t.sessions})"


def connector_rows(ev: Evidence) -> list[list[str]]:
    """Per direction, server and connector: sessions, TLS share, and the worst peers (most
    sessions without TLS)."""
    groups: dict[tuple[str, str, str], list[Traffic]] = defaultdict(list)
    for t in ev.resolved_traffic():
        groups[(t.direction, t.server, t.connector)].append(t)
    rows = []
    for (direction, server, connector), peers in sorted(groups.items()):
        sessions = sum(p.sessions for p in peers)
        tls = sum(p.tls for p in peers)
        failed = sum(p.tls_failed for p in peers)
        worst = sorted(
            (p for p in peers if p.plaintext + p.tls_failed),
            key=lambda p: (-(p.plaintext + p.tls_failed), p.remote_ip),
        )
        rows.append(
            [
                direction,
                server,
                connector,
                str(sessions),
                _share(tls, sessions),
                str(failed),
                ", ".join(_peer(p) for p in worst[:WORST_PEERS]) or "-",
            ]
        )
    return rows


HEADERS = ["direction", "server", "connector", "sessions", "TLS", "TLS failed", "worst peers (no TLS/all)"]


def on_the_wire(ev: Evidence, markdown: bool = False, width: int | None = None) -> str:
    """The section; with `width` (a terminal's), the connector and peer columns wrap to fit it."""
    from tabulate import tabulate  # only the table and Markdown formats need it

    rows = connector_rows(ev)
    fmt = "github" if markdown else "simple"
    title = "## On the wire\n\n" if markdown else "On the wire\n"
    if not rows:
        return title + "no protocol-log sessions read\n"
    limits: list[int | None] | None = None
    if width is not None and not markdown:
        fixed = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        # `simple` puts two spaces between columns; the connector and the peers share what is left.
        room = width - 2 * (len(HEADERS) - 1) - sum(fixed[i] for i in (0, 1, 3, 4, 5))
        connector = max(12, min(fixed[2], room // 3))
        limits = [None, None, connector, None, None, None, max(12, room - connector)]
    return title + tabulate(rows, headers=HEADERS, tablefmt=fmt, maxcolwidths=limits) + "\n"


def summary_text(ev: Evidence, markdown: bool = False, own_domains: tuple[str, ...] = ()) -> str:
    from tabulate import tabulate  # only the table and Markdown formats need it

    fmt = "github" if markdown else "simple"
    h = "## " if markdown else ""
    parts = [on_the_wire(ev, markdown)]
    if ev.tls_reports:
        rows = [
            [
                r.organization,
                r.start[:10],
                r.policy_domain or "-",
                r.policy_type,
                r.successful,
                r.failed,
                ", ".join(
                    f"{f.result_type} {f.receiving_mx_hostname or '?'} x{f.count}" for f in r.failures[:3]
                )
                or "-",
            ]
            for r in ev.tls_reports
        ]
        head = ["reporter", "day", "policy domain", "type", "ok", "failed", "failures"]
        parts.append(f"{h}TLS reports\n" + tabulate(rows, headers=head, tablefmt=fmt) + "\n")
    if ev.policy_fetches:
        rows = [
            [
                f.host,
                f.fetcher,
                f.attributed_by,
                f.requests,
                " ".join(f"{k}:{v}" for k, v in f.status),
                f.first[:10],
                f.last[:10],
            ]
            for f in ev.policy_fetches
        ]
        head = ["policy host", "fetcher", "attributed by", "requests", "status", "first", "last"]
        parts.append(f"{h}MTA-STS policy fetches\n" + tabulate(rows, headers=head, tablefmt=fmt) + "\n")
    domains = ev.recipient_domains(own_domains)
    if domains:
        rows = [[r.domain, r.messages, ", ".join(r.connectors)] for r in domains[:20]]
        parts.append(
            f"{h}Top recipient domains\n"
            + tabulate(rows, headers=["domain", "messages", "connectors"], tablefmt=fmt)
            + "\n"
        )
    cov = ev.coverage
    lines = [f"{h}Coverage", f"{cov.files} file(s), days {cov.days[0]} .. {cov.days[-1]}" if cov.days else ""]
    lines = [ln for ln in lines if ln]
    unlogged = ev.unlogged_connectors()
    if unlogged:
        lines.append("send connectors that carried mail but log nothing: " + ", ".join(unlogged))
    if cov.bad_lines:
        lines.append(f"{cov.bad_lines} unreadable line(s) skipped")
    parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
