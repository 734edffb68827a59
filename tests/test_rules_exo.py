"""Exchange Online connector rules: each fires, stays quiet, and says when it cannot judge.

The fixes are checked by a simulated Set-OutboundConnector / Set-InboundConnector write-time
validator (the rules of the Microsoft Learn cmdlet pages), in the style of test_remediation.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from exconn.fix import Fix, SetCommand
from exconn.model import (
    UNKNOWN,
    InboundConnector,
    Organization,
    OutboundConnector,
    Source,
    TlsAuthLevel,
)
from exconn.remediate.script import plan_changes
from exconn.rules import exo
from exconn.rules.base import Context, Report, Rule, Severity, evaluate
from tests.rule_helpers import cannot, fired
from tests.test_remediation import apply, norm

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
SRC = Source("exo.xml")


# --- simulated Exchange Online -------------------------------------------------------------------


def state_of(obj: Any) -> dict[str, Any]:
    if isinstance(obj, OutboundConnector):
        raw = {
            "TlsSettings": obj.tls_settings,
            "TlsDomain": obj.tls_domain,
            "UseMXRecord": obj.use_mx_record,
            "SmartHosts": obj.smart_hosts,
        }
    else:
        assert isinstance(obj, InboundConnector)
        raw = {
            "RequireTls": obj.require_tls,
            "TlsSenderCertificateName": obj.tls_sender_certificate_name,
            "RestrictDomainsToCertificate": obj.restrict_domains_to_certificate,
        }
    assert all(v is not UNKNOWN for v in raw.values()), "a fix on an object whose state is not known"
    return {k.lower(): norm(k, v) for k, v in raw.items()}


def _covers(tls_domain: str, host: str) -> bool:
    td, h = tls_domain.lower(), host.lower()
    return h == td[2:] or h.endswith(td[1:]) if td.startswith("*.") else h == td


def validate_exo(cmdlet: str, s: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    if cmdlet == "Set-OutboundConnector":
        level = s["tlssettings"]
        smart = not s["usemxrecord"]
        if s["tlsdomain"] is not None and level != "domainvalidation":
            errors.append("TlsDomain is used only with TlsSettings DomainValidation")
        if s["tlsdomain"] is not None and (s["tlsdomain"] == "*" or " " in s["tlsdomain"]):
            errors.append("TlsDomain invalid")
        if smart and not s["smarthosts"]:
            errors.append("UseMXRecord $false needs SmartHosts")
        # exconn's own bar for its fixes (not a documented write-time error): a name check on smart
        # hosts must name them.
        names = [h for h in s["smarthosts"] if any(ch.isalpha() for ch in h) and ":" not in h]
        if smart and level == "domainvalidation":
            if not s["tlsdomain"]:
                errors.append("smart hosts + DomainValidation need TlsDomain")
            elif not all(_covers(s["tlsdomain"], h) for h in names):
                errors.append("TlsDomain does not cover the smart hosts")
    else:
        assert cmdlet == "Set-InboundConnector", cmdlet
        if s["tlssendercertificatename"] and not s["requiretls"]:
            errors.append("TlsSenderCertificateName needs RequireTls")
        if s["restrictdomainstocertificate"] and not s["tlssendercertificatename"]:
            errors.append("RestrictDomainsToCertificate needs TlsSenderCertificateName")
    return errors


def find_object(org: Organization, cmd: SetCommand) -> Any:
    pool: Iterable[Any] = (
        org.outbound_connectors if cmd.cmdlet == "Set-OutboundConnector" else org.inbound_connectors
    )
    return next(o for o in pool if o.identity == cmd.identity)


def assert_exo_fixes_valid(org: Organization, fixes: Iterable[Fix]) -> None:
    for cmd in fixes:
        assert isinstance(cmd, SetCommand)
        assert cmd.cmdlet in ("Set-OutboundConnector", "Set-InboundConnector")
        before = state_of(find_object(org, cmd))
        after = apply(before, cmd)
        assert validate_exo(cmd.cmdlet, after) == [], cmd.render()
        assert apply(after, cmd, rollback=True) == before, cmd.render_rollback()


def assert_report_exo_fixes_valid(org: Organization, report: Report) -> None:
    assert_exo_fixes_valid(org, (fix for f in report.findings for fix in f.fix))
    assert_exo_fixes_valid(org, (p.command for p in plan_changes(report)))


# --- connectors ----------------------------------------------------------------------------------


def to_onprem(**kw: Any) -> OutboundConnector:
    """The real Evotec 2019 export (EXO_Get-OutboundConnector_fl_Evotec_2019.txt): sound."""
    base = OutboundConnector(
        "Some Works Connector",
        "Some Works Connector",
        SRC,
        enabled=True,
        connector_type="OnPremises",
        use_mx_record=False,
        smart_hosts=("poczta.evotec.pl",),
        recipient_domains=("evotec.pl",),
        tls_settings=TlsAuthLevel.CERTIFICATE_VALIDATION,
        tls_domain=None,
        mta_sts_mode=None,
        smtp_dane_mode=None,
        cloud_services_mail_enabled=True,
    )
    return replace(base, **kw)


def to_partner(**kw: Any) -> OutboundConnector:
    base = to_onprem(
        identity="To Fabrikam",
        name="To Fabrikam",
        connector_type="Partner",
        smart_hosts=("mx1.fabrikam.com", "mx2.fabrikam.com"),
        recipient_domains=("fabrikam.com",),
        tls_settings=TlsAuthLevel.DOMAIN_VALIDATION,
        tls_domain="*.fabrikam.com",
        cloud_services_mail_enabled=False,
    )
    return replace(base, **kw)


def from_onprem(**kw: Any) -> InboundConnector:
    """The Hybrid Configuration Wizard's shape: certificate-identified."""
    base = InboundConnector(
        "Inbound from on-premises",
        "Inbound from on-premises",
        SRC,
        enabled=True,
        connector_type="OnPremises",
        require_tls=True,
        tls_sender_certificate_name="mail.contoso.com",
        restrict_domains_to_certificate=False,
        restrict_domains_to_ip_addresses=False,
        sender_ip_addresses=(),
        sender_domains=("smtp:*;1",),
    )
    return replace(base, **kw)


