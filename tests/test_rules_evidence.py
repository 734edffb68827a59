"""The evidence rules (EXC-E…), fix_evidence and audit with logs: each rule fires on the Fabrikam
sample's logs and reports, and stays quiet once the evidence shows the problem gone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from functools import cache
from pathlib import Path

import pytest

from exconn.audit import AuditOptions, run
from exconn.evidence.model import Evidence, PolicyFetch, Traffic
from exconn.evidence.reduce import reduce_paths
from exconn.evidence.saved import dumps
from exconn.model import Organization
from exconn.remediate.script import render_scripts
from exconn.render import Format
from exconn.rules.base import Context, Report, evaluate
from exconn.sources.files import load

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
NOW = dt.datetime(2025, 6, 2, 8, 15, tzinfo=dt.UTC)


@cache
def org() -> Organization:
    return load([SAMPLES / "fabrikam"])


@cache
def evidence() -> Evidence:
    return reduce_paths([SAMPLES / "fabrikam-evidence"], workers=1)


def audit(ev: Evidence | None) -> Report:
    return evaluate(Context(org=org(), now=NOW, evidence=ev))


def hits(report: Report, rule: str) -> dict[str, str]:
    return {f.target.identity: f.severity.label for f in report.findings if f.rule.id == rule}


def _traffic(**changes: object) -> Evidence:
    """The sample evidence with every traffic entry changed as given."""
    ev = evidence()
    return dataclasses.replace(ev, traffic=tuple(dataclasses.replace(t, **changes) for t in ev.traffic))  # type: ignore[arg-type]


def _all_tls(t: Traffic) -> Traffic:
    return dataclasses.replace(
        t, tls=t.sessions, plaintext=0, tls_failed=0, plaintext_offered=0, starttls_offered=t.sessions
    )


def clean() -> Evidence:
    ev = evidence()
    return dataclasses.replace(ev, traffic=tuple(_all_tls(t) for t in ev.traffic))


def test_no_evidence_no_evidence_rules() -> None:
    report = audit(None)
    assert not [f for f in report.findings if f.rule.id.startswith("EXC-E")]
    assert all(f.fix_evidence is None for f in report.findings)


def test_e001_outbound_plaintext_fires_with_why_and_quiet_when_tls() -> None:
    report = audit(evidence())
    found = {f.target.identity: f for f in report.findings if f.rule.id == "EXC-E001"}
    assert set(found) == {"northwindtraders.com", "adventure-works.com", "scan.proseware.com"}
    assert "offered no STARTTLS" in found["northwindtraders.com"].message
    assert "retried in plaintext" in found["adventure-works.com"].message
    assert "IgnoreSTARTTLS" in found["scan.proseware.com"].message
    assert [c.render() for c in found["scan.proseware.com"].commands] == [
        "Set-SendConnector -Identity 'Legacy Scanner Relay' -IgnoreSTARTTLS:$false"
    ]
    assert found["northwindtraders.com"].fix_note and not found["northwindtraders.com"].fix
    assert hits(audit(clean()), "EXC-E001") == {}


def test_e002_unlogged_connector_not_judged_with_logging_fix() -> None:
    report = audit(evidence())
    name = "Outbound to Office 365 - aa1fd96a-48d7-4203-a702-00922d4b2ffe"
    assert hits(report, "EXC-E002") == {name: "info"}
    finding = next(f for f in report.findings if f.rule.id == "EXC-E002")
    assert "-ProtocolLoggingLevel 'Verbose'" in finding.commands[0].render()
    assert any(s.what == "EXC-E002" and s.target and s.target.identity == name for s in report.skipped)
    cov = dataclasses.replace(evidence().coverage, tracking_connectors=())
    assert hits(audit(dataclasses.replace(evidence(), coverage=cov)), "EXC-E002") == {}


def test_e003_policy_fetch_errors() -> None:
    assert hits(audit(evidence()), "EXC-E003") == {}
    ev = evidence()
    bad = PolicyFetch(
        "mta-sts.fabrikam.com", "Google", "user-agent", 3, (("404", 3),), "2025-05-30", "2025-05-31"
    )
    assert hits(audit(dataclasses.replace(ev, policy_fetches=(*ev.policy_fetches, bad))), "EXC-E003") == {
        "fabrikam.com": "medium"
    }


def test_e004_big_sender_never_fetched() -> None:
    assert hits(audit(evidence()), "EXC-E004") == {}
    ev = evidence()
    only_google = tuple(f for f in ev.policy_fetches if f.fetcher != "Microsoft")
    assert hits(audit(dataclasses.replace(ev, policy_fetches=only_google)), "EXC-E004") == {
        "Microsoft": "low"
    }


def test_e005_tls_configured_but_not_offered() -> None:
    assert hits(audit(evidence()), "EXC-E005") == {}
    report = audit(_traffic(starttls_offered=0))
    assert "EX01\\Default Frontend EX01" in hits(report, "EXC-E005")
    assert "EX02\\Relay EX02" not in hits(report, "EXC-E005")  # AuthMechanism None: no Tls configured


def test_e006_expired_certificate_seen() -> None:
    assert hits(audit(evidence()), "EXC-E006") == {"EX02\\Default Frontend EX02": "high"}
    ev = evidence()
    no_certs = tuple(dataclasses.replace(t, certificates=()) for t in ev.traffic)
    assert hits(audit(dataclasses.replace(ev, traffic=no_certs)), "EXC-E006") == {}


def test_e007_plaintext_senders_named() -> None:
    found = {f.target.identity: f for f in audit(evidence()).findings if f.rule.id == "EXC-E007"}
    assert "10.20.30.41" in found["EX02\\Relay EX02"].message and found["EX02\\Relay EX02"].observed == 2
    assert hits(audit(clean()), "EXC-E007") == {}


def test_e008_tlsrpt_failures_joined_with_connectors() -> None:
    found = {f.target.identity: f for f in audit(evidence()).findings if f.rule.id == "EXC-E008"}
    assert set(found) == {"fabrikam.com"}
    text = found["fabrikam.com"].message
    assert "certificate-expired at mail.fabrikam.com" in text and "EX02\\Default Frontend EX02" in text
    assert "Partner Contoso" not in text  # named for the MX, but the reporters never delivered there
    ev = evidence()
    quiet = tuple(dataclasses.replace(r, failed=0, failures=()) for r in ev.tls_reports)
    assert hits(audit(dataclasses.replace(ev, tls_reports=quiet)), "EXC-E008") == {}


def test_fix_evidence_verdicts() -> None:
    report = audit(evidence())
    by = {(f.rule.id, f.target.identity): f.fix_evidence for f in report.findings}
    # -RequireTLS with -IgnoreSTARTTLS:$false: the remote offered STARTTLS in every session.
    assert by[("EXC-S004", "Legacy Scanner Relay")].verdict == "supported"  # type: ignore[union-attr]
    assert by[("EXC-S002", "To Contoso")].verdict == "supported"  # type: ignore[union-attr]
    assert by[("EXC-R002", "EX01\\Client Frontend EX01")].verdict == "no-evidence"  # type: ignore[union-attr]
    # Adding Tls is opportunistic: never would-break, plaintext or not.
    assert by[("EXC-R001", "EX02\\Relay EX02")].verdict == "supported"  # type: ignore[union-attr]
    # The scanner relay's remote stops offering STARTTLS: RequireTLS would refuse every session.
    ev = _traffic(plaintext_offered=0)
    report = audit(ev)
    s004 = next(f for f in report.findings if f.rule.id == "EXC-S004")
    assert s004.fix_evidence is not None and s004.fix_evidence.verdict == "would-break"
    remediation, rollback = render_scripts(report, org().sources, generated_at=NOW)
    lines = remediation.splitlines()
    at = next(
        i
        for i, line in enumerate(lines)
        if line.strip().startswith("Set-SendConnector -Identity 'Legacy Scanner Relay' -SmartHost")
    )
    assert lines[at - 1].strip().startswith("Write-Warning") and "EXC-S004" in lines[at - 1]
    assert any("if (-not $Force)" in line for line in lines[at - 6 : at])
    assert any("would break mail flow" in line for line in lines[at - 6 : at])
    assert "param([switch]$Apply, [switch]$Force)" in remediation and "$Force" not in rollback


def test_audit_reads_logs_among_paths_and_saved_evidence(tmp_path: Path) -> None:
    out = io.StringIO()
    opts = AuditOptions(
        paths=(str(SAMPLES / "fabrikam"), str(SAMPLES / "fabrikam-evidence")),
        offline=True,
        format=Format.JSON,
    )
    result = run(opts, out, now=NOW)
    doc = json.loads(out.getvalue())
    for key in ("traffic", "tls_reports", "policy_fetches", "recipient_domains", "coverage"):
        assert key in doc
    assert any(f["fix_evidence"] for f in doc["findings"])
    assert any(f.rule.id == "EXC-E001" for f in result.report.findings)
    saved = tmp_path / "ev.json"
    saved.write_bytes(dumps(evidence()))
    out2 = io.StringIO()
    run(
        dataclasses.replace(opts, paths=(str(SAMPLES / "fabrikam"),), evidence_files=(str(saved),)),
        out2,
        now=NOW,
    )
    doc2 = json.loads(out2.getvalue())
    assert doc2["traffic"] == doc["traffic"] and doc2["findings"] == doc["findings"]
    plain = io.StringIO()
    run(dataclasses.replace(opts, paths=(str(SAMPLES / "fabrikam"),)), plain, now=NOW)
    assert "traffic" not in json.loads(plain.getvalue())


def test_table_and_markdown_show_on_the_wire() -> None:
    for fmt, title in ((Format.TABLE, "On the wire"), (Format.MARKDOWN, "## On the wire")):
        out = io.StringIO()
        paths = (str(SAMPLES / "fabrikam"), str(SAMPLES / "fabrikam-evidence"))
        run(AuditOptions(paths=paths, offline=True, format=fmt), out, now=NOW)
        assert title in out.getvalue() and "Legacy Scanner Relay" in out.getvalue()
        assert "fix evidence: supported" in out.getvalue().lower()


def test_top_recipient_domains_are_observed_partners() -> None:
    from exconn.audit import _top_recipients
    from exconn.targets import partner_domains

    top = _top_recipients(org(), evidence(), 50)
    assert top[0] == "gmail.com" and "fabrikam.com" not in top
    partners = partner_domains(org(), None, ours=["fabrikam.com"], observed=top)
    assert "gmail.com" in partners and "northwindtraders.com" in partners
    assert not any(p.endswith(".mail.onmicrosoft.com") for p in partners)
    assert _top_recipients(org(), evidence(), 1) == ("gmail.com",)


def test_fix_evidence_says_the_fix_itself_turns_starttls_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: 'supported (0/16 session(s) with TLS; all 16 session(s) on this route used TLS)'."""
    from exconn.cli import main

    root = Path(__file__).parents[1] / "samples"
    code = main(
        ["audit", "--offline", str(root / "fabrikam"), str(root / "fabrikam-evidence"), "--format", "json"]
    )
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    s004 = next(f for f in doc["findings"] if f["rule"] == "EXC-S004")
    ev = s004["fix_evidence"]
    assert ev["verdict"] == "supported" and ev["tls"] == 0 and ev["sessions"] == 16
    assert "IgnoreSTARTTLS" in ev["reason"] and "all 16" not in ev["reason"]


def test_do_this_first_says_whether_the_evidence_supports_each_change(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from exconn.cli import main

    root = Path(__file__).parents[1] / "samples"
    args = ["audit", "--offline", str(root / "fabrikam"), str(root / "fabrikam-evidence")]
    assert main([*args, "--format", "table"]) == 1
    text = capsys.readouterr().out
    first = text[text.index("Do this first") :]
    assert "evidence: supported" in first.split("  2.")[0]
    html = tmp_path / "r.html"
    assert main([*args, "--format", "html", "-o", str(html)]) == 1
    section = html.read_text()[: html.read_text().index("</section>")]
    assert "Evidence: supported" in section
