"""Which domains an audit observes (exconn.targets), and the audit CLI offline: the network options
it refuses, and the documented replay of the sample posture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exconn.cli import main
from exconn.errors import InputError
from exconn.posture.facts import PostureReport
from exconn.targets import our_domains, partner_domains, read_domain_file
from tests.world_helpers import INTERNET, OURS, SRC, org, send

# --- targets --------------------------------------------------------------------------------------


def test_targets_ours_and_partners(tmp_path: Path) -> None:
    scoped = (
        INTERNET,
        send("To Contoso", "smtp:contoso.com;10"),
        send("Lab", "smtp:lab.fabrikam.local;1"),
        send("Hybrid", "smtp:fabrikam.mail.onmicrosoft.com;1", cloud_services_mail_enabled=True),
        send("Wild", "smtp:*.northwind.com;1"),
    )
    o = org(send_connectors=scoped)
    assert our_domains(o, None) == ["fabrikam.com"]  # lab.fabrikam.local: InternalRelay, not public
    listed = tmp_path / "partners.txt"
    listed.write_text("# top recipients\nTailspinToys.com.\n\ncontoso.com  # again\nfabrikam.com\n")
    assert partner_domains(o, str(listed), ours=["fabrikam.com"]) == [
        "contoso.com",
        "northwind.com",
        "tailspintoys.com",
    ]


def test_partners_include_the_smart_host_domain_of_exo_outbound_connectors() -> None:
    from exconn.model import OutboundConnector

    smart = OutboundConnector(
        "Via relay",
        "Via relay",
        SRC,
        use_mx_record=False,
        smart_hosts=("smtp.relay-partner.com", "[192.0.2.7]"),
        recipient_domains=("contoso.com",),
    )
    assert partner_domains(org(outbound_connectors=(smart,)), None, ours=["fabrikam.com"]) == [
        "contoso.com",
        "relay-partner.com",
    ]


def test_target_files_name_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "partners.txt"
    bad.write_text("contoso.com\nnot a domain\n")
    with pytest.raises(InputError, match=r"partners\.txt: line 2: not a domain name: not a domain"):
        read_domain_file(str(bad))
    ours = tmp_path / "ours.txt"
    ours.write_text("contoso.com\n")
    with pytest.raises(InputError, match="not an accepted domain"):
        our_domains(org(), str(ours))


# --- the CLI without the network ------------------------------------------------------------------


def test_cli_refuses_network_options_with_offline_or_posture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--offline", "samples/fabrikam", "--resolver", "127.0.0.1"]) == 2
    assert "--offline promises no network use" in capsys.readouterr().err
    saved = tmp_path / "p.json"
    saved.write_text(json.dumps(PostureReport("2025-06-02T12:00:00Z", (OURS,)).to_json()))
    assert main(["audit", "samples/fabrikam", "--posture", str(saved), "--timeout", "3"]) == 2
    assert "--posture replays" in capsys.readouterr().err
    assert main(["audit", "samples/fabrikam", "--offline", "--tlsrpt-rua", "ftp://x"]) == 2
    saved.write_text('{"format": "something else"}')
    assert main(["audit", "samples/fabrikam", "--posture", str(saved)]) == 2
    assert "not an exconn-posture file" in capsys.readouterr().err


def test_documented_replay_of_the_sample_posture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/cross-check.md's worked example: samples/fabrikam + samples/posture/fabrikam.json, no network."""
    fix = tmp_path / "fix"
    code = main(
        ["audit", "samples/fabrikam", "--posture", "samples/posture/fabrikam.json", "--format", "json"]
        + ["--fix-out", str(fix)]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    found = {
        (f["rule"], f["target"]["identity"]) for f in report["findings"] if f["rule"].startswith("EXC-W")
    }
    assert found == {
        ("EXC-W002", "EX02\\Default Frontend EX02"),
        ("EXC-W005", "fabrikam.com"),
        ("EXC-W006", "fabrikam.co.uk"),
        ("EXC-W007", "fabrikam.com"),
        ("EXC-W008", "adatum.com"),
        ("EXC-W008", "litware.com"),
        ("EXC-W008", "tailspintoys.com"),
        ("EXC-W008", "wingtiptoys.com"),
        ("EXC-W009", "To Contoso"),
    }
    # The probe passed on one server; EX02 behind the same MX has an expired certificate (EXC-W002),
    # and there is no TLS-RPT (EXC-W005): no enforce.
    assert (fix / "dns" / "fabrikam.com" / "mta-sts.txt").read_bytes() == (
        b"version: STSv1\r\nmode: testing\r\nmx: mail.fabrikam.com\r\nmax_age: 86400\r\n"
    )
    assert "EX02\\Default Frontend EX02" in (fix / "dns" / "fabrikam.com" / "README.txt").read_text()
    assert (
        "3. Then create the _mta-sts.fabrikam.co.uk"
        in (fix / "dns" / "fabrikam.co.uk" / "README.txt").read_text()
    )
