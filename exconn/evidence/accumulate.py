"""The mutable side of the aggregates: readers add sessions, reports and fetches; `freeze()` gives
the frozen `Evidence`, sorted, so that equal inputs give equal (and byte-equal saved) aggregates.

Memory follows the number of distinct keys (peers, reports, fetchers, recipient domains), never
the number of lines: that is what "bounded by distinct peers" means here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exconn.evidence.model import (
    CertificateSeen,
    ConnectorCoverage,
    Coverage,
    Evidence,
    PolicyFetch,
    RecipientDomain,
    TlsReport,
    Traffic,
)

TrafficKey = tuple[str, str, str, str, str | None, str | None, str]
NOTE_LIMIT = 200  # lines of notes kept; past that only counted


@dataclass(slots=True)
class _TrafficAcc:
    sessions: int = 0
    tls: int = 0
    plaintext: int = 0
    tls_failed: int = 0
    starttls_offered: int = 0
    plaintext_offered: int = 0
    ehlo_seen: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    # thumbprint -> [subject, issuer, not_after, sessions]
    certs: dict[str, list[object]] = field(default_factory=dict)
    first: str = "\uffff"
    last: str = ""


@dataclass(slots=True)
class _FetchAcc:
    requests: int = 0
    status: Counter[str] = field(default_factory=Counter)
    first: str = "\uffff"
    last: str = ""


class Accumulator:
    def __init__(self) -> None:
        self.traffic: dict[TrafficKey, _TrafficAcc] = {}
        self.reports: dict[tuple[object, ...], TlsReport] = {}
        self.fetches: dict[tuple[str, str, str], _FetchAcc] = {}
        self.recipients: dict[str, list[object]] = {}  # domain -> [messages, set of connectors]
        self.own_domains: set[str] = set()
        self.local_addresses: dict[str, str] = {}
        self.files = 0
        self.bad_lines = 0
        self.servers: set[str] = set()
        self.conn_days: dict[tuple[str, str, str], set[str]] = {}
        self.conn_sessions: Counter[tuple[str, str, str]] = Counter()
        self.tracking_connectors: set[str] = set()
        self.notes: list[str] = []
        self.more_notes = 0

    # --- what readers add ----------------------------------------------------------------------

    def note(self, text: str) -> None:
        if len(self.notes) < NOTE_LIMIT:
            self.notes.append(" ".join(text.split()))
        else:
            self.more_notes += 1

    def session(
        self,
        key: TrafficKey,
        outcome: str,  # "tls" | "plaintext" | "tls_failed"
        offered: bool,
        ehlo: bool,
        version: str | None,
        cert: tuple[str, str, str | None, str | None] | None,  # thumbprint, subject, issuer, not_after
        first: str,
        last: str,
        refusal: str | None = None,
    ) -> None:
        acc = self.traffic.get(key)
        if acc is None:
            acc = self.traffic[key] = _TrafficAcc()
        acc.sessions += 1
        if outcome == "tls":
            acc.tls += 1
        elif outcome == "tls_failed":
            acc.tls_failed += 1
        else:
            acc.plaintext += 1
            if offered:
                acc.plaintext_offered += 1
        if offered:
            acc.starttls_offered += 1
        if ehlo:
            acc.ehlo_seen += 1
        if version:
            acc.versions[version] += 1
        if refusal:
            acc.refusals[refusal] += 1
        if cert is not None:
            entry = acc.certs.get(cert[0])
            if entry is None:
                acc.certs[cert[0]] = [cert[1], cert[2], cert[3], 1]
            else:
                entry[3] = int(str(entry[3])) + 1
        if first < acc.first:
            acc.first = first
        if last > acc.last:
            acc.last = last
        direction, server, connector = key[0], key[1], key[2]
        ck = (direction, server, connector)
        self.conn_sessions[ck] += 1
        days = self.conn_days.get(ck)
        if days is None:
            days = self.conn_days[ck] = set()
        days.add(first[:10])
        if direction == "inbound":
            self.servers.add(server)

    def report(self, report: TlsReport) -> None:
        self.reports.setdefault(report.key, report)

    def fetch(self, host: str, fetcher: str, by: str, status: str, when: str, requests: int = 1) -> None:
        key = (host, fetcher, by)
        acc = self.fetches.get(key)
        if acc is None:
            acc = self.fetches[key] = _FetchAcc()
        acc.requests += requests
        acc.status[status] += requests
        if when < acc.first:
            acc.first = when
        if when > acc.last:
            acc.last = when

    def recipient(self, domain: str, connector: str, messages: int = 1) -> None:
        entry = self.recipients.get(domain)
        if entry is None:
            self.recipients[domain] = [messages, {connector}]
        else:
            entry[0] = int(str(entry[0])) + messages
            conns = entry[1]
            assert isinstance(conns, set)
            conns.add(connector)

    # --- merging -------------------------------------------------------------------------------

    def add(self, ev: Evidence) -> None:
        """Add a frozen aggregate: the inverse of `freeze`, so aggregates merge by addition."""
        for t in ev.traffic:
            acc = self.traffic.get(t.key)
            if acc is None:
                acc = self.traffic[t.key] = _TrafficAcc()
            acc.sessions += t.sessions
            acc.tls += t.tls
            acc.plaintext += t.plaintext
            acc.tls_failed += t.tls_failed
            acc.starttls_offered += t.starttls_offered
            acc.plaintext_offered += t.plaintext_offered
            acc.ehlo_seen += t.ehlo_seen
            acc.versions.update(dict(t.tls_versions))
            acc.refusals.update(dict(t.refusals))
            for c in t.certificates:
                entry = acc.certs.get(c.thumbprint)
                if entry is None:
                    acc.certs[c.thumbprint] = [c.subject, c.issuer, c.not_after, c.sessions]
                else:
                    entry[3] = int(str(entry[3])) + c.sessions
            acc.first = min(acc.first, t.first)
            acc.last = max(acc.last, t.last)
        for r in ev.tls_reports:
            self.report(r)
        for f in ev.policy_fetches:
            acc_f = self.fetches.get(f.key)
            if acc_f is None:
                acc_f = self.fetches[f.key] = _FetchAcc()
            acc_f.requests += f.requests
            acc_f.status.update(dict(f.status))
            acc_f.first = min(acc_f.first, f.first)
            acc_f.last = max(acc_f.last, f.last)
        for rd in ev.recipients:
            for i, connector in enumerate(rd.connectors or ("",)):
                self.recipient(rd.domain, connector, rd.messages if i == 0 else 0)
        self.own_domains.update(ev.own_domains)
        self.local_addresses.update(dict(ev.local_addresses))
        cov = ev.coverage
        self.files += cov.files
        self.bad_lines += cov.bad_lines
        self.servers.update(cov.servers)
        for cc in cov.connectors:
            ck = (cc.direction, cc.server, cc.connector)
            self.conn_sessions[ck] += cc.sessions
            self.conn_days.setdefault(ck, set()).update(cc.days)
        self.tracking_connectors.update(cov.tracking_connectors)
        for n in ev.notes:
            self.note(n)

    def freeze(self) -> Evidence:
        traffic = tuple(
            Traffic(
                *k,
                sessions=a.sessions,
                tls=a.tls,
                plaintext=a.plaintext,
                tls_failed=a.tls_failed,
                starttls_offered=a.starttls_offered,
                plaintext_offered=a.plaintext_offered,
                ehlo_seen=a.ehlo_seen,
                tls_versions=tuple(sorted(a.versions.items())),
                certificates=tuple(
                    CertificateSeen(t, str(v[0]), _opt(v[1]), _opt(v[2]), int(str(v[3])))
                    for t, v in sorted(a.certs.items())
                ),
                first=a.first,
                last=a.last,
                refusals=tuple(sorted(a.refusals.items())),
            )
            for k, a in sorted(self.traffic.items(), key=lambda kv: _sort_key(kv[0]))
        )
        reports = tuple(self.reports[k] for k in sorted(self.reports, key=repr))
        fetches = tuple(
            PolicyFetch(*k, a.requests, tuple(sorted(a.status.items())), a.first, a.last)
            for k, a in sorted(self.fetches.items())
        )
        recipients = tuple(
            RecipientDomain(d, int(str(v[0])), tuple(sorted(_strings(v[1]))))
            for d, v in sorted(self.recipients.items())
        )
        connectors = tuple(
            ConnectorCoverage(*ck, self.conn_sessions[ck], tuple(sorted(days)))
            for ck, days in sorted(self.conn_days.items())
        )
        all_days = sorted({d for days in self.conn_days.values() for d in days})
        notes = sorted(set(self.notes))
        if self.more_notes:
            notes.append(f"... and {self.more_notes} more such notes")
        return Evidence(
            traffic=traffic,
            tls_reports=reports,
            policy_fetches=fetches,
            recipients=recipients,
            own_domains=tuple(sorted(self.own_domains)),
            local_addresses=tuple(sorted(self.local_addresses.items())),
            coverage=Coverage(
                files=self.files,
                bad_lines=self.bad_lines,
                servers=tuple(sorted(self.servers)),
                connectors=connectors,
                days=tuple(all_days),
                tracking_connectors=tuple(sorted(self.tracking_connectors)),
            ),
            notes=tuple(notes),
        )


def merge(*parts: Evidence) -> Evidence:
    acc = Accumulator()
    for p in parts:
        acc.add(p)
    return acc.freeze()


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _strings(value: object) -> list[str]:
    assert isinstance(value, set)
    return [str(v) for v in value if v]


def _sort_key(k: TrafficKey) -> tuple[str, ...]:
    return tuple("" if v is None else v for v in k)
