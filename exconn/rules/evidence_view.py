"""The evidence as the rules look it up: traffic per connector, peers per recipient domain, TLS-RPT
failures per MX. Pure functions of `Context.evidence`; nothing here judges."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from exconn.evidence.model import Traffic
from exconn.names import normalize
from exconn.rules.base import Context

# Where a Google, Microsoft or Yahoo sending MTA comes from, by the EHLO name it gives.
BIG_SENDERS = {
    "Google": (".google.com",),
    "Microsoft": (".outlook.com", ".protection.outlook.com"),
    "Yahoo": (".yahoo.com", ".yahoodns.net"),
}


def traffic(ctx: Context, direction: str) -> list[Traffic]:
    if ctx.evidence is None:
        return []
    return [t for t in ctx.evidence.resolved_traffic() if t.direction == direction]


def of_connector(ctx: Context, direction: str, connector: str) -> list[Traffic]:
    """A connector's traffic: receive `SERVER\\Name`, send by name (Exchange logs the name)."""
    key = connector.casefold()
    return [t for t in traffic(ctx, direction) if t.connector.casefold() == key]


def outbound_by_domain(ctx: Context) -> dict[str, list[Traffic]]:
    """Outbound traffic per recipient domain; a session that ended before RCPT TO (a failed TLS
    negotiation) goes with the domain the same connector and MX host carried mail for, else
    with the MX host name."""
    peers = traffic(ctx, "outbound")
    host_domain: dict[tuple[str, str], str] = {}
    for t in peers:
        if t.remote_domain and t.remote_host:
            host_domain.setdefault(
                (t.connector.casefold(), normalize(t.remote_host)), normalize(t.remote_domain)
            )
    groups: dict[str, list[Traffic]] = defaultdict(list)
    for t in peers:
        host = normalize(t.remote_host) if t.remote_host else None
        domain = (
            normalize(t.remote_domain)
            if t.remote_domain
            else (host_domain.get((t.connector.casefold(), host)) if host else None) or host or t.remote_ip
        )
        groups[domain].append(t)
    return dict(groups)


@dataclass(frozen=True, slots=True)
class MxFailures:
    mx: str
    result_type: str
    count: int
    receiving_ips: tuple[str, ...]
    reporters: tuple[str, ...]


def report_failures(ctx: Context, domain: str) -> list[MxFailures]:
    """TLS-RPT failures of the period for `domain`, per receiving MX and result type, most first."""
    if ctx.evidence is None:
        return []
    want = normalize(domain)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    ips: dict[tuple[str, str], set[str]] = defaultdict(set)
    who: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in ctx.evidence.tls_reports:
        if r.policy_domain is None or normalize(r.policy_domain) != want:
            continue
        for f in r.failures:
            key = (normalize(f.receiving_mx_hostname) if f.receiving_mx_hostname else "?", f.result_type)
            counts[key] += f.count
            if f.receiving_ip:
                ips[key].add(f.receiving_ip)
            who[key].add(r.organization)
    rows = [
        MxFailures(mx, kind, n, tuple(sorted(ips[(mx, kind)])), tuple(sorted(who[(mx, kind)])))
        for (mx, kind), n in counts.items()
    ]
    return sorted(rows, key=lambda x: (-x.count, x.mx, x.result_type))


def report_domains(ctx: Context) -> list[str]:
    if ctx.evidence is None:
        return []
    return sorted({normalize(r.policy_domain) for r in ctx.evidence.tls_reports if r.policy_domain})


def reports_for(ctx: Context, domain: str) -> int:
    """How many reports of the period name `domain` (any policy type)."""
    if ctx.evidence is None:
        return 0
    want = normalize(domain)
    return sum(1 for r in ctx.evidence.tls_reports if r.policy_domain and normalize(r.policy_domain) == want)


def big_sender(host: str | None) -> str | None:
    if not host:
        return None
    name = "." + normalize(host)
    return next((who for who, tails in BIG_SENDERS.items() if name.endswith(tails)), None)


def share(no_tls: int, sessions: int) -> str:
    return f"{100 * no_tls / sessions:.0f} %" if sessions else "-"


def total(peers: Iterable[Traffic], attr: str) -> int:
    return sum(int(getattr(t, attr)) for t in peers)