def from_partner(**kw: Any) -> InboundConnector:
    """Shaped on the real Evotec 2017 export, with a partner's SenderDomains and forced TLS."""
    base = from_onprem(
        identity="Evotec Support",
        name="Evotec Support",
        connector_type="Partner",
        require_tls=True,
        tls_sender_certificate_name=None,
        restrict_domains_to_ip_addresses=True,
        sender_ip_addresses=("37.59.176.140", "37.59.176.139", "37.59.176.138", "37.59.176.137"),
        sender_domains=("smtp:fabrikam.com;1",),
    )
    return replace(base, **kw)


def run(rule: Rule, *objects: OutboundConnector | InboundConnector) -> Report:
    org = Organization(
        outbound_connectors=tuple(o for o in objects if isinstance(o, OutboundConnector)),
        inbound_connectors=tuple(o for o in objects if isinstance(o, InboundConnector)),
    )
    report = evaluate(Context(org, NOW), [rule])
    assert not [s for s in report.skipped if "internal error" in s.reason]
    assert_report_exo_fixes_valid(org, report)
    return report


def rendered(report: Report) -> list[str]:
    return [fix.render() for f in report.findings for fix in f.fix]


ALL = (
    exo.outbound_without_certificate_check,
    exo.outbound_domain_validation_tls_domain,
    exo.on_premises_inbound_unidentified,
    exo.partner_inbound_without_tls,
    exo.restrict_to_certificate_without_name,
)


def test_every_exo_rule_is_quiet_on_sound_connectors() -> None:
    evotec_inbound = from_partner(sender_domains=("smtp:*;1",), require_tls=False)  # the real 2017 one
    for r in ALL:
        report = run(r, to_onprem(), to_partner(), from_onprem(), from_partner(), evotec_inbound)
        assert report.findings == () and report.skipped == (), r.id


def test_exo_rules_are_registered() -> None:
    from exconn.rules import RULE_MODULES
    from exconn.rules.base import all_rules

    assert "exconn.rules.exo" in RULE_MODULES
    assert {r.id for r in ALL} <= {r.id for r in all_rules()}
    assert [r.id for r in ALL] == ["EXC-O001", "EXC-O002", "EXC-O003", "EXC-O004", "EXC-O005"]


# EXC-O001 ---------------------------------------------------------------------------------------


