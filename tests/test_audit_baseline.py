"""`exconn audit --baseline OLD.json`: what changed since the last audit, and only new findings fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exconn.cli import main

SAMPLES = Path(__file__).parents[1] / "samples" / "fabrikam"


def _audit(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["audit", "--offline", str(SAMPLES), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _older_audit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *, changed: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Last quarter's report: without today's critical finding, with one since fixed (EXC-S999),
    and (`changed`) with the first finding at another severity. Returns it and the critical one."""
    old = tmp_path / "old.json"
    _audit(capsys, "--format", "json", "-o", str(old))
    doc = json.loads(old.read_text())
    gone = next(f for f in doc["findings"] if f["severity"] == "critical")
    doc["findings"] = [f for f in doc["findings"] if f is not gone]
    doc["findings"].append({**doc["findings"][0], "rule": "EXC-S999"})
    if changed:
        doc["findings"][0] = {**doc["findings"][0], "severity": "low"}
    old.write_text(json.dumps(doc))
    return old, gone


def test_nothing_new_exits_0_although_old_findings_reach_fail_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.json"
    assert _audit(capsys, "--format", "json", "-o", str(old))[0] == 1
    code, out, _ = _audit(capsys, "--baseline", str(old), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["new"], doc["resolved"], doc["changed"]) == ([], [], [])


def test_a_new_finding_is_listed_and_decides_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, gone = _older_audit(capsys, tmp_path, changed=True)
    code, out, _ = _audit(capsys, "--baseline", str(old), "--format", "json")
    assert code == 1
    diff = json.loads(out)
    assert [(f["rule"], f["target"]["identity"]) for f in diff["new"]] == [
        (gone["rule"], gone["target"]["identity"])
    ]
    assert [f["rule"] for f in diff["resolved"]] == ["EXC-S999"]
    assert len(diff["changed"]) == 1
    code, out, _ = _audit(capsys, "--baseline", str(old), "--fail-on", "critical")
    assert code == 1 and gone["rule"] in out


def test_a_bad_baseline_is_one_line_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "old.json"
    bad.write_text("not json")
    code, _, err = _audit(capsys, "--baseline", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(bad) in err


def test_sarif_and_html_mark_each_finding_against_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, gone = _older_audit(capsys, tmp_path)
    code, out, _ = _audit(capsys, "--baseline", str(old), "--format", "sarif")
    assert code == 1
    sarif = json.loads(out)
    from tests.test_render_sarif import schema_errors

    assert schema_errors(sarif) == []
    run = sarif["runs"][0]
    states = {(r["ruleId"], r["baselineState"]) for r in run["results"]}
    assert (gone["rule"], "new") in states
    assert [r["baselineState"] for r in run["results"]].count("new") == 1
    assert [e["rule"] for e in run["properties"]["resolved"]] == ["EXC-S999"]
    html = tmp_path / "r.html"
    _audit(capsys, "--baseline", str(old), "--format", "html", "-o", str(html))
    page = html.read_text()
    since = page[page.index('id="since"') : page.index('aria-labelledby="first"')]
    assert "1 new, 0 changed, 1 resolved" in since and "EXC-S999" in since and gone["rule"] in since
