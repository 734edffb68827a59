"""The DNS side of the fix (exconn.remediate.dns) on the cross-check rules' findings from constructed
facts and model, and how it stays apart from the PowerShell side and the renderers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exconn.fix import Fix, ParamChange, PublishMtaSts, SetCommand
from exconn.model import AcceptedDomain, AcceptedDomainType
from exconn.remediate.dns import DnsFixError, write_dns
from exconn.remediate.script import render_scripts
from exconn.render import Format, RunInfo, render
from exconn.rules import inbound, posture_view
from exconn.rules.base import Finding, Report, Rule, Severity, Target
from tests.world_helpers import NOW, OURS, SRC, host, org, posture, report_of

# --- the DNS writer -------------------------------------------------------------------------------


def test_dns_files_for_our_domain(tmp_path: Path) -> None:
    p = posture(
        "fabrikam.com",
        ("mail.fabrikam.com", "fabrikam-com.mail.protection.outlook.com"),
        mode="testing",
        patterns=("mail.fabrikam.com",),
    )
    partner = posture("contoso.com")
    fix = write_dns(
        report_of(org(), p, partner, tlsrpt_rua="mailto:tls@fabrikam.com"), tmp_path, generated_at=NOW
    )
    folder = tmp_path / "dns" / "fabrikam.com"
    assert sorted(x.name for x in fix.written) == ["README.txt", "mta-sts.txt", "records.txt"]
    assert not (tmp_path / "dns" / "contoso.com").exists()  # partners get no DNS files
    assert (folder / "mta-sts.txt").read_bytes() == (
        b"version: STSv1\r\nmode: enforce\r\nmx: *.mail.protection.outlook.com\r\nmx: mail.fabrikam.com\r\n"
        b"max_age: 604800\r\n"
    )
    records = (folder / "records.txt").read_text()
    assert '_mta-sts.fabrikam.com. 3600 IN TXT "v=STSv1; id=20250602120000"' in records.splitlines()
    assert (
        '_smtp._tls.fabrikam.com. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tls@fabrikam.com"'
        in records.splitlines()
    )
    readme = (folder / "README.txt").read_text()
    assert readme.index("1. Serve mta-sts.txt") < readme.index("3. Then replace the _mta-sts")


def test_dns_keeps_existing_rua_testing_mode_and_refuses_hostile_names(tmp_path: Path) -> None:
    failing = posture(
        "fabrikam.com", ("mail.fabrikam.com",), hosts=(host("mail.fabrikam.com", expired=True),)
    )
    # No MTA-STS published (EXC-W006): a finding asks for a policy, and the writer must refuse the names.
    hostile = posture("../../etc", ("mail.evil.com",), mode=None)
    newline = posture("fabrikam.com", ("mail.fabrikam.com\nmode: none",), mode=None)
    o = org(
        accepted_domains=(
            AcceptedDomain("fabrikam.com", "fabrikam.com", SRC, AcceptedDomainType.AUTHORITATIVE, True),
            AcceptedDomain("../../etc", "../../etc", SRC, AcceptedDomainType.AUTHORITATIVE, False),
        )
    )
    fix = write_dns(report_of(o, failing, hostile), tmp_path, generated_at=NOW)
    assert (
        (tmp_path / "dns" / "fabrikam.com" / "mta-sts.txt")
        .read_bytes()
        .startswith(b"version: STSv1\r\nmode: testing\r\n")
    )
    assert b"max_age: 86400" in (tmp_path / "dns" / "fabrikam.com" / "mta-sts.txt").read_bytes()
    assert "rua=mailto:tlsrpt@fabrikam.com" in (tmp_path / "dns" / "fabrikam.com" / "records.txt").read_text()
    assert fix.notes == ("'../../etc': not a plain domain name, no DNS files written",)
    assert not any("etc" in str(x.relative_to(tmp_path)) for x in tmp_path.rglob("*"))
    fix = write_dns(report_of(o, newline), tmp_path / "b", generated_at=NOW)
    assert fix.written == () and "not a plain host name" in fix.notes[0]
    with pytest.raises(DnsFixError):
        write_dns(report_of(o, failing, tlsrpt_rua='mailto:a@b.com"; evil'), tmp_path, generated_at=NOW)


def test_dns_says_create_when_no_mta_sts_record_exists(tmp_path: Path) -> None:
    none = posture("fabrikam.com", ("mail.fabrikam.com",), mode=None)
    write_dns(report_of(org(), none), tmp_path / "a", generated_at=NOW)
    folder = tmp_path / "a" / "dns" / "fabrikam.com"
    assert "3. Then create the _mta-sts.fabrikam.com TXT record" in (folder / "README.txt").read_text()
    records = (folder / "records.txt").read_text()
    assert "CREATE the _mta-sts TXT record" in records and "REPLACE" not in records
    # A record is published; no TLS-RPT (EXC-W005) is what asks for the DNS side here.
    no_rpt = posture("fabrikam.com", ("mail.fabrikam.com",), tlsrpt="absent")
    write_dns(report_of(org(), no_rpt), tmp_path / "b", generated_at=NOW)
    folder = tmp_path / "b" / "dns" / "fabrikam.com"
    assert "3. Then replace the _mta-sts.fabrikam.com TXT record" in (folder / "README.txt").read_text()
    assert "REPLACE any existing _mta-sts TXT record" in (folder / "records.txt").read_text()


def _publish(domain: str = "fabrikam.com", **kw: Any) -> PublishMtaSts:
    values: dict[str, Any] = {
        "domain": domain,
        "mode": "testing",
        "mx": ("mail.fabrikam.com",),
        "max_age": 86400,
        "why": "A new policy starts in mode testing.",
        "tlsrpt_rua": None,
        "published_rua": None,
        "sts_status": "absent",
        "record_exists": False,
    }
    values.update(kw)
    return PublishMtaSts(**values)


def _finding(r: Rule, target: Target, *fix: Fix, severity: Severity | None = None) -> Finding:
    return Finding(r, severity or r.severity, target, None, None, f"{r.id} on {target.identity}", fix)


def _report(*findings: Finding) -> Report:
    ordered = sorted(findings, key=lambda f: (-f.severity, f.rule.id))
    return Report(tuple(ordered), (), tuple(f.rule.id for f in ordered))


def test_dns_writer_reads_only_the_findings(tmp_path: Path) -> None:
    """No organisation, no posture, no rules run: the findings carry everything the DNS files need."""
    com = _publish(
        mode="enforce",
        mx=("*.mail.protection.outlook.com", "mail.fabrikam.com"),
        max_age=604800,
        why="Mode enforce: every MX and every receive connector behind it passes.",
        published_rua=("mailto:tlsrpt@fabrikam.com", 'mailto:bad"@x.com'),
        sts_status="valid",
        record_exists=True,
        current_mode="testing",
        current_max_age=86400,
        current_id="20240101000000",
    )
    uk = _publish("fabrikam.co.uk", tlsrpt_rua="mailto:tls@fabrikam.com")
    # Two findings want fabrikam.com's policy: one folder. A third disagrees: the most severe wins.
    odd = replace(com, mode="testing", max_age=86400)
    report = _report(
        _finding(inbound.policy_out_of_date, posture_view.domain_target("fabrikam.com"), com),
        _finding(inbound.testing_ready_for_enforce, posture_view.domain_target("fabrikam.com"), com),
        _finding(
            inbound.mta_sts_without_tlsrpt,
            posture_view.domain_target("fabrikam.com"),
            odd,
            severity=Severity.INFO,
        ),
        _finding(inbound.no_mta_sts, posture_view.domain_target("fabrikam.co.uk"), uk),
    )
    fix = write_dns(report, tmp_path, generated_at=NOW)
    assert sorted(str(x.relative_to(tmp_path)) for x in fix.written) == [
        f"dns/{d}/{n}"
        for d in ("fabrikam.co.uk", "fabrikam.com")
        for n in ("README.txt", "mta-sts.txt", "records.txt")
    ]
    assert fix.notes == (
        "fabrikam.com: EXC-W005 asks for another policy than EXC-W003; kept the one of EXC-W003 (most severe)",
    )
    folder = tmp_path / "dns" / "fabrikam.com"
    assert (folder / "mta-sts.txt").read_bytes() == (
        b"version: STSv1\r\nmode: enforce\r\nmx: *.mail.protection.outlook.com\r\nmx: mail.fabrikam.com\r\n"
        b"max_age: 604800\r\n"
    )
    records = (folder / "records.txt").read_text().splitlines()
    assert '_mta-sts.fabrikam.com. 3600 IN TXT "v=STSv1; id=20250602120000"' in records
    # The published rua is kept, less what cannot be written into a record.
    assert '_smtp._tls.fabrikam.com. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@fabrikam.com"' in records
    assert any("REPLACE any existing _mta-sts TXT record" in r for r in records)
    readme = (folder / "README.txt").read_text()
    assert "Now published: mode testing, id 20240101000000, max_age 86400." in readme
    assert "Mode enforce: every MX" in readme and "No valid TLS-RPT" not in readme
    uk_folder = tmp_path / "dns" / "fabrikam.co.uk"
    assert "CREATE the _mta-sts TXT record" in (uk_folder / "records.txt").read_text()
    assert "rua=mailto:tls@fabrikam.com" in (uk_folder / "records.txt").read_text()
    assert "3. Then create the _mta-sts.fabrikam.co.uk TXT record" in (uk_folder / "README.txt").read_text()
    # Hand-made findings are checked like the rules' own: names, mode, max_age, the given rua.
    hostile = _report(
        _finding(inbound.no_mta_sts, posture_view.domain_target("../../x"), _publish("../../x")),
        _finding(
            inbound.no_mta_sts,
            posture_view.domain_target("a.com"),
            _publish("a.com", mx=("m.a.com\nmode: none",)),
        ),
        _finding(
            inbound.no_mta_sts, posture_view.domain_target("b.com"), _publish("b.com", mode="enforce\nmx: *")
        ),
    )
    fix = write_dns(hostile, tmp_path / "h", generated_at=NOW)
    assert fix.written == () and len(fix.notes) == 3 and not (tmp_path / "h").exists()
    with pytest.raises(DnsFixError):
        bad_rua = _publish(tlsrpt_rua='mailto:a@b.com"; evil')
        write_dns(
            _report(_finding(inbound.no_mta_sts, posture_view.domain_target("fabrikam.com"), bad_rua)),
            tmp_path,
            generated_at=NOW,
        )
    assert write_dns(_report(), tmp_path / "none", generated_at=NOW).written == ()


def test_ps1_writer_and_renderers_keep_the_dns_side_apart() -> None:
    """remediation.ps1 has no PowerShell for DNS; JSON keeps `fix` PowerShell-only and lists `dns` apart."""
    pub = _publish(tlsrpt_rua="mailto:tls@fabrikam.com")
    cmd = SetCommand("Set-ReceiveConnector", "EX02\\Frontend", (ParamChange("AuthMechanism", "Tls", "None"),))
    both = _finding(inbound.mx_served_with_tls, posture_view.domain_target("fabrikam.com"), cmd, pub)
    dns_only = _finding(
        inbound.no_mta_sts, posture_view.domain_target("fabrikam.co.uk"), _publish("fabrikam.co.uk")
    )
    report = _report(both, dns_only)
    assert both.commands == (cmd,) and both.dns == (pub,)
    fix_text, undo_text = render_scripts(report, ["test.xml"], generated_at=NOW)
    assert "1 change(s) for 2 finding(s)" in fix_text
    assert "Set-ReceiveConnector -Identity 'EX02\\Frontend' -AuthMechanism 'Tls'" in fix_text
    code = [x for x in (fix_text + undo_text).splitlines() if not x.lstrip().startswith("#")]
    assert not [x for x in code if "mta-sts" in x.lower() or "fabrikam.co.uk" in x]
    # The DNS-only finding is listed as one without a PowerShell fix, with the rule's remediation.
    unfixed = fix_text.split("Findings without an automatic fix", 1)[1]
    assert "EXC-W006" in unfixed and "EXC-W002" not in unfixed
    info = RunInfo(generated_at=NOW, sources=("test.xml",), fail_on=Severity.HIGH, offline=False)
    doc = json.loads(render(report, org(), info, Format.JSON))
    by_rule = {f["rule"]: f for f in doc["findings"]}
    assert by_rule["EXC-W002"]["fix"] == [cmd.render()]
    assert by_rule["EXC-W002"]["dns"] == [
        "publish MTA-STS policy for fabrikam.com: mode testing, mx mail.fabrikam.com, max_age 86400; then "
        "create the _mta-sts TXT record with a new id; _smtp._tls rua mailto:tls@fabrikam.com"
    ]
    assert by_rule["EXC-W006"]["fix"] == [] and len(by_rule["EXC-W006"]["dns"]) == 1
    markdown = render(report, org(), info, Format.MARKDOWN)
    assert "- DNS: publish MTA-STS policy for fabrikam.co.uk" in markdown
    assert markdown.count("```powershell") == 1
    table = render(report, org(), info, Format.TABLE)
    assert "1 change(s) in remediation.ps1" in table and "to publish for 2 domain(s)" in table


def test_dns_side_follows_tlsrpt_rua_in_every_rule() -> None:
    """--tlsrpt-rua reaches the rules: EXC-W003 and EXC-W007 propose enforce with it, and every finding
    that asks for the domain's policy asks for the same one."""
    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing", tlsrpt="absent")
    without = report_of(org(), p)
    assert {f.rule.id for f in without.findings if f.dns} == {"EXC-W005"}
    assert {d.mode for f in without.findings for d in f.dns} == {"testing"}
    given = report_of(org(), p, tlsrpt_rua="mailto:tls@fabrikam.com")
    asking = {f.rule.id: f.dns for f in given.findings if f.dns}
    assert set(asking) == {"EXC-W003", "EXC-W005", "EXC-W007"}
    assert (
        "Publish _smtp._tls.fabrikam.com"
        in next(f for f in given.findings if f.rule.id == "EXC-W003").message
    )
    (pub,) = {d for ds in asking.values() for d in ds}
    assert (pub.mode, pub.max_age, pub.tlsrpt_rua) == ("enforce", 604800, "mailto:tls@fabrikam.com")
    # A perfect domain asks for nothing: no folder for it.
    assert not any(f.dns for f in report_of(org(), OURS).findings)