def test_o001_partner_to_the_whole_internet_is_high_without_a_fix() -> None:
    c = to_partner(
        recipient_domains=("*",), use_mx_record=True, smart_hosts=(), tls_settings=None, tls_domain=None
    )
    report = run(exo.outbound_without_certificate_check, c)
    assert fired(report) == [("To Fabrikam", Severity.HIGH)]
    assert "every internet domain" in report.findings[0].message
    assert "plaintext" in report.findings[0].message
    assert report.findings[0].fix == ()


def test_o001_partner_smart_hosts_get_domain_validation() -> None:
    c = to_partner(tls_settings=TlsAuthLevel.ENCRYPTION_ONLY, tls_domain=None)
    report = run(exo.outbound_without_certificate_check, c)
    assert fired(report) == [("To Fabrikam", Severity.MEDIUM)]
    assert "any certificate" in report.findings[0].message
    assert rendered(report) == [
        "Set-OutboundConnector -Identity 'To Fabrikam' -TlsSettings 'DomainValidation' "
        "-TlsDomain '*.fabrikam.com'"
    ]


def test_o001_on_premises_ip_smart_host_gets_certificate_validation() -> None:
    c = to_onprem(tls_settings=None, smart_hosts=("203.0.113.10",))
    report = run(exo.outbound_without_certificate_check, c)
    assert fired(report) == [("Some Works Connector", Severity.MEDIUM)]
    assert "on-premises servers" in report.findings[0].message
    assert rendered(report) == [
        "Set-OutboundConnector -Identity 'Some Works Connector' -TlsSettings 'CertificateValidation'"
    ]


def test_o001_scoped_mx_routing_gets_certificate_validation_and_clears_tls_domain() -> None:
    # TlsDomain set without DomainValidation is a state Exchange refuses to write: the fix clears it.
    c = to_partner(use_mx_record=True, smart_hosts=(), tls_settings=TlsAuthLevel.ENCRYPTION_ONLY)
    report = run(exo.outbound_without_certificate_check, c)
    (fix,) = report.findings[0].fix
    assert isinstance(fix, SetCommand)
    assert {(p.name, norm(p.name, p.new)) for p in fix.changes} == {
        ("TlsSettings", "certificatevalidation"),
        ("TlsDomain", None),
    }


def test_o001_severity_by_reach() -> None:
    lab = to_partner(identity="lab", tls_settings=None, recipient_domains=("lab.contoso.local",))
    off = to_partner(identity="off", tls_settings=None, recipient_domains=("*",), enabled=False)
    unknown = to_partner(identity="unk", tls_settings=None, recipient_domains=UNKNOWN, enabled=UNKNOWN)
    report = run(exo.outbound_without_certificate_check, lab, off, unknown)
    assert dict(fired(report)) == {"lab": Severity.LOW, "off": Severity.LOW, "unk": Severity.HIGH}
    assert "not exported" in next(f.message for f in report.findings if f.target.identity == "unk")


def test_o001_quiet_and_cannot_judge() -> None:
    report = run(
        exo.outbound_without_certificate_check,
        to_onprem(),
        to_partner(),
        to_partner(identity="x", tls_settings=UNKNOWN),
    )
    assert report.findings == () and cannot(report) == ["x"]
    # Routing unknown: the finding stands, without a fix.
    report = run(exo.outbound_without_certificate_check, to_onprem(tls_settings=None, use_mx_record=UNKNOWN))
    assert len(report.findings) == 1 and report.findings[0].fix == ()


# EXC-O002 ---------------------------------------------------------------------------------------


def test_o002_smart_hosts_without_tls_domain() -> None:
    report = run(exo.outbound_domain_validation_tls_domain, to_partner(tls_domain=None))
    assert fired(report) == [("To Fabrikam", Severity.HIGH)]
    assert "is empty" in report.findings[0].message
    assert rendered(report) == ["Set-OutboundConnector -Identity 'To Fabrikam' -TlsDomain '*.fabrikam.com'"]


