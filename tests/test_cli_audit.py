"""`exconn audit` end to end on the bundled samples: the JSON contract, exit codes, fix files.

The samples' planted mistakes are listed in samples/README.md; each must surface as its rule, and
the connectors planted as correct must stay quiet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exconn.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["audit", "--offline", "--format", "json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def hits(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["rule"], f["target"]["identity"]) for f in doc["findings"]}


def test_fabrikam_planted_mistakes(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = audit_json(capsys, str(SAMPLES / "fabrikam"))
    assert code == 1  # critical and high findings at the default --fail-on high
    found = hits(doc)
    expected = {
        ("EXC-R002", "EX01\\Client Frontend EX01"),
        ("EXC-R006", "EX02\\Default Frontend EX02"),
        ("EXC-R001", "EX02\\Relay EX02"),
        ("EXC-R004", "EX02\\Partner Contoso"),
        ("EXC-S001", "Legacy Scanner Relay"),
        ("EXC-S004", "Legacy Scanner Relay"),
        ("EXC-S002", "To Contoso"),
        ("EXC-S001", "Lab"),
    }
    assert expected <= found, expected - found
    quiet = {"Internet", "EX02\\Outbound Proxy Frontend EX02", "EX01\\Default Frontend EX01"}
    assert not [f for f in doc["findings"] if f["target"]["identity"] in quiet and f["severity"] != "info"]
    assert ("EXC-R003", "EX02\\Partner Contoso") not in found  # partner-scoped, not the public MX
    assert not [f for f in doc["findings"] if f["target"]["identity"].startswith("Outbound to Office 365")]
    lab = next(f for f in doc["findings"] if f["target"]["identity"] == "Lab")
    internet_worst = next(f for f in doc["findings"] if f["rule"] == "EXC-S004")
    order = ["info", "low", "medium", "high", "critical"]
    assert order.index(lab["severity"]) < order.index(internet_worst["severity"])


def test_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    _, doc = audit_json(capsys, str(SAMPLES / "fabrikam"))
    assert {"inventory", "findings", "skipped"} <= doc.keys()
    kinds = {i["kind"] for i in doc["inventory"]}
    assert {
        "SendConnector",
        "ReceiveConnector",
        "AcceptedDomain",
        "TransportConfig",
        "ExchangeCertificate",
    } <= kinds
    assert all(i["source"].endswith(".xml") for i in doc["inventory"])
    for f in doc["findings"]:
        assert f["severity"] in {"critical", "high", "medium", "low", "info"}
        assert f["rule"].startswith("EXC-") and f["references"]
        assert isinstance(f["fix"], list) and all(isinstance(c, str) for c in f["fix"])
        assert f["dns"] == []  # offline: no DNS side
        assert set(f["target"]) == {"kind", "identity"}
    s004 = next(f for f in doc["findings"] if f["rule"] == "EXC-S004")
    assert s004["property"] == "SmartHostAuthMechanism" and s004["observed"] == "BasicAuth"
    assert any("Set-SendConnector -Identity 'Legacy Scanner Relay'" in c for c in s004["fix"])


def test_fail_on_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["audit", "--offline", "--fail-on", "critical", "--format", "json", str(SAMPLES / "exo")]) == 0
    )
    capsys.readouterr()
    assert main(["audit", "--offline", "--fail-on", "info", "--format", "json", str(SAMPLES / "exo")]) == 1


def test_exo_partner_inbound_without_tls(capsys: pytest.CaptureFixture[str]) -> None:
    _, doc = audit_json(capsys, "--fail-on", "critical", str(SAMPLES / "exo"))
    assert ("EXC-O004", "Contoso Partner Inbound") in hits(doc)


def test_selected_form_reports_what_it_cannot_judge(capsys: pytest.CaptureFixture[str]) -> None:
    _, doc = audit_json(capsys, str(SAMPLES / "forms" / "Get-SendConnector.selected.xml"))
    assert ("EXC-S001", "Legacy Scanner Relay") in hits(doc)
    reasons = [s["reason"] for s in doc["skipped"] if s["what"] == "EXC-S004"]
    assert reasons and all("SmartHostAuthMechanism" in r for r in reasons)


def test_mixed_file_lists_unknown_objects_as_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    _, doc = audit_json(capsys, str(SAMPLES / "forms" / "mixed.xml"))
    assert any(s["what"] == "object" for s in doc["skipped"])
    assert {"SendConnector", "ReceiveConnector", "TransportConfig"} <= {i["kind"] for i in doc["inventory"]}


@pytest.mark.parametrize("bad", sorted(p.name for p in (SAMPLES / "bad").iterdir()))
def test_bad_input_exits_2_with_one_line(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "--offline", str(SAMPLES / "bad" / bad)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0] and "Traceback" not in captured.err
    assert "root:" not in captured.err  # XXE: /etc/passwd never read into a message


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--offline"]) == 2
    assert "nothing to audit" in capsys.readouterr().err
    assert main(["audit", "--offline", str(ROOT / "does-not-exist.xml")]) == 2
    assert "does-not-exist.xml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--fail-on", "severe", str(SAMPLES / "fabrikam")])
    assert exc.value.code == 2


def test_fix_out_writes_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fix"
    assert (
        main(["audit", "--offline", "--format", "json", "--fix-out", str(out), str(SAMPLES / "fabrikam")])
        == 1
    )
    capsys.readouterr()
    remediation = (out / "remediation.ps1").read_bytes()
    rollback = (out / "rollback.ps1").read_bytes()
    assert remediation.startswith(b"\xef\xbb\xbf") and rollback.startswith(b"\xef\xbb\xbf")
    text = remediation.decode("utf-8-sig")
    assert "[switch]$Apply" in text and "-WhatIf" in text
    assert "Set-SendConnector" in text and "'Legacy Scanner Relay'" in text
    assert "Set-SendConnector" in rollback.decode("utf-8-sig")


@pytest.mark.parametrize("fmt", ["table", "markdown", "sarif"])
def test_other_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--offline", "--format", fmt, str(SAMPLES / "fabrikam")]) == 1
    out = capsys.readouterr().out
    assert "EXC-S004" in out
    if fmt == "sarif":
        assert json.loads(out)["version"] == "2.1.0"


def test_console_script_never_tracebacks_on_bad_input() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exconn", "audit", "--offline", str(SAMPLES / "bad" / "billion-laughs.xml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "billion-laughs.xml" in proc.stderr


def test_rules_reference_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "json"]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert len({r["id"] for r in rules}) == len(rules) > 15


def test_rule_reference_is_generated_from_declarations(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/RULES.md cannot drift: regenerate with `exconn rules --format markdown > docs/RULES.md`."""
    assert main(["rules", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == (ROOT / "docs" / "RULES.md").read_text(encoding="utf-8")
