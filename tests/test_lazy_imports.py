"""An offline audit loads only what it uses: no DNS, HTTP, remoting or X.509 library.

Each check runs in a fresh interpreter, because this test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

# Libraries an offline audit of connectors never calls; each costs tens of milliseconds to import.
NETWORK_ONLY = (
    "dns",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "pypsrp",
    "spnego",
    "cryptography",
    "ssl",
    "OpenSSL",
)
# Only the formats that print tables need tabulate; a JSON audit does not.
TABLE_ONLY = ("tabulate", "jinja2")

PROBE = """
import json, sys
from exconn.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def run_cli(*args: str) -> dict[str, object]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_offline_audit_of_connectors_imports_no_network_library(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli(
        "audit",
        "--offline",
        str(SAMPLES / "fabrikam" / "Get-SendConnector.xml"),
        "--format",
        "json",
        "-o",
        str(out),
    )
    assert result["code"] in (0, 1)
    assert json.loads(out.read_text(encoding="utf-8"))["inventory"], "the audit read nothing"
    modules = result["modules"]
    assert isinstance(modules, list)
    assert [name for name in (*NETWORK_ONLY, *TABLE_ONLY) if name in modules] == []


def test_certificates_still_load_cryptography_when_needed(tmp_path: Path) -> None:
    # The lazy import must not lose the DER fallback: a certificate export does need cryptography.
    out = tmp_path / "report.json"
    result = run_cli("audit", "--offline", str(SAMPLES / "fabrikam"), "--format", "json", "-o", str(out))
    modules = result["modules"]
    assert isinstance(modules, list) and "cryptography" in modules


def test_auth_choices_of_the_parser_are_the_sessions() -> None:
    # psrp_cli spells the tuple out so that building the parser does not import the session code.
    from exconn.sources import psrp_cli, psrp_session

    assert psrp_cli.AUTH_CHOICES == psrp_session.AUTH_CHOICES
