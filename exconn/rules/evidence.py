"""Rules on what the logs and reports showed on the wire (EXC-E…): outbound plaintext, the MTA-STS
policy host's fetches, send connectors that log nothing. They judge only with evidence given
(logs among audit's PATHs, or --evidence): without it they stay silent, as the configuration
rules judge what is configured."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from exconn.evidence.model import Traffic
from exconn.fix import UNREAD, ParamChange, SetCommand
from exconn.model import SendConnector
from exconn.names import normalize
from exconn.rules.base import CannotJudge, Context, Each, Hit, Severity, Target, rule
from exconn.rules.evidence_view import big_sender, outbound_by_domain, share, traffic
from exconn.rules.refs import (
    RFC3207_4,
    RFC7435_3,
    RFC7672_2_2,
    RFC8461_3_2,
    RFC8461_5,
    SEND_CONNECTORS,
    SET_SEND,
)

Result = Iterator[Hit | CannotJudge]

PROTOCOL_LOGGING = "https://learn.microsoft.com/exchange/mail-flow/connectors/configure-protocol-logging"


@dataclass(frozen=True, slots=True)
class _Peers:
    domain: str
    peers: tuple[Traffic, ...]


def _domains(ctx: Context) -> list[_Peers]:
    return [_Peers(d, tuple(p)) for d, p in sorted(outbound_by_domain(ctx).items())]


def _protects(ctx: Context, domain: str) -> list[str]:
    """What the domain publishes that asks senders for TLS (from the observed posture)."""
    from exconn.rules.posture_view import dane_secure, enforced_policy, posture_of

    p = posture_of(ctx, domain)
    if p is None:
        return []

    return (["MTA-STS enforce"] if enforced_policy(p) is not None else []) + (
        ["DANE"] if dane_secure(p) else []
    )


def _send_connector(ctx: Context, name: str) -> SendConnector | None:
    key = name.casefold()
    return next((c for c in ctx.org.send_connectors if c.name.casefold() == key), None)


@rule(
    id="EXC-E001",
    title="Mail left in plaintext for a recipient domain",
    severity=Severity.HIGH,
    rationale="""The send protocol logs show sessions to this recipient domain (or MX host) without TLS:
        the remote offered no STARTTLS, the connector ignores it (IgnoreSTARTTLS), or the negotiation
        failed and Exchange retried in plaintext. Whatever the configuration allows, this mail crossed
        the network readable by anyone on the path. Worse when the domain publishes MTA-STS enforce or
        DANE: it asks every sender for validated TLS.""",
    references=[RFC3207_4, RFC7435_3, RFC8461_5, RFC7672_2_2, SET_SEND],
    remediation="""-IgnoreSTARTTLS:$false on a connector that ignores the STARTTLS the remote offers; when
        the remote offers none (or its TLS fails), ask the partner to fix its MX, or send to it through a
        connector with RequireTLS if mail must not go in clear.""",
    each=Each("recipient domain", _domains, lambda p: Target("Domain", p.domain)),
)
def outbound_plaintext(ctx: Context, item: _Peers) -> Result:
    peers = item.peers
    sessions = sum(t.sessions for t in peers)
    no_tls = sum(t.plaintext + t.tls_failed for t in peers)
    if not no_tls:
        return
    retried = {(t.connector.casefold(), t.remote_host) for t in peers if t.tls_failed}
    why: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    fixes: list[SetCommand] = []
    for t in peers:
        c = _send_connector(ctx, t.connector)
        reasons = why[t.connector]
        if t.tls_failed:
            reasons["failed TLS negotiation"] += t.tls_failed
        plain = t.plaintext
        if (t.connector.casefold(), t.remote_host) in retried and plain:
            reasons["retried in plaintext after a failed TLS negotiation"] += plain
            continue
        if t.plaintext_offered:
            ignoring = c is not None and c.ignore_starttls is True
            label = (
                "IgnoreSTARTTLS: the remote offered STARTTLS, never sent"
                if ignoring
                else "STARTTLS offered, not used"
            )
            reasons[label] += t.plaintext_offered
            plain -= t.plaintext_offered
            if ignoring and c is not None and not any(f.identity == c.identity for f in fixes):
                fixes.append(
                    SetCommand("Set-SendConnector", c.identity, (ParamChange("IgnoreSTARTTLS", False, True),))
                )
        if plain:
            reasons["the remote offered no STARTTLS"] += plain
    ratio = no_tls / sessions
    severity = Severity.HIGH if ratio >= 0.5 else Severity.MEDIUM if ratio >= 0.1 else Severity.LOW
    protects = _protects(ctx, item.domain)
    if protects:
        severity = Severity(min(Severity.CRITICAL, severity + 1))
    parts = [
        f"{t_name}: " + ", ".join(f"{n} {label}" for label, n in sorted(r.items(), key=lambda x: -x[1]))
        for t_name, r in sorted(why.items())
        if r
    ]
    hosts = sorted({t.remote_host or t.remote_ip for t in peers})
    message = (
        f"{no_tls} of {sessions} session(s) ({share(no_tls, sessions)}) to {item.domain} "
        f"(MX {', '.join(hosts[:3])}) went without TLS; " + "; ".join(parts) + "."
    )
    if protects:
        message += f" The domain publishes {' and '.join(protects)}: it asks senders for validated TLS."
    note = None
    if not fixes:
        note = (
            "no change on our side makes the remote offer STARTTLS: ask the partner to fix its MX, or "
            "route its mail through a connector with RequireTLS if it must not go in clear"
        )
    yield Hit(
        Target("Domain", item.domain),
        "traffic.plaintext",
        f"{no_tls}/{sessions}",
        message,
        severity=severity,
        fix=tuple(fixes),
        fix_note=note,
    )


def _unlogged(ctx: Context) -> list[str]:
    return [] if ctx.evidence is None else ctx.evidence.unlogged_connectors()


@rule(
    id="EXC-E002",
    title="A send connector that carried mail logs nothing: its TLS cannot be judged",
    severity=Severity.INFO,
    rationale="""The message tracking logs show mail leaving through this send connector, but its
        protocol log holds no session (ProtocolLoggingLevel None, the default): whether that mail went
        with TLS cannot be told. Protocol logging is opt-in; Verbose logs the STARTTLS exchange and
        the certificates, and Exchange ages the files out by itself (30 days, 250 MB by default).""",
    references=[PROTOCOL_LOGGING, SEND_CONNECTORS],
    remediation="""Set-SendConnector -ProtocolLoggingLevel Verbose (opt-in; the logs are written under
        the transport service's SendProtocolLogPath).""",
    each=Each("unlogged send connector", _unlogged, lambda name: Target("SendConnector", name)),
)
def connector_logs_nothing(ctx: Context, name: str) -> Result:
    c = _send_connector(ctx, name)
    target = Target.of(c) if c is not None else Target("SendConnector", name)
    messages = 0
    if ctx.evidence is not None:
        messages = sum(r.messages for r in ctx.evidence.recipients if name in r.connectors)
    yield CannotJudge(
        target,
        f"outbound TLS not judged: {messages} message(s) left through it (tracking logs), "
        "but its protocol log is empty (ProtocolLoggingLevel None)",
    )
    fix = (
        (
            SetCommand(
                "Set-SendConnector", c.identity, (ParamChange("ProtocolLoggingLevel", "Verbose", UNREAD),)
            ),
        )
        if c is not None
        else ()
    )
    yield Hit(
        target,
        "ProtocolLoggingLevel",
        "None (no protocol-log session)",
        f"{messages} message(s) left through this connector in the period, but it logs no session: "
        "whether they went with TLS cannot be judged. Turn on protocol logging (opt-in) to see it.",
        fix=fix,
        fix_note=None if fix else "the connector is not in the export: set its ProtocolLoggingLevel by hand",
    )


