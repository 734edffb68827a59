"""The terminal table fits COLUMNS (CJK counted as two cells), keeps thumbprints whole, and ends
with "do this first"; its change count is the one remediation.ps1 has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from wcwidth import wcswidth

from exconn.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
POSTURE = SAMPLES / "posture" / "fabrikam.json"
THUMBPRINT = re.compile(r"\b[0-9A-F]{40}\b")


def table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: int, *args: str
) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    main(["audit", "--format", "table", *args])
    return capsys.readouterr().out


def cells(line: str) -> int:
    width = wcswidth(line)
    assert width >= 0, f"unprintable character in {line!r}"
    return width


def hostile_export(tmp_path: Path) -> Path:
    """The fabrikam send connectors with one renamed to a long CJK name, one to a name holding an
    ESC sequence and a line break."""
    source = SAMPLES / "fabrikam" / "Get-SendConnector.xml"
    text = source.read_bytes().decode("utf-16")
    text = text.replace(
        "Legacy Scanner Relay", "東京本社の古いスキャナー中継コネクタ（経理部・総務部・人事部・営業部共用）"
    )
    text = text.replace(">Lab<", ">Lab_x001B_[31mRED_x000A_forged line<")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Get-SendConnector.xml").write_bytes(text.encode("utf-16"))
    return folder


@pytest.mark.parametrize("columns", [40, 80, 100, 154, 233])
def test_every_line_fits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, columns: int
) -> None:
    folder = hostile_export(tmp_path)
    for args in (
        ["--offline", str(SAMPLES / "fabrikam")],
        ["--posture", str(POSTURE), str(SAMPLES / "fabrikam"), str(SAMPLES / "exo")],
        ["--offline", str(folder)],
    ):
        out = table(capsys, monkeypatch, columns, *args)
        limit = max(80, columns)
        widths = [cells(line) for line in out.splitlines()]
        assert max(widths) <= limit, [x for x in out.splitlines() if cells(x) > limit]
        grid = [w for w, line in zip(widths, out.splitlines(), strict=True) if line.startswith("┌")]
        assert grid == [limit]  # the table uses the room it has
        assert "\x1b" not in out
    assert "東京本社" in out and "Lab\\x1b[31mRED" in out  # escaped, shown as text
    assert not [line for line in out.splitlines() if line.startswith("forged line")]


def test_thumbprint_whole_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = table(capsys, monkeypatch, 80, "--offline", str(SAMPLES / "fabrikam"))
    assert "013CA76A3C220B737E7BCD910E41BE8E09909A0A" in {
        m for line in out.splitlines() for m in THUMBPRINT.findall(line)
    }


def test_summary_counts_agree_with_the_script(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = ["--posture", str(POSTURE), str(SAMPLES / "fabrikam")]
    before = table(capsys, monkeypatch, 80, *args)
    assert "--fix-out DIR" in before
    after = table(capsys, monkeypatch, 80, *args, "--fix-out", str(tmp_path / "fix"))
    assert "--fix-out DIR" not in after.replace("\n", " ")
    script = (tmp_path / "fix" / "remediation.ps1").read_text(encoding="utf-8-sig")
    in_script = int(re.search(r"(\d+) change\(s\) for", script).group(1))  # type: ignore[union-attr]
    said = re.search(r"^(\d+) change\(s\) in remediation\.ps1", after, re.M)
    assert said and int(said.group(1)) == in_script
    assert said.group(0) in before
    # "Do this first" closes the summary: three numbered changes, each a command from the script.
    tail = after.split("Do this first", 1)[1]
    steps = re.findall(r"^  (\d)\. (\S+)", tail, re.M)
    assert [n for n, _ in steps] == ["1", "2", "3"]
    assert all(cmdlet in script for _, cmdlet in steps)
    assert after.rstrip().splitlines()[-1].lstrip().startswith("fixes ")
