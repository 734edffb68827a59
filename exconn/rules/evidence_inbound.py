"""Rules on what the receive protocol logs and the TLS reports showed (EXC-E005…E008): STARTTLS
missing where the connector is configured with Tls, the certificate really presented, the senders
RequireTLS would refuse, and the failures senders report per MX. Silent without evidence."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator

from exconn.evidence.model import CertificateSeen, Traffic
from exconn.model import UNKNOWN, AuthMechanism, ExchangeCertificate, ReceiveConnector
from exconn.names import normalize
from exconn.rules.base import EACH_RECEIVE_CONNECTOR, CannotJudge, Context, Each, Hit, Severity, Target, rule
from exconn.rules.evidence_view import (
    MxFailures,
    big_sender,
    of_connector,
    report_domains,
    report_failures,
    traffic,
)
from exconn.rules.refs import GET_CERT, RECEIVE_CONNECTORS, RFC3207_4, RFC8460_3, RFC8461_5, SET_RECEIVE

Result = Iterator[Hit | CannotJudge]
TOP_SENDERS = 5


def _sessions(ctx: Context, c: ReceiveConnector) -> list[Traffic]:
    return of_connector(ctx, "inbound", c.identity)


@rule(
    id="EXC-E005",
    title="A receive connector configured with Tls never offered STARTTLS",
    severity=Severity.HIGH,
    rationale="""AuthMechanism holds Tls, yet no session the protocol logs show saw STARTTLS in the EHLO
        reply: Exchange found no valid certificate for the connector's FQDN (or TlsCertificateName) and
        silently stopped offering it (event 12014). Every sender then delivers in plaintext.""",
    references=[RFC3207_4, RECEIVE_CONNECTORS, GET_CERT],
    remediation="""none: install or renew a certificate naming the connector's FQDN, enable it for SMTP
        (Enable-ExchangeCertificate -Services SMTP) and point TlsCertificateName at it.""",
    each=EACH_RECEIVE_CONNECTOR,
)
def tls_configured_not_offered(ctx: Context, c: ReceiveConnector) -> Result:
    peers = _sessions(ctx, c)
    answered = sum(t.ehlo_seen for t in peers)
    if not answered:
        return
    if c.auth_mechanism is UNKNOWN:
        yield CannotJudge(Target.of(c), "not in the export: AuthMechanism")
        return
    if not c.auth_mechanism & AuthMechanism.TLS or any(t.starttls_offered for t in peers):
        return
    yield Hit(
        Target.of(c),
        "AuthMechanism",
        c.auth_mechanism,
        f"Tls is configured, but none of the {answered} session(s) in the logs saw STARTTLS offered: "
        "Exchange has no usable certificate for this connector, so every sender delivered in plaintext.",
    )


def _expected(ctx: Context, c: ReceiveConnector) -> tuple[ExchangeCertificate, ...] | None:
    """The certificates the export says this connector presents (the one Exchange selects, and the
    others the same selection could pick); None when it cannot tell."""
    from exconn.rules.certs import receive_selection

    selection = receive_selection(ctx.org, c, ctx.now)
    if isinstance(selection, str) or selection.certificate is None:
        return None
    return tuple(dict.fromkeys((selection.certificate, *selection.candidates)))


def _seen(peers: list[Traffic]) -> dict[str, tuple[CertificateSeen, int, str]]:
    """Thumbprint -> (certificate, sessions, last time presented)."""
    out: dict[str, tuple[CertificateSeen, int, str]] = {}
    for t in peers:
        for cert in t.certificates:
            key = cert.thumbprint.upper()
            old = out.get(key)
            n = cert.sessions + (old[1] if old else 0)
            out[key] = (cert, n, max(t.last, old[2]) if old else t.last)
    return out


@rule(
    id="EXC-E006",
    title="A receive connector presented an expired or unexpected certificate",
    severity=Severity.HIGH,
    rationale="""The receive protocol logs name the certificate each session was offered. An expired one
        makes every validating sender (MTA-STS, DANE, a partner's TLS-enforcing connector) refuse the
        connection and queue the mail; one other than the export names means the export and the
        server disagree (a renewal not bound, a certificate picked by FQDN). Judged on what the
        logs show, whatever the exported AuthMechanism: the export may postdate the logs.""",
    references=[GET_CERT, SET_RECEIVE, RFC8461_5],
    remediation="""none: renew the certificate, enable it for SMTP (Enable-ExchangeCertificate -Services
        SMTP) and set TlsCertificateName to the new one; remove the expired one.""",
    each=EACH_RECEIVE_CONNECTOR,
)
def certificate_on_the_wire(ctx: Context, c: ReceiveConnector) -> Result:
    seen = _seen(_sessions(ctx, c))
    if not seen:
        return
    expected = _expected(ctx, c)
    known = {x.thumbprint.upper() for x in expected} if expected is not None else None
    problems: list[str] = []
    worst = Severity.MEDIUM
    for thumb, (cert, n, last) in sorted(seen.items()):
        if cert.not_after is not None and cert.not_after < last:
            problems.append(
                f"{cert.subject} ({thumb[:8]}…) expired {cert.not_after[:10]}, presented in {n} session(s)"
            )
            worst = Severity.HIGH
        elif known is not None and thumb not in known:
            problems.append(
                f"{cert.subject} ({thumb[:8]}…) in {n} session(s), not the certificate the export names"
            )
    if problems:
        yield Hit(
            Target.of(c),
            "certificate (seen)",
            sorted(seen),
            "The logs show " + "; ".join(problems) + ".",
            severity=worst,
        )


_INTERNAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
)


def _private(ip: str) -> bool:
    """An internal sender (RFC 1918, CGNAT, loopback, ULA): not an internet peer."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr.version == n.version and addr in n for n in _INTERNAL)


@rule(
    id="EXC-E007",
    title="Senders deliver to this receive connector in plaintext",
    severity=Severity.LOW,
    rationale="""These senders delivered without TLS in the period: exactly the ones RequireTLS on this
        connector would refuse. Before requiring TLS, ask them to turn it on (a scanner or an old
        application often just needs a setting); on an internet MX RequireTLS is wrong anyway (RFC 3207
        §4: a publicly referenced server must not require it).""",
    references=[RFC3207_4, SET_RECEIVE],
    remediation="none: ask the senders named to use STARTTLS; then RequireTLS refuses nobody who matters.",
    each=EACH_RECEIVE_CONNECTOR,
)
def plaintext_senders(ctx: Context, c: ReceiveConnector) -> Result:
    if c.require_tls is True:
        return  # their sessions were refused already (the refusals say so)
    plain: dict[str, int] = defaultdict(int)
    names: dict[str, str] = {}
    for t in _sessions(ctx, c):
        if t.plaintext:
            plain[t.remote_ip] += t.plaintext
            if t.remote_host:
                names.setdefault(t.remote_ip, t.remote_host)
    if not plain:
        return
    ranked = sorted(plain.items(), key=lambda x: (-x[1], x[0]))
    shown = ", ".join(
        f"{ip}{f' ({names[ip]})' if ip in names else ''} x{n}" for ip, n in ranked[:TOP_SENDERS]
    )
    yield Hit(
        Target.of(c),
        "senders in plaintext",
        len(plain),
        f"{len(plain)} sender(s) delivered {sum(plain.values())} session(s) in plaintext (what RequireTLS "
        f"here would refuse); top {min(TOP_SENDERS, len(plain))}: {shown}.",
        severity=Severity.INFO if all(_private(ip) for ip in plain) else None,
    )


def _answering(ctx: Context, failure: MxFailures) -> list[str]:
    """The receive connectors (and the certificate they presented) that answer for the MX: by the
    receiving address the report names, else by the connector's FQDN."""
    out: list[str] = []
    ips = set(failure.receiving_ips)
    seen: set[str] = set()
    for t in traffic(ctx, "inbound"):
        if t.local_ip in ips and t.connector not in seen:
            seen.add(t.connector)
            certs = ", ".join(
                f"{x.subject} {x.thumbprint[:8]}…" + (f" expiring {x.not_after[:10]}" if x.not_after else "")
                for x in t.certificates[:2]
            )
            out.append(f"{t.connector} at {t.local_ip}" + (f" presenting {certs}" if certs else ""))
    if out:
        return out
    named = [
        c
        for c in ctx.org.receive_connectors
        if c.fqdn is not UNKNOWN and c.fqdn and normalize(c.fqdn) == failure.mx
    ]
    # Of the connectors named for the MX, the ones the reporters really delivered to.
    reporters = [c for c in named if any(big_sender(t.remote_host) for t in _sessions(ctx, c))] or named
    for c in reporters:
        certs = ", ".join(
            f"{x.subject} {thumb[:8]}…" + (f" expiring {x.not_after[:10]}" if x.not_after else "")
            for thumb, (x, _, _) in sorted(_seen(_sessions(ctx, c)).items())
        )
        out.append(f"{c.identity} (FQDN {c.fqdn})" + (f" presenting {certs}" if certs else ""))
    return out


@rule(
    id="EXC-E008",
    title="Senders report TLS failures at our MX (TLS-RPT)",
    severity=Severity.HIGH,
    rationale="""TLS-RPT aggregate reports (RFC 8460) are the senders' own account: each failure is a
        session that did not get the TLS our MTA-STS or DANE policy promises. Under mode enforce that
        mail is deferred and bounced; under testing it went with weaker protection. Joined with the
        receive connectors that answer for the MX and the certificate they presented.""",
    references=[RFC8460_3, RFC8461_5],
    remediation="""none: fix what the result type names (certificate-expired: renew the certificate of the
        receive connectors named; starttls-not-supported: a certificate for STARTTLS; sts-policy-invalid
        or validation-failure: the MX list of the policy).""",
    each=Each("reported domain", report_domains, lambda d: Target("Domain", d)),
)
def reported_failures(ctx: Context, domain: str) -> Result:
    failures = report_failures(ctx, domain)
    if not failures:
        return
    parts = []
    for f in failures:
        joined = _answering(ctx, f)
        parts.append(
            f"{f.result_type} at {f.mx} x{f.count} ({', '.join(f.reporters)})"
            + (f", answered by {'; '.join(joined)}" if joined else "")
        )
    yield Hit(
        Target("Domain", domain),
        "tls_reports.failures",
        sum(f.count for f in failures),
        "The TLS reports of the period show " + "; ".join(parts) + ".",
    )