def test_o002_tls_domain_not_covering_the_smart_hosts() -> None:
    # Exchange's semantics: a plain TlsDomain is that name only; `*.x` is x and everything below.
    plain_parent = to_partner(identity="parent", tls_domain="fabrikam.com")
    other = to_partner(identity="other", tls_domain="*.contoso.com")
    one_host = to_partner(identity="one", smart_hosts=("relay.fabrikam.com",), tls_domain="mx1.fabrikam.com")
    report = run(exo.outbound_domain_validation_tls_domain, plain_parent, other, one_host)
    assert dict(fired(report)) == {
        "parent": Severity.MEDIUM,
        "other": Severity.MEDIUM,
        "one": Severity.MEDIUM,
    }
    parent = next(f for f in report.findings if f.target.identity == "parent")
    assert "fabrikam.com does not cover smart host(s) mx1.fabrikam.com, mx2.fabrikam.com" in parent.message
    assert sorted(rendered(report)) == [
        "Set-OutboundConnector -Identity 'one' -TlsDomain 'relay.fabrikam.com'",
        "Set-OutboundConnector -Identity 'other' -TlsDomain '*.fabrikam.com'",
        "Set-OutboundConnector -Identity 'parent' -TlsDomain '*.fabrikam.com'",
    ]


def test_o002_bare_star_and_hosts_across_domains_have_no_automatic_name() -> None:
    star = to_partner(identity="star", tls_domain="*")
    across = to_partner(identity="across", smart_hosts=("a.fabrikam.com", "b.contoso.com"), tls_domain=None)
    report = run(exo.outbound_domain_validation_tls_domain, star, across)
    assert dict(fired(report)) == {"star": Severity.HIGH, "across": Severity.HIGH}
    assert rendered(report) == ["Set-OutboundConnector -Identity 'star' -TlsDomain '*.fabrikam.com'"]


def test_o002_quiet_and_cannot_judge() -> None:
    mx = to_partner(identity="mx", use_mx_record=True, smart_hosts=(), tls_domain=None)
    covered = to_partner(identity="deep", smart_hosts=("a.b.fabrikam.com",), tls_domain="*.fabrikam.com")
    assert run(exo.outbound_domain_validation_tls_domain, mx, covered, to_onprem()).findings == ()
    ip = to_partner(identity="ip", smart_hosts=("203.0.113.10",), tls_domain="relay.fabrikam.com")
    report = run(
        exo.outbound_domain_validation_tls_domain,
        ip,
        to_partner(identity="u1", tls_settings=UNKNOWN),
        to_partner(identity="u2", tls_domain=UNKNOWN),
        to_partner(identity="u3", tls_domain=None, use_mx_record=UNKNOWN),
    )
    assert report.findings == () and cannot(report) == ["ip", "u1", "u2", "u3"]


# EXC-O003 ---------------------------------------------------------------------------------------


def test_o003_on_premises_connector_without_certificate_or_ip() -> None:
    c = from_onprem(require_tls=False, tls_sender_certificate_name=None)
    report = run(exo.on_premises_inbound_unidentified, c)
    assert fired(report) == [("Inbound from on-premises", Severity.HIGH)]
    assert report.findings[0].fix == ()
    disabled = run(exo.on_premises_inbound_unidentified, replace(c, enabled=False))
    assert fired(disabled) == [("Inbound from on-premises", Severity.LOW)]


def test_o003_certificate_named_but_tls_not_required_is_fixed_by_require_tls() -> None:
    report = run(exo.on_premises_inbound_unidentified, from_onprem(require_tls=False))
    assert "not enforced" in report.findings[0].message
    assert rendered(report) == ["Set-InboundConnector -Identity 'Inbound from on-premises' -RequireTls:$true"]


def test_o003_quiet_and_cannot_judge() -> None:
    by_ip = from_onprem(
        identity="ip",
        require_tls=False,
        tls_sender_certificate_name=None,
        sender_ip_addresses=("203.0.113.5",),
    )
    partner = from_partner(identity="partner", require_tls=False, sender_ip_addresses=())
    assert run(exo.on_premises_inbound_unidentified, from_onprem(), by_ip, partner).findings == ()
    report = run(
        exo.on_premises_inbound_unidentified,
        from_onprem(identity="t", connector_type=UNKNOWN),
        from_onprem(identity="r", require_tls=UNKNOWN),
        from_onprem(
            identity="n", require_tls=False, tls_sender_certificate_name=None, sender_ip_addresses=UNKNOWN
        ),
    )
    assert report.findings == () and cannot(report) == ["t", "r", "n"]


