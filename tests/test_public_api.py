"""The public API of `exconn`: small, typed, importable without loading the heavy libraries."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

import exconn
import exconn.render

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "fabrikam"


def test_every_public_name_resolves() -> None:
    assert set(exconn.__all__) == {*exconn._EXPORTS, "__version__"}
    for name in exconn.__all__:
        assert getattr(exconn, name) is not None, name
    with pytest.raises(AttributeError):
        exconn.not_a_public_name  # noqa: B018


def test_import_is_cheap_and_builds_no_client() -> None:
    code = (
        "import sys, exconn; "
        "heavy = [m for m in ('lxml', 'dns', 'pypsrp', 'requests', 'cryptography') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_script_can_audit_and_write_the_fix(tmp_path: Path) -> None:
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    org = exconn.load([SAMPLE])
    report = exconn.evaluate(exconn.Context(org, now))
    assert isinstance(report, exconn.Report) and report.findings
    assert report.worst() is not None and report.worst() >= exconn.Severity.HIGH
    written = exconn.write_fix(report, org.sources, tmp_path, generated_at=now)
    assert sorted(p.name for p in written) == ["remediation.ps1", "rollback.ps1"]
    info = exconn.RunInfo(generated_at=now, sources=org.sources, fail_on=exconn.Severity.HIGH, offline=True)
    assert '"findings"' in exconn.render.render(report, org, info, exconn.Format.JSON)
