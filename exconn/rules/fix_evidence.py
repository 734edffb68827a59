"""Would the fix break mail flow? What the logs say about the route a TLS-requiring fix changes.

One place computes it for every finding (the engine calls `fix_evidence` in `_finding`): a fix
that requires TLS or certificate validation towards a send connector, a receive connector or a
domain is looked up in the evidence's traffic for that route. "would-break" when the route had
sessions without TLS (or whose TLS failed) that the fix would refuse, or when the certificates seen
do not carry the TlsDomain the fix sets; "supported" when every session of the period already did
what the fix demands; "no-evidence" when the logs show no session on the route. A fix that only
makes TLS opportunistic (`-IgnoreSTARTTLS:$false`, adding Tls to AuthMechanism) refuses nothing,
so it is never "would-break".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exconn.fix import Fix, NewCommand, PublishMtaSts, SetCommand
from exconn.names import normalize, tls_domain_matches, wildcard_matches

if TYPE_CHECKING:
    from exconn.evidence.model import Evidence, Traffic
    from exconn.model import Organization

SUPPORTED, WOULD_BREAK, NO_EVIDENCE = "supported", "would-break", "no-evidence"

# Parameters whose new value makes Exchange refuse a session without (validated) TLS.
_STRICT = {"requiretls", "tlsauthlevel", "tlsdomain", "domainsecureenabled", "tlssettings"}
_LISTS = {"tlsreceivedomainsecurelist": "inbound", "tlssenddomainsecurelist": "outbound"}


@dataclass(frozen=True, slots=True)
class FixEvidence:
    sessions: int
    tls: int
    plaintext: int  # sessions without TLS, failed negotiations included
    names_ok: int | None  # sessions whose certificate carries the name the fix validates; None: no name
    verdict: str  # supported | would-break | no-evidence
    reason: str  # one sentence: what the logs show on the route

    def json(self) -> dict[str, object]:
        return {
            "sessions": self.sessions,
            "tls": self.tls,
            "plaintext": self.plaintext,
            "names_ok": self.names_ok,
            "verdict": self.verdict,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class _Demand:
    """What a fix demands of one route."""

    direction: str
    strict: bool  # refuses sessions without TLS (else: opportunistic only)
    starttls_on: bool  # also turns IgnoreSTARTTLS off: plaintext the remote offered STARTTLS for ends
    name: str | None  # the TlsDomain the certificate must carry
    hosts_by_name: bool  # DomainValidation without TlsDomain: the certificate must name the host
    connector: str | None = None
    domains: tuple[str, ...] = ()


def _params(cmd: SetCommand | NewCommand) -> dict[str, object]:
    if isinstance(cmd, SetCommand):
        return {c.name.lower(): c.new for c in cmd.changes}
    return {n.lower(): v for n, v in cmd.parameters}


def _text(value: object) -> str:
    return str(getattr(value, "value", value))


def _demand(kind: str, identity: str, cmd: Fix) -> _Demand | None:
    if isinstance(cmd, PublishMtaSts):
        if cmd.mode != "enforce":
            return None
        return _Demand("report", True, False, None, False, domains=(normalize(cmd.domain),))
    params = _params(cmd)
    level = _text(params.get("tlsauthlevel", params.get("tlssettings", ""))).lower()
    strict = any(
        k in _STRICT and v not in (False, None) and not (k == "tlsauthlevel" and level == "encryptiononly")
        for k, v in params.items()
    ) or (params.get("requiretls") is True)
    name = params.get("tlsdomain")
    name_text = _text(name) if name not in (None, "") else None
    opportunistic = params.get("ignorestarttls") is False or "authmechanism" in params
    for key, direction in _LISTS.items():
        if key in params and isinstance(cmd, SetCommand):
            change = next(c for c in cmd.changes if c.name.lower() == key)
            delta = change.list_delta
            added = delta[0] if delta is not None else tuple(_text(v) for v in _iter(change.new))
            if added:
                return _Demand(
                    direction, True, False, None, False, domains=tuple(normalize(d) for d in added)
                )
    if not strict and not opportunistic:
        return None
    if cmd.cmdlet in ("Set-SendConnector", "New-SendConnector"):
        # A new connector has no traffic yet: its route is the mail to the domains it will carry.
        connector = cmd.identity if isinstance(cmd, SetCommand) else None
        domains: tuple[str, ...] = ()
        if isinstance(cmd, NewCommand):
            spaces = [_text(v).split(":")[-1].split(";")[0] for v in _iter(params.get("addressspaces"))]
            domains = tuple(normalize(x) for x in spaces if x and x != "*") or (
                (normalize(identity),) if kind == "Domain" else ()
            )
        return _Demand(
            "outbound",
            strict,
            params.get("ignorestarttls") is False,
            name_text,
            level == "domainvalidation" and name_text is None,
            connector=connector,
            domains=domains,
        )
    if cmd.cmdlet in ("Set-ReceiveConnector", "New-ReceiveConnector"):
        return _Demand("inbound", strict, False, None, False, connector=identity)
    return None


def _iter(value: object) -> Iterable[object]:
    if isinstance(value, str) or value is None:
        return [] if value is None else [value]
    return value if isinstance(value, list | tuple) else [value]


def _route(ev: Evidence, d: _Demand) -> list[Traffic]:
    out = []
    for t in ev.traffic:
        if t.direction != d.direction:
            continue
        if d.connector is not None and t.connector.casefold() != d.connector.casefold():
            continue
        if d.domains and (t.remote_domain is None or normalize(t.remote_domain) not in d.domains):
            continue
        out.append(t)
    return out


def common_name(subject: str) -> str | None:
    from exconn.rules.certs import split_dn

    for part in split_dn(subject):
        key, _, value = part.strip().partition("=")
        if key.strip().upper() == "CN" and value.strip():
            return value.strip()
    return None


def _names_ok(peers: Sequence[Traffic], d: _Demand) -> tuple[int | None, int]:
    """(sessions whose certificate carries the demanded name, sessions with a certificate seen)."""
    if d.name is None and not d.hosts_by_name:
        return None, 0
    ok = seen = 0
    for t in peers:
        want = d.name or t.remote_host
        for c in t.certificates:
            seen += c.sessions
            cn = common_name(c.subject)
            if want and cn and (tls_domain_matches(want, cn) or wildcard_matches(cn, want)):
                ok += c.sessions
    return ok, seen


def _from_reports(ev: Evidence, d: _Demand) -> FixEvidence:
    reports = [r for r in ev.tls_reports if r.policy_domain and normalize(r.policy_domain) in d.domains]
    ok = sum(r.successful for r in reports)
    failed = sum(r.failed for r in reports)
    if not reports:
        return FixEvidence(0, 0, 0, None, NO_EVIDENCE, "no TLS report for the domain in the period")
    if failed:
        return FixEvidence(
            ok + failed, ok, failed, None, WOULD_BREAK, f"the TLS reports show {failed} failed session(s)"
        )
    return FixEvidence(ok, ok, 0, None, SUPPORTED, f"the TLS reports show {ok} session(s), none failed")


def fix_evidence(
    kind: str, identity: str, fixes: Sequence[Fix], org: Organization, ev: Evidence | None
) -> FixEvidence | None:
    """The evidence for the first fix command that requires TLS; None when none does (or no
    evidence was given: then nothing can be said, and the JSON says null)."""
    del org  # the route is named by the fix and the target alone
    if ev is None:
        return None
    demands = [d for d in (_demand(kind, identity, f) for f in fixes) if d is not None]
    if not demands:
        return None
    # The strictest demand decides: the one that may refuse sessions.
    d = max(demands, key=lambda x: (x.strict, x.name is not None or x.hosts_by_name))
    if d.direction == "report":
        return _from_reports(ev, d)
    peers = _route(ev, d)
    sessions = sum(t.sessions for t in peers)
    tls = sum(t.tls for t in peers)
    failed = sum(t.tls_failed for t in peers)
    plain = sum(t.plaintext for t in peers)
    names_ok, with_cert = _names_ok(peers, d)
    if sessions == 0:
        return FixEvidence(0, 0, 0, names_ok, NO_EVIDENCE, "the logs show no session on this route")
    # Plaintext the remote offered STARTTLS for becomes TLS once IgnoreSTARTTLS is off.
    offered = sum(t.plaintext_offered for t in peers) if d.starttls_on else 0
    refused = plain - offered + failed
    base = FixEvidence(sessions, tls, plain + failed, names_ok, SUPPORTED, "")
    if not d.strict:
        return _with(
            base, SUPPORTED, f"{tls} of {sessions} session(s) used TLS; opportunistic TLS refuses none"
        )
    if refused > 0:
        return _with(
            base,
            WOULD_BREAK,
            f"{refused} of {sessions} session(s) on this route had no TLS"
            + (f" ({failed} failed the negotiation)" if failed else "")
            + ": the fix would refuse them",
        )
    if names_ok is not None and with_cert and names_ok < with_cert:
        want = d.name or "the host name"
        return _with(
            base,
            WOULD_BREAK,
            f"{with_cert - names_ok} of {with_cert} session(s) showed a certificate not naming {want}",
        )
    if offered:
        # Supported only because the same fix turns IgnoreSTARTTLS off: say so, not "all used TLS".
        return _with(
            base,
            SUPPORTED,
            f"{tls} of {sessions} session(s) used TLS; the remote offered STARTTLS in the other "
            f"{offered}, which this fix's -IgnoreSTARTTLS:$false makes use it",
        )
    return _with(base, SUPPORTED, f"all {sessions} session(s) on this route used TLS")


def _with(f: FixEvidence, verdict: str, reason: str) -> FixEvidence:
    return FixEvidence(f.sessions, f.tls, f.plaintext, f.names_ok, verdict, reason)