# EXC-O004 ---------------------------------------------------------------------------------------


def test_o004_partner_domains_without_required_tls() -> None:
    report = run(exo.partner_inbound_without_tls, from_partner(require_tls=False))
    assert fired(report) == [("Evotec Support", Severity.MEDIUM)]
    assert "fabrikam.com" in report.findings[0].message
    assert rendered(report) == ["Set-InboundConnector -Identity 'Evotec Support' -RequireTls:$true"]


def test_o004_no_fix_while_the_connector_cannot_be_written() -> None:
    c = from_partner(require_tls=False, restrict_domains_to_certificate=True)
    report = run(exo.partner_inbound_without_tls, c)
    assert len(report.findings) == 1 and report.findings[0].fix == ()
    assert "EXC-O005" in report.findings[0].message


def test_o004_quiet_and_cannot_judge() -> None:
    any_sender = from_partner(identity="any", require_tls=False, sender_domains=("*",))
    onprem = from_onprem(identity="onprem", require_tls=False)
    assert run(exo.partner_inbound_without_tls, from_partner(), any_sender, onprem).findings == ()
    report = run(
        exo.partner_inbound_without_tls,
        from_partner(identity="t", connector_type=UNKNOWN),
        from_partner(identity="r", require_tls=UNKNOWN),
        from_partner(identity="d", require_tls=False, sender_domains=UNKNOWN),
    )
    assert report.findings == () and cannot(report) == ["t", "r", "d"]


# EXC-O005 ---------------------------------------------------------------------------------------


def test_o005_restriction_without_a_name() -> None:
    report = run(exo.restrict_to_certificate_without_name, from_partner(restrict_domains_to_certificate=True))
    assert fired(report) == [("Evotec Support", Severity.MEDIUM)]
    assert report.findings[0].fix == ()
    assert exo.restrict_to_certificate_without_name.remediation.startswith("none")


def test_o005_quiet_and_cannot_judge() -> None:
    named = from_onprem(restrict_domains_to_certificate=True)
    assert run(exo.restrict_to_certificate_without_name, named, from_partner()).findings == ()
    report = run(
        exo.restrict_to_certificate_without_name,
        from_partner(identity="r", restrict_domains_to_certificate=UNKNOWN),
        from_partner(identity="n", restrict_domains_to_certificate=True, tls_sender_certificate_name=UNKNOWN),
    )
    assert report.findings == () and cannot(report) == ["r", "n"]


# all together -----------------------------------------------------------------------------------


def test_every_exo_fix_and_merged_command_is_valid() -> None:
    objects = (
        to_partner(identity="a", tls_settings=None, tls_domain="*.fabrikam.com"),
        to_partner(identity="b", tls_domain="fabrikam.com"),
        to_onprem(tls_settings=TlsAuthLevel.ENCRYPTION_ONLY),
        from_onprem(require_tls=False),
        from_partner(require_tls=False),
        from_partner(identity="c", require_tls=False, restrict_domains_to_certificate=True),
    )
    org = Organization(
        outbound_connectors=tuple(o for o in objects if isinstance(o, OutboundConnector)),
        inbound_connectors=tuple(o for o in objects if isinstance(o, InboundConnector)),
    )
    report = evaluate(Context(org, NOW), list(ALL))
    assert {f.rule.id for f in report.findings} == {r.id for r in ALL}
    assert_report_exo_fixes_valid(org, report)


def test_validator_rejects_what_exchange_rejects() -> None:
    ok = state_of(to_partner())
    assert validate_exo("Set-OutboundConnector", ok) == []
    assert validate_exo("Set-OutboundConnector", {**ok, "tlssettings": "certificatevalidation"}) != []
    assert validate_exo("Set-OutboundConnector", {**ok, "tlsdomain": None}) != []
    inbound = state_of(from_onprem())
    assert validate_exo("Set-InboundConnector", inbound) == []
    assert validate_exo("Set-InboundConnector", {**inbound, "requiretls": False}) != []
    assert validate_exo("Set-InboundConnector", {**inbound, "restrictdomainstocertificate": True}) == []
    bad = {**inbound, "restrictdomainstocertificate": True, "tlssendercertificatename": None}
    assert validate_exo("Set-InboundConnector", bad) != []
