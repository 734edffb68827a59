"""The evidence aggregates: what the logs and reports of a period say, reduced to counts per peer.

Frozen, typed, and keyed the way the rules look things up: traffic by direction, server, connector
(the receive connector's `SERVER\\Name` identity, the send connector's name) and remote peer; TLS
reports by reporter and report id; policy fetches by policy host and fetcher. Every count is a sum,
so two aggregates of disjoint inputs merge by addition (`Accumulator.add`), and a merge of the
halves of a set of files equals the reduction of the whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Direction = str  # "inbound" | "outbound"


@dataclass(frozen=True, slots=True)
class CertificateSeen:
    """A certificate a session showed: ours on the receive side, the remote's on the send side."""

    thumbprint: str
    subject: str
    issuer: str | None
    not_after: str | None  # ISO 8601 UTC, or None when the log layout does not say
    sessions: int


@dataclass(frozen=True, slots=True)
class Traffic:
    """Sessions of one direction, server, connector and remote peer.

    `sessions == tls + plaintext + tls_failed`. `plaintext_offered` counts plaintext sessions whose
    EHLO reply advertised STARTTLS (outbound: `IgnoreSTARTTLS`, or a client that chose not to);
    `refusals` counts sessions by the TLS-related refusal they met. `ehlo_seen` counts sessions
    that reached an EHLO/HELO reply, so that `starttls_offered` can be None (JSON) for log
    excerpts that never show one.
    """

    direction: Direction
    server: str
    connector: str
    remote_ip: str
    remote_host: str | None
    remote_domain: str | None
    local_ip: str
    sessions: int
    tls: int
    plaintext: int
    tls_failed: int
    starttls_offered: int
    plaintext_offered: int
    ehlo_seen: int
    tls_versions: tuple[tuple[str, int], ...]
    certificates: tuple[CertificateSeen, ...]
    first: str
    last: str
    # Sessions refused for want of TLS, by reply: `530 5.7.0` (we or they require STARTTLS first),
    # `451 5.7.3` (STARTTLS required), `454 4.7.5` / `454 4.7.0` (TLS not available).
    refusals: tuple[tuple[str, int], ...] = ()

    @property
    def key(self) -> tuple[str, str, str, str, str | None, str | None, str]:
        return (
            self.direction,
            self.server,
            self.connector,
            self.remote_ip,
            self.remote_host,
            self.remote_domain,
            self.local_ip,
        )


@dataclass(frozen=True, slots=True)
class TlsFailure:
    result_type: str
    receiving_mx_hostname: str | None
    receiving_ip: str | None
    sending_mta_ip: str | None
    failure_reason_code: str | None
    count: int


@dataclass(frozen=True, slots=True)
class TlsReport:
    """One policy of one TLS-RPT report (RFC 8460 §4.4): a report with two policies gives two."""

    organization: str
    report_id: str
    start: str
    end: str
    policy_domain: str | None
    policy_type: str
    policy_strings: tuple[str, ...]
    mx_hosts: tuple[str, ...]
    successful: int
    failed: int
    failures: tuple[TlsFailure, ...]

    @property
    def key(self) -> tuple[str, str, str | None, str, tuple[str, ...]]:
        # The same report often arrives twice (the mail and the saved attachment): one entry.
        return (self.organization, self.report_id, self.policy_domain, self.policy_type, self.policy_strings)


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    host: str
    fetcher: str
    attributed_by: str  # "user-agent" | "address" | "unknown"
    requests: int
    status: tuple[tuple[str, int], ...]
    first: str
    last: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.host, self.fetcher, self.attributed_by)


@dataclass(frozen=True, slots=True)
class RecipientDomain:
    domain: str
    messages: int
    connectors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConnectorCoverage:
    direction: Direction
    server: str
    connector: str
    sessions: int
    days: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Coverage:
    files: int = 0
    bad_lines: int = 0
    servers: tuple[str, ...] = ()
    connectors: tuple[ConnectorCoverage, ...] = ()
    days: tuple[str, ...] = ()
    # Send connectors that carried mail in the tracking logs: the ones with no protocol-log
    # session are the connectors that log nothing (ProtocolLoggingLevel None).
    tracking_connectors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything read from a set of logs and reports (or loaded from saved aggregates)."""

    traffic: tuple[Traffic, ...] = ()
    tls_reports: tuple[TlsReport, ...] = ()
    policy_fetches: tuple[PolicyFetch, ...] = ()
    recipients: tuple[RecipientDomain, ...] = ()  # before dropping the organisation's own domains
    own_domains: tuple[str, ...] = ()  # recipient domains of DELIVER events: mailboxes here
    local_addresses: tuple[tuple[str, str], ...] = ()  # (local IP, server) from receive logs
    coverage: Coverage = field(default_factory=Coverage)
    notes: tuple[str, ...] = ()  # one line per file or line exconn could not read

    def recipient_domains(self, own: tuple[str, ...] = ()) -> list[RecipientDomain]:
        """Recipient domains by distinct messages, most first; our own domains never count."""
        skip = {d.lower() for d in (*self.own_domains, *own)}
        rows = [r for r in self.recipients if r.domain not in skip]
        return sorted(rows, key=lambda r: (-r.messages, r.domain))

    def resolved_traffic(self) -> list[Traffic]:
        """Traffic with each outbound entry's server named: a send log names no server, but its
        local address is the one the receive logs of that server show (else the address stays)."""
        servers = dict(self.local_addresses)
        out = []
        for t in self.traffic:
            if t.direction == "outbound" and t.server in servers:
                t = _replace_server(t, servers[t.server])
            out.append(t)
        return out

    def unlogged_connectors(self) -> list[str]:
        """Send connectors that carried mail (tracking logs) but left no protocol-log session."""
        logged = {c.connector for c in self.coverage.connectors if c.direction == "outbound"}
        return sorted(set(self.coverage.tracking_connectors) - logged)


def _replace_server(t: Traffic, server: str) -> Traffic:
    from dataclasses import replace

    return replace(t, server=server)