def _policy_hosts(ctx: Context) -> list[str]:
    if ctx.evidence is None:
        return []
    return sorted({f.host for f in ctx.evidence.policy_fetches})


def _policy_target(host: str) -> Target:
    name = normalize(host)
    return (
        Target("Domain", name.removeprefix("mta-sts."))
        if name.startswith("mta-sts.")
        else Target("PolicyHost", host)
    )


@rule(
    id="EXC-E003",
    title="The MTA-STS policy host answers fetches with an error",
    severity=Severity.MEDIUM,
    rationale="""Senders fetch https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 §3.3). A fetch
        answered with anything but 200 leaves the sender with no policy (or its cached one until
        max_age runs out): mail to the domain loses the protection the policy promised.""",
    references=[RFC8461_3_2],
    remediation="""none: serve the policy with status 200 (fix the web server, its certificate or the
        path); DIR/dns/<domain>/mta-sts.txt holds the policy to serve.""",
    each=Each("MTA-STS policy host", _policy_hosts, _policy_target),
)
def policy_fetch_errors(ctx: Context, host: str) -> Result:
    assert ctx.evidence is not None
    bad: dict[str, int] = defaultdict(int)
    total = 0
    for f in ctx.evidence.policy_fetches:
        if f.host != host:
            continue
        for code, n in f.status:
            total += n
            if code != "200":
                bad[f"{code} to {f.fetcher}"] += n
    if bad:
        errors = sum(bad.values())
        yield Hit(
            _policy_target(host),
            "policy_fetches.status",
            dict(sorted(bad.items())),
            f"{errors} of {total} fetch(es) of the policy on {host} were not answered 200: "
            + ", ".join(f"{k} x{n}" for k, n in sorted(bad.items(), key=lambda x: -x[1]))
            + ".",
        )


def _unfetched(ctx: Context) -> list[str]:
    """Big senders that delivered to us in the period but never fetched the policy (when access
    logs of the policy host were given at all)."""
    if ctx.evidence is None or not ctx.evidence.policy_fetches:
        return []
    fetched = {f.fetcher for f in ctx.evidence.policy_fetches}
    senders = {big_sender(t.remote_host) for t in traffic(ctx, "inbound") if t.sessions}
    return sorted(s for s in senders if s is not None and s not in fetched)


@rule(
    id="EXC-E004",
    title="A big sender delivered mail but never fetched the MTA-STS policy",
    severity=Severity.LOW,
    rationale="""Google, Microsoft and Yahoo apply MTA-STS: a sender that delivered to us in the period
        and never fetched the policy either caches it (max_age up to a year) or cannot reach the policy
        host (DNS of mta-sts.<domain>, its certificate, a firewall). Over a period longer than max_age
        no fetch means the policy protects nothing from that sender.""",
    references=[RFC8461_3_2, RFC8461_5],
    remediation="""none: check that mta-sts.<domain> resolves and serves the policy over HTTPS with a
        trusted certificate from the internet; a sender that cached the policy fetches it again when
        the _mta-sts id changes.""",
    each=Each("big sender", _unfetched, lambda who: Target("Sender", who)),
)
def policy_not_fetched(ctx: Context, who: str) -> Result:
    sessions = sum(t.sessions for t in traffic(ctx, "inbound") if big_sender(t.remote_host) == who)
    hosts = ", ".join(_policy_hosts(ctx))
    yield Hit(
        Target("Sender", who),
        "policy_fetches",
        0,
        f"{who} delivered {sessions} session(s) to us in the period but fetched the MTA-STS policy from "
        f"none of the policy hosts logged ({hosts}): either it caches the policy, or it cannot reach it.",
    )
