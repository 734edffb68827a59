"""Inbound cross-check rules (EXC-W001..W007) on constructed facts and model.

Every rule has a test that fires, one that stays quiet, and one where a missing or failed
observation makes it say it could not judge. Every generated command is checked against the
simulated write-time validation of tests/test_remediation.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from exconn.fix import SetCommand
from exconn.model import UNKNOWN, AuthMechanism, CertificateName, CertificateNameStatus, Organization
from exconn.posture.facts import DaneFacts
from exconn.remediate.dns import write_dns
from exconn.rules import inbound, policy
from exconn.rules.base import Context, Severity, evaluate
from tests.world_helpers import (
    GOOD_CERT,
    LE,
    NOW,
    OLD_CERT,
    OURS,
    assert_valid,
    ctx_of,
    frontend,
    hits,
    host,
    org,
    posture,
    report_of,
    run,
    skipped,
)

# --- registry -------------------------------------------------------------------------------------


def test_world_rules_are_declared_and_need_posture() -> None:
    from exconn.rules.base import all_rules

    mine = [r for r in all_rules() if r.id.startswith("EXC-W")]
    assert [r.id for r in mine] == [f"EXC-W{n:03d}" for n in range(1, 13)]
    assert all(r.needs_posture for r in mine)
    # Offline, none of them runs.
    report = evaluate(Context(org(), NOW, {}, offline=True))
    assert not any(rid.startswith("EXC-W") for rid in report.rules_run)


# --- EXC-W001 policy covers the MX hosts ----------------------------------------------------------


def test_w001_fires_when_an_mx_is_not_in_the_policy() -> None:
    p = posture(
        "fabrikam.com",
        ("mail.fabrikam.com", "mx2.fabrikam.com"),
        patterns=("mail.fabrikam.com", "old.fabrikam.com"),
    )
    report = run(inbound.policy_covers_mx, org(), p)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    message = report.findings[0].message
    assert "mx2.fabrikam.com" in message and "old.fabrikam.com" in message
    assert p.mta_sts.policy is not None
    testing = replace(p, mta_sts=replace(p.mta_sts, policy=replace(p.mta_sts.policy, mode="testing")))
    assert hits(run(inbound.policy_covers_mx, org(), testing)) == [
        ("Domain", "fabrikam.com", Severity.MEDIUM)
    ]


def test_w001_quiet_with_one_label_wildcard_and_cannot_judge_without_facts() -> None:
    covered = posture("fabrikam.com", ("mail.fabrikam.com", "mx2.fabrikam.com"), patterns=("*.fabrikam.com",))
    assert hits(run(inbound.policy_covers_mx, org(), covered)) == []
    # `*.` is one label: a.b.fabrikam.com is not covered.
    deep = posture("fabrikam.com", ("a.b.fabrikam.com",), patterns=("*.fabrikam.com",))
    assert len(run(inbound.policy_covers_mx, org(), deep).findings) == 1
    errored = posture("fabrikam.com", ("mail.fabrikam.com",), sts_status="error")
    assert skipped(run(inbound.policy_covers_mx, org(), errored)) == ["fabrikam.com"]
    assert skipped(run(inbound.policy_covers_mx, org())) == ["fabrikam.com"]  # not observed at all


# --- EXC-W002 receive connectors behind the MX ----------------------------------------------------


def test_w002_connector_without_tls_gets_tls_added() -> None:
    o = org(receive_connectors=(frontend(auth_mechanism=AuthMechanism.INTEGRATED),))
    p = posture("fabrikam.com", ("mail.fabrikam.com",), hosts=(host("mail.fabrikam.com", starttls=False),))
    report = run(inbound.mx_served_with_tls, o, p)
    assert hits(report) == [("ReceiveConnector", "EX01\\Default Frontend EX01", Severity.HIGH)]
    f = report.findings[0]
    assert "STARTTLS is never offered" in f.message and "STARTTLS not offered" in f.message
    assert f.fix[0].render() == (
        "Set-ReceiveConnector -Identity 'EX01\\Default Frontend EX01' -AuthMechanism @('Tls','Integrated')"
    )
    assert_valid(o, f.fix)


def test_w002_expired_certificate_is_replaced_by_a_current_one() -> None:
    old_name = CertificateName(
        f"<I>{OLD_CERT.issuer}<S>CN=mail.fabrikam.com",
        str(OLD_CERT.issuer),
        "CN=mail.fabrikam.com",
        "mail.fabrikam.com",
        CertificateNameStatus.OK,
    )
    o = org(receive_connectors=(frontend(tls_certificate_name=old_name),), certificates=(GOOD_CERT, OLD_CERT))
    report = run(
        inbound.mx_served_with_tls, o, posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing")
    )
    assert hits(report) == [("ReceiveConnector", "EX01\\Default Frontend EX01", Severity.MEDIUM)]
    assert "only expired certificates" in report.findings[0].message
    fix = report.findings[0].fix[0]
    assert isinstance(fix, SetCommand) and fix.changes[0].new == f"<I>{LE}<S>CN=mail.fabrikam.com"


def test_w002_exchange_online_mx_is_microsofts_and_checks_the_patterns() -> None:
    exo = "fabrikam-com.mail.protection.outlook.com"
    uncovered = posture("fabrikam.com", (exo,), patterns=("mail.fabrikam.com",), hosts=(host(exo),))
    report = run(inbound.mx_served_with_tls, org(receive_connectors=()), uncovered)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    assert "Microsoft's" in report.findings[0].message
    assert "mx: *.mail.protection.outlook.com" in report.findings[0].message
    covered = posture("fabrikam.com", (exo,), patterns=("*.mail.protection.outlook.com",))
    assert hits(run(inbound.mx_served_with_tls, org(receive_connectors=()), covered)) == []
    # W001 leaves the Exchange Online host to W002, so the problem is reported once.
    assert hits(run(inbound.policy_covers_mx, org(), uncovered)) == []


def test_w002_quiet_on_a_sound_mx_and_cannot_judge_an_unprobed_foreign_mx() -> None:
    assert hits(run(inbound.mx_served_with_tls, org(), OURS)) == []
    gateway = posture("fabrikam.com", ("gw.fabrikam.com",), hosts=(host("gw.fabrikam.com", probe="error"),))
    assert skipped(run(inbound.mx_served_with_tls, org(), gateway)) == ["fabrikam.com"]
    # The probe saw a failure that no connector explains: reported on the domain.
    failing = posture("fabrikam.com", ("gw.fabrikam.com",), hosts=(host("gw.fabrikam.com", expired=True),))
    report = run(inbound.mx_served_with_tls, org(), failing)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    assert "no exported receive connector explains it" in report.findings[0].message


# --- EXC-W003 / EXC-W004 mode --------------------------------------------------------------------


def test_w003_testing_with_every_mx_passing_proposes_enforce() -> None:
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing")
    report = run(inbound.testing_ready_for_enforce, org(), p)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.LOW)]
    proposed = policy.proposed_policy(ctx_of(org(), p), p)
    assert proposed.mode == "enforce" and proposed.max_age == 604800


def test_w003_quiet_when_an_mx_fails_and_cannot_judge_unprobed() -> None:
    failing = posture(
        "fabrikam.com",
        ("mail.fabrikam.com",),
        mode="testing",
        hosts=(host("mail.fabrikam.com", trusted=False),),
    )
    assert hits(run(inbound.testing_ready_for_enforce, org(), failing)) == []
    assert policy.proposed_policy(ctx_of(org(), failing), failing).mode == "testing"
    unprobed = posture(
        "fabrikam.com",
        ("mail.fabrikam.com",),
        mode="testing",
        hosts=(host("mail.fabrikam.com", probe="skipped"),),
    )
    assert skipped(run(inbound.testing_ready_for_enforce, org(), unprobed)) == ["fabrikam.com"]


def _two_frontends() -> Organization:
    """EX01 answers as mail.fabrikam.com with a current certificate, EX02 with an expired one: the
    probe reaches one of them."""
    old_name = CertificateName(
        f"<I>{OLD_CERT.issuer}<S>CN=mail.fabrikam.com",
        str(OLD_CERT.issuer),
        "CN=mail.fabrikam.com",
        "mail.fabrikam.com",
        CertificateNameStatus.OK,
    )
    ex02 = frontend(
        identity="EX02\\Default Frontend EX02",
        name="Default Frontend EX02",
        server="EX02",
        tls_certificate_name=old_name,
    )
    return org(
        receive_connectors=(frontend(), ex02), certificates=(GOOD_CERT, replace(OLD_CERT, server="EX02"))
    )


def test_w003_no_enforce_while_a_connector_behind_the_mx_fails() -> None:
    """The probe passed on one server, but EXC-W002 sees an expired certificate on another behind the
    same MX name: no enforce (rule, proposed policy and DNS file alike)."""
    o = _two_frontends()
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing")
    assert hits(run(inbound.mx_served_with_tls, o, p)) == [
        ("ReceiveConnector", "EX02\\Default Frontend EX02", Severity.MEDIUM)
    ]
    assert hits(run(inbound.testing_ready_for_enforce, o, p)) == []
    choice = policy.mode_choice(ctx_of(o, p), p, tlsrpt_rua="mailto:tls@fabrikam.com")
    assert choice.mode == "testing" and "EX02\\Default Frontend EX02" in choice.why
    assert hits(run(inbound.policy_out_of_date, o, p)) == []  # the testing policy stays as it is
    # A connector that may answer for the MX but cannot be judged: not every MX is known to pass.
    unknown = org(receive_connectors=(frontend(), frontend(identity="EX03\\X", fqdn=UNKNOWN)))
    assert skipped(run(inbound.testing_ready_for_enforce, unknown, p)) == ["fabrikam.com"]
    assert policy.proposed_mode(ctx_of(unknown, p), p) == "testing"


def test_w004_enforce_with_a_failing_connector_behind_a_passing_mx() -> None:
    o = _two_frontends()
    report = run(inbound.enforce_with_failing_mx, o, OURS)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]  # not critical: EX01 passes
    assert "EX02\\Default Frontend EX02" in report.findings[0].message
    assert policy.proposed_mode(ctx_of(o, OURS), OURS) == "testing"


def test_w003_no_enforce_without_tlsrpt_unless_a_rua_is_given(tmp_path: Path) -> None:
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing", tlsrpt="absent")
    assert hits(run(inbound.testing_ready_for_enforce, org(), p)) == []
    ctx = ctx_of(org(), p)
    choice = policy.mode_choice(ctx, p)
    assert choice.mode == "testing" and "TLS-RPT" in choice.why
    assert policy.proposed_mode(ctx, p, tlsrpt_rua="mailto:tls@fabrikam.com") == "enforce"
    assert "stays in mode testing" in run(inbound.mta_sts_without_tlsrpt, org(), p).findings[0].message
    write_dns(report_of(org(), p), tmp_path / "a", generated_at=NOW)
    folder = tmp_path / "a" / "dns" / "fabrikam.com"
    assert b"mode: testing" in (folder / "mta-sts.txt").read_bytes()
    assert "no valid TLS-RPT record" in (folder / "README.txt").read_text()
    write_dns(report_of(org(), p, tlsrpt_rua="mailto:tls@fabrikam.com"), tmp_path / "b", generated_at=NOW)
    folder = tmp_path / "b" / "dns" / "fabrikam.com"
    assert b"mode: enforce" in (folder / "mta-sts.txt").read_bytes()
    readme = (folder / "README.txt").read_text()
    assert "publish _smtp._tls.fabrikam.com (step 4) first" in readme
    # An enforced policy is not downgraded for lack of TLS-RPT.
    enforced = posture("fabrikam.com", ("mail.fabrikam.com",), tlsrpt="absent")
    assert policy.proposed_mode(ctx_of(org(), enforced), enforced) == "enforce"


def test_w004_enforce_with_a_failing_mx_proposes_testing() -> None:
    two = ("mail.fabrikam.com", "mx2.fabrikam.com")
    one_bad = posture("fabrikam.com", two, hosts=(host(two[0]), host(two[1], name_matches=False)))
    report = run(inbound.enforce_with_failing_mx, org(), one_bad)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.HIGH)]
    assert "does not name mx2.fabrikam.com" in report.findings[0].message
    assert policy.proposed_policy(ctx_of(org(), one_bad), one_bad).mode == "testing"
    all_bad = posture("fabrikam.com", two, hosts=(host(two[0], starttls=False), host(two[1], expired=True)))
    assert hits(run(inbound.enforce_with_failing_mx, org(), all_bad)) == [
        ("Domain", "fabrikam.com", Severity.CRITICAL)
    ]


def test_w004_quiet_when_all_pass_and_cannot_judge_unprobed() -> None:
    assert hits(run(inbound.enforce_with_failing_mx, org(), OURS)) == []
    unprobed = posture("fabrikam.com", hosts=(host("mx.fabrikam.com", probe="error"),))
    assert skipped(run(inbound.enforce_with_failing_mx, org(), unprobed)) == ["fabrikam.com"]


# --- EXC-W005 TLS-RPT, EXC-W006 no MTA-STS, EXC-W007 id -------------------------------------------


def test_w005_tlsrpt() -> None:
    absent = posture("fabrikam.com", tlsrpt="absent")
    assert hits(run(inbound.mta_sts_without_tlsrpt, org(), absent)) == [
        ("Domain", "fabrikam.com", Severity.LOW)
    ]
    assert hits(run(inbound.mta_sts_without_tlsrpt, org(), OURS)) == []
    assert skipped(run(inbound.mta_sts_without_tlsrpt, org(), posture("fabrikam.com", tlsrpt="error"))) == [
        "fabrikam.com"
    ]


def test_w006_no_policy() -> None:
    none = posture("fabrikam.com", mode=None)
    assert hits(run(inbound.no_mta_sts, org(), none)) == [("Domain", "fabrikam.com", Severity.MEDIUM)]
    assert hits(run(inbound.no_mta_sts, org(), OURS)) == []
    assert hits(run(inbound.no_mta_sts, org(), replace(none, dane=DaneFacts("valid")))) == []
    assert skipped(run(inbound.no_mta_sts, org(), posture("fabrikam.com", sts_status="error"))) == [
        "fabrikam.com"
    ]


def test_w007_policy_that_must_change_needs_a_new_id() -> None:
    stale = posture(
        "fabrikam.com", ("mail.fabrikam.com",), patterns=("mail.fabrikam.com", "old.fabrikam.com")
    )
    report = run(inbound.policy_out_of_date, org(), stale)
    assert hits(report) == [("Domain", "fabrikam.com", Severity.LOW)]
    assert "20240101000000" in report.findings[0].message and "old.fabrikam.com" in report.findings[0].message
    assert hits(run(inbound.policy_out_of_date, org(), OURS)) == []
    short = posture("fabrikam.com", ("mail.fabrikam.com",), max_age=300)
    assert "max_age 300 -> 604800" in run(inbound.policy_out_of_date, org(), short).findings[0].message