def test_a_symlink_planted_at_dns_is_refused_not_followed(tmp_path: Path) -> None:
    """Was: `fix/dns -> /elsewhere` put mta-sts.txt and records.txt in /elsewhere."""
    from exconn.errors import InputError

    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing", patterns=("mail.fabrikam.com",))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "fix"
    out.mkdir()
    (out / "dns").symlink_to(elsewhere)
    with pytest.raises(InputError, match="symbolic link"):
        write_dns(report_of(org(), p, tlsrpt_rua="mailto:tls@fabrikam.com"), out, generated_at=NOW)
    assert list(elsewhere.iterdir()) == []


def test_a_dns_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """Was: internal error FileExistsError when DIR/dns is a file."""
    from exconn.errors import InputError

    p = posture("fabrikam.com", ("mail.fabrikam.com",), mode="testing", patterns=("mail.fabrikam.com",))
    (tmp_path / "dns").write_text("a file")
    with pytest.raises(InputError, match="cannot write the DNS files"):
        write_dns(report_of(org(), p, tlsrpt_rua="mailto:tls@fabrikam.com"), tmp_path, generated_at=NOW)


def test_common_name_keeps_an_escaped_or_quoted_comma() -> None:
    from exconn.rules.fix_evidence import common_name

    assert common_name('O=x, CN="Contoso, Inc"') == '"Contoso, Inc"'
    assert common_name("CN=a\\,b, O=x") == "a\\,b"
    assert common_name("CN=mail.fabrikam.com, O=Fabrikam") == "mail.fabrikam.com"
