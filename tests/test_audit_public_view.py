"""`exconn audit` through a resolver without the public view (issue 9 §3): the session's loopback
resolver knows only `test.`, like an AD DNS server that knows only its internal zones, so the sample
organisation's domains (fabrikam.com, ...) all come back NXDOMAIN or failing. No finding may be drawn
from that; the note says why and how to pass --resolver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from exconn.cli import main
from tests.conftest import PostureEnv
from tests.servers.dns import NxdomainUdp

pytestmark = pytest.mark.servers

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "fabrikam"


@pytest.fixture(scope="module")
def nxdomain_resolver() -> Iterator[str]:
    server = NxdomainUdp()
    yield server.address
    server.stop()


@pytest.mark.parametrize("kind", ["nxdomain", "refused"])
def test_no_finding_from_a_resolver_without_the_public_view(
    posture_env: PostureEnv,
    nxdomain_resolver: str,
    kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every answer NXDOMAIN (a server knowing only internal zones), or REFUSED (Unbound here, which
    serves only `test.`): our accepted domains cannot be observed, so nothing is concluded."""
    resolver = nxdomain_resolver if kind == "nxdomain" else posture_env.resolver
    out = tmp_path / "audit.json"
    code = main(
        [
            "audit",
            str(SAMPLE),
            "--resolver",
            resolver,
            "--ca-file",
            posture_env.ca_file,
            "--timeout",
            "2",
            "--format",
            "json",
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    report = json.loads(out.read_text())
    assert code in (0, 1)  # the offline rules' findings still stand
    domain_findings = [
        f for f in report["findings"] if f["rule"].startswith("EXC-W") and ".com" in json.dumps(f["target"])
    ]
    assert domain_findings == []
    assert f"the resolver {resolver} does not give the public view" in err
    assert "fabrikam.com" in err and "--resolver ADDR[:PORT]" in err
    skipped = json.dumps(report["skipped"])
    assert "fabrikam.com" in skipped and "resolver-not-public" in skipped
