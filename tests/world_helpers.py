"""Constructed facts and model for the cross-check rule tests (EXC-W…), and the simulated
Exchange that every command they propose must pass (tests/test_remediation.py)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import replace
from typing import Any

from exconn.fix import Fix, NewCommand, SetCommand
from exconn.model import (
    AcceptedDomain,
    AcceptedDomainType,
    AddressSpace,
    AuthMechanism,
    Binding,
    ExchangeCertificate,
    IPRange,
    Organization,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    SmartHostAuthMechanism,
    Source,
    TransportRole,
)
from exconn.posture.errors import ProbeError
from exconn.posture.facts import (
    CertificateFacts,
    DaneFacts,
    DomainPosture,
    MtaStsFacts,
    MtaStsPolicy,
    MxFacts,
    MxHostFacts,
    MxRecord,
    TlsRptFacts,
)
from exconn.rules.base import Context, Report, Rule, Severity, evaluate
from tests.test_remediation import apply, norm, state_of, validate

NOW = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
SRC = Source("test.xml")
EVERYTHING = IPRange(
    "0.0.0.0-255.255.255.255", ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("255.255.255.255")
)
LE = "CN=R11, O=Let's Encrypt, C=US"


# --- facts ----------------------------------------------------------------------------------------


def host(
    name: str,
    *,
    probe: str = "done",
    starttls: bool = True,
    trusted: bool = True,
    name_matches: bool = True,
    expired: bool = False,
    sans: tuple[str, ...] | None = None,
) -> MxHostFacts:
    if probe != "done":
        return MxHostFacts(name, None, probe=probe, errors=(ProbeError("connect-failed", "refused"),))
    cert = CertificateFacts(
        subject=f"CN={name}",
        sans=sans if sans is not None else (name,),
        issuer="CN=Test CA",
        not_before="2025-01-01T00:00:00Z",
        not_after="2026-01-01T00:00:00Z",
        trusted=trusted,
        name_matches=name_matches,
        expired=expired,
    )
    return MxHostFacts(
        name,
        None,
        probe="done",
        starttls=starttls,
        tls_established=starttls or None,
        certificate=cert if starttls else None,
    )


def posture(
    domain: str,
    mx: tuple[str, ...] = (),
    *,
    mode: str | None = "enforce",
    patterns: tuple[str, ...] | None = None,
    sts_status: str | None = None,
    tlsrpt: str = "valid",
    dane: str = "absent",
    hosts: tuple[MxHostFacts, ...] | None = None,
    sts_id: str = "20240101000000",
    max_age: int | None = None,
) -> DomainPosture:
    mx = mx or (f"mx.{domain}",)
    if mode is None:
        sts = MtaStsFacts(status=sts_status or "absent")
    else:
        age = max_age if max_age is not None else (604800 if mode == "enforce" else 86400)
        policy = MtaStsPolicy("STSv1", mode, patterns if patterns is not None else mx, age)
        sts = MtaStsFacts(
            status=sts_status or "valid", record=f"v=STSv1; id={sts_id}", id=sts_id, policy=policy
        )
    if sts.status == "error":
        sts = MtaStsFacts(status="error", errors=(ProbeError("dns-timeout", "no answer"),))
    rpt = (
        TlsRptFacts("valid", "v=TLSRPTv1; rua=mailto:tlsrpt@" + domain, ("mailto:tlsrpt@" + domain,))
        if tlsrpt == "valid"
        else TlsRptFacts(tlsrpt, errors=(ProbeError("dns-servfail", "x"),) if tlsrpt == "error" else ())
    )
    return DomainPosture(
        domain=domain,
        observed_at="2025-06-02T12:00:00Z",
        mx=MxFacts("ok", tuple(MxRecord(h, 10 * (i + 1)) for i, h in enumerate(mx))),
        mta_sts=sts,
        tlsrpt=rpt,
        dane=DaneFacts(dane),
        mx_hosts=hosts if hosts is not None else tuple(host(h) for h in mx),
    )


# --- model ----------------------------------------------------------------------------------------


def cert(
    thumb: str, names: tuple[str, ...], *, not_after: dt.datetime, issuer: str = LE
) -> ExchangeCertificate:
    return ExchangeCertificate(
        thumb,
        SRC,
        server="EX01",
        subject=f"CN={names[0]}",
        issuer=issuer,
        not_before=NOW - dt.timedelta(days=400),
        not_after=not_after,
        certificate_domains=names,
        services=frozenset({"SMTP", "IIS"}),
        status="Valid",
    )


GOOD_CERT = cert("AA" * 20, ("mail.fabrikam.com", "fabrikam.com"), not_after=NOW + dt.timedelta(days=300))
OLD_CERT = cert(
    "BB" * 20, ("mail.fabrikam.com",), not_after=NOW - dt.timedelta(days=10), issuer="CN=Old CA, O=Old"
)


def frontend(**kw: Any) -> ReceiveConnector:
    base = ReceiveConnector(
        "EX01\\Default Frontend EX01",
        "Default Frontend EX01",
        SRC,
        server="EX01",
        enabled=True,
        auth_mechanism=AuthMechanism.TLS | AuthMechanism.INTEGRATED | AuthMechanism.EXCHANGE_SERVER,
        permission_groups=PermissionGroups.ANONYMOUS_USERS | PermissionGroups.EXCHANGE_SERVERS,
        bindings=(Binding("0.0.0.0", 25, "0.0.0.0:25"),),
        remote_ip_ranges=(EVERYTHING,),
        require_tls=False,
        domain_secure_enabled=False,
        transport_role=TransportRole.FRONTEND,
        fqdn="mail.fabrikam.com",
        tls_certificate_name=None,
        tls_domain_capabilities=(),
        extended_protection_policy="None",
    )
    return replace(base, **kw)


def send(name: str, space: str, **kw: Any) -> SendConnector:
    address, _, cost = space.partition(";")
    kind, _, domain = address.partition(":")
    base = SendConnector(
        name,
        name,
        SRC,
        enabled=True,
        address_spaces=(AddressSpace(kind, domain, int(cost or 1), space),),
        dns_routing_enabled=True,
        smart_hosts=(),
        port=25,
        fqdn="mail.fabrikam.com",
        ignore_starttls=False,
        require_tls=False,
        tls_auth_level=None,
        tls_domain=None,
        tls_certificate_name=None,
        smart_host_auth_mechanism=SmartHostAuthMechanism.NONE,
        authentication_credential_set=False,
        domain_secure_enabled=False,
        cloud_services_mail_enabled=False,
        is_scoped_connector=False,
        source_transport_servers=("EX01", "EX02"),
        frontend_proxy_enabled=True,
        source_ip_address="0.0.0.0",
        use_external_dns_servers_enabled=False,
        max_message_size=36700160,
        protocol_logging_level="Verbose",
        connection_inactivity_timeout="00:10:00",
    )
    return replace(base, **kw)


INTERNET = send("Internet", "SMTP:*;1")


def org(*, send_connectors: tuple[SendConnector, ...] = (INTERNET,), **kw: Any) -> Organization:
    defaults: dict[str, Any] = {
        "accepted_domains": (
            AcceptedDomain("fabrikam.com", "fabrikam.com", SRC, AcceptedDomainType.AUTHORITATIVE, True),
            AcceptedDomain(
                "lab.fabrikam.local", "lab.fabrikam.local", SRC, AcceptedDomainType.INTERNAL_RELAY
            ),
        ),
        "receive_connectors": (frontend(),),
        "certificates": (GOOD_CERT,),
    }
    defaults.update(kw)
    return Organization(send_connectors=send_connectors, sources=("test.xml",), **defaults)


OURS = posture("fabrikam.com", ("mail.fabrikam.com",))


def run(r: Rule, o: Organization, *postures: DomainPosture) -> Report:
    return evaluate(Context(o, NOW, {p.domain: p for p in postures}, offline=False), [r])


def ctx_of(o: Organization, *postures: DomainPosture) -> Context:
    return Context(o, NOW, {p.domain: p for p in postures}, offline=False)


def report_of(o: Organization, *postures: DomainPosture, tlsrpt_rua: str | None = None) -> Report:
    """Every rule over the postures: the findings the DNS writer reads."""
    return evaluate(Context(o, NOW, {p.domain: p for p in postures}, offline=False, tlsrpt_rua=tlsrpt_rua))


def hits(report: Report) -> list[tuple[str, str, Severity]]:
    return [(f.target.kind, f.target.identity, f.severity) for f in report.findings]


def skipped(report: Report) -> list[str]:
    assert not [s for s in report.skipped if "internal error" in s.reason], report.skipped
    return [s.target.identity if s.target else "" for s in report.skipped]


# --- simulated Exchange, for the commands the rules propose ---------------------------------------


def new_state(cmd: NewCommand) -> dict[str, Any]:
    state: dict[str, Any] = {
        "ignorestarttls": False,
        "requiretls": False,
        "tlsauthlevel": None,
        "tlsdomain": None,
        "domainsecureenabled": False,
        "dnsroutingenabled": True,
        "smarthosts": frozenset(),
        "smarthostauthmechanism": "none",
        "authenticationcredential": None,
        "cloudservicesmailenabled": False,
    }
    for name, value in cmd.parameters:
        if name.lower() in state:
            state[name.lower()] = norm(name, value)
    return state


def assert_valid(o: Organization, fixes: tuple[Fix, ...]) -> None:
    for cmd in fixes:
        if isinstance(cmd, NewCommand):
            assert validate(cmd.cmdlet, new_state(cmd)) == [], cmd.render()
            continue
        assert isinstance(cmd, SetCommand)
        pool: list[Any] = [*o.send_connectors, *o.receive_connectors]
        obj = next(x for x in pool if x.identity == cmd.identity)
        before = state_of(obj)
        after = apply(before, cmd)
        assert validate(cmd.cmdlet, after) == [], cmd.render()
        assert apply(after, cmd, rollback=True) == before
