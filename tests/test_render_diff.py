"""`exconn diff OLD.json NEW.json`: new, resolved and changed findings; only new ones decide the exit."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from wcwidth import wcswidth

from exconn.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@pytest.fixture
def reports(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    main(["audit", "--offline", "--format", "json", str(SAMPLES / "fabrikam")])
    doc = json.loads(capsys.readouterr().out)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc), encoding="utf-8")
    return old, doc


def diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["diff", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_nothing_new_passes_although_old_findings_reach_fail_on(
    capsys: pytest.CaptureFixture[str], reports: tuple[Path, dict[str, Any]]
) -> None:
    old, doc = reports
    assert any(f["severity"] == "high" for f in doc["findings"])
    code, out, _ = diff(capsys, str(old), str(old), "--format", "json")
    assert code == 0
    result = json.loads(out)
    assert (result["new"], result["resolved"], result["changed"]) == ([], [], [])


def test_new_resolved_changed(
    capsys: pytest.CaptureFixture[str], reports: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    old, doc = reports
    newer = copy.deepcopy(doc)
    gone = newer["findings"].pop(0)  # fixed since: resolved
    newer["findings"][0]["severity"] = "critical"  # changed severity
    newer["findings"][1]["observed"] = "something else"  # changed observed value
    added = {
        **gone,
        "rule": "EXC-S003",
        "severity": "high",
        "target": {"kind": "SendConnector", "identity": "New One"},
    }
    newer["findings"].append(added)
    new = tmp_path / "new.json"
    new.write_text(json.dumps(newer), encoding="utf-8")
    code, out, _ = diff(capsys, str(old), str(new), "--format", "json")
    assert code == 1  # the new finding is high
    result = json.loads(out)
    assert [(f["rule"], f["target"]["identity"]) for f in result["new"]] == [("EXC-S003", "New One")]
    assert [(f["rule"], f["target"]) for f in result["resolved"]] == [(gone["rule"], gone["target"])]
    assert len(result["changed"]) == 2
    for pair in result["changed"]:
        assert {"old", "new"} == set(pair)
        assert {"rule", "target", "property", "observed", "severity"} <= set(pair["new"])
    assert (
        result["changed"][0]["old"]["severity"] != "critical"
        and result["changed"][0]["new"]["severity"] == "critical"
    )
    assert result["changed"][1]["new"]["observed"] == "something else"
    # Only new findings decide: the critical *change* does not fail --fail-on critical.
    assert diff(capsys, str(old), str(new), "--fail-on", "critical")[0] == 0
    code, table, _ = diff(capsys, str(old), str(new))
    assert code == 1 and "New (1):" in table and "Resolved (1):" in table and "Changed (2):" in table
    assert all(wcswidth(line) <= 80 for line in table.splitlines())
    code, markdown, _ = diff(capsys, str(old), str(new), "--format", "markdown")
    assert "## New (1)" in markdown and "`New One`" in markdown
    assert markdown.rstrip().endswith("FAIL: new findings at or above 'high'")
    # Reversed: the finding fixed since comes back as new and decides the exit at its severity.
    code, out, _ = diff(capsys, str(new), str(old), "--fail-on", gone["severity"], "--format", "json")
    assert code == 1
    assert [(f["rule"], f["target"]) for f in json.loads(out)["new"]] == [(gone["rule"], gone["target"])]


def test_case_of_identity_does_not_make_a_finding_new(
    capsys: pytest.CaptureFixture[str], reports: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    old, doc = reports
    newer = copy.deepcopy(doc)
    for f in newer["findings"]:
        f["target"]["identity"] = f["target"]["identity"].upper()
    new = tmp_path / "new.json"
    new.write_text(json.dumps(newer), encoding="utf-8")
    code, out, _ = diff(capsys, str(old), str(new), "--format", "json")
    assert code == 0 and json.loads(out)["new"] == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "is not JSON"),
        ('{"tool": {}}', "no findings list"),
        ('{"findings": [{"rule": "EXC-S001"}]}', "finding #0 lacks"),
        (
            '{"findings": [{"rule": "X", "target": {"kind": "a", "identity": "b"}, "severity": "bad"}]}',
            "unknown severity",
        ),
    ],
)
def test_bad_input_one_line(
    capsys: pytest.CaptureFixture[str],
    reports: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    content: str,
    reason: str,
) -> None:
    old, _ = reports
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    code, out, err = diff(capsys, str(old), str(bad))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and reason in err and "bad.json" in err
