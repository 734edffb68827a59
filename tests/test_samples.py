"""The bundled samples (scripts/make_samples.py): deterministic, committed as generated, readable in
every form they come in."""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from exconn import model
from exconn.cli import main
from exconn.sources import files
from tests.clixml_build import PS_NAMESPACE

ROOT = Path(__file__).resolve().parent.parent
NS = {"ps": PS_NAMESPACE}


def type_names(xml: bytes) -> list[list[str]]:
    """Each top-level object's type names, following TNRef to the TN it shares."""
    root = etree.fromstring(xml)
    out = []
    for obj in root.findall("ps:Obj", NS):
        tn = obj.find("ps:TN", NS)
        if tn is None:
            ref = obj.find("ps:TNRef", NS)
            assert ref is not None
            tn = root.find(f".//ps:TN[@RefId='{ref.get('RefId')}']", NS)
        assert tn is not None
        out.append([t.text or "" for t in tn.findall("ps:T", NS)])
    return out


def _make_samples(out: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_samples.py"), str(out)], check=True)


# samples/posture/ is a saved network observation (tests/test_audit_network.py), not generated here.
NOT_GENERATED = {"posture", "fabrikam-evidence"}


def _same_tree(a: Path, b: Path) -> list[str]:
    def files(root: Path) -> list[Path]:
        found = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
        return sorted(p for p in found if p.parts[0] not in NOT_GENERATED)

    files_a, files_b = files(a), files(b)
    assert files_a == files_b
    return [str(p) for p in files_a if not filecmp.cmp(a / p, b / p, shallow=False)]


@pytest.mark.slow
def test_make_samples_is_deterministic_and_committed_samples_are_current(tmp_path: Path) -> None:
    _make_samples(tmp_path / "one")
    _make_samples(tmp_path / "two")
    assert _same_tree(tmp_path / "one", tmp_path / "two") == []
    assert _same_tree(tmp_path / "one", ROOT / "samples") == [], "run python scripts/make_samples.py"


def test_samples_parse_in_every_form() -> None:
    samples = ROOT / "samples"
    expected = {
        "fabrikam/Get-ReceiveConnector.xml": (b"\xff\xfe", 12, "Microsoft.Exchange"),
        "fabrikam/Get-SendConnector.xml": (b"\xff\xfe", 5, "Microsoft.Exchange"),
        "forms/Get-ReceiveConnector.deserialized.xml": (
            b"\xef\xbb\xbf",
            12,
            "Deserialized.Microsoft.Exchange",
        ),
        "forms/Get-SendConnector.selected.xml": (b"<Objs", 5, "Selected.Microsoft.Exchange"),
        "exo/Get-InboundConnector.xml": (b"\xef\xbb\xbf", 2, "Deserialized.Microsoft.Exchange"),
    }
    for rel, (start, count, prefix) in expected.items():
        data = (samples / rel).read_bytes()
        assert data.startswith(start), rel
        names = type_names(data)
        assert len(names) == count, rel
        assert all(n[0].startswith(prefix) for n in names), rel
    for bad in ("xxe.xml", "billion-laughs.xml"):
        text = (samples / "bad" / bad).read_bytes()
        assert b"<!DOCTYPE Objs [" in text and b"<!ENTITY" in text, bad


def test_reader_loads_the_fabrikam_samples() -> None:
    folder = ROOT / "samples" / "fabrikam"
    org = files.load(sorted(folder.glob("*.xml")))
    assert len(org.send_connectors) == 5
    assert len(org.receive_connectors) == 12
    assert len(org.accepted_domains) == 3
    assert len(org.transport_configs) == 1
    assert len(org.servers) == 2
    assert len({c.thumbprint for c in org.certificates}) == 5
    recv = {c.identity: c for c in org.receive_connectors}
    relay = recv["EX02\\Relay EX02"]
    assert relay.auth_mechanism == model.AuthMechanism.NONE
    assert relay.permission_groups == model.PermissionGroups.ANONYMOUS_USERS
    assert recv["EX02\\Partner Contoso"].domain_secure_enabled is True
    send = {c.name: c for c in org.send_connectors}
    assert send["To Contoso"].tls_auth_level == model.TlsAuthLevel.ENCRYPTION_ONLY
    assert send["Legacy Scanner Relay"].ignore_starttls is True
    assert send["Legacy Scanner Relay"].smart_host_auth_mechanism == model.SmartHostAuthMechanism.BASIC_AUTH
    assert send["Lab"].enabled is False
    assert org.transport_configs[0].tls_receive_domain_secure_list == ("tailspintoys.com",)


# --- samples/README.md's promised findings, against the tool ------------------------------------------

_FOLDER = re.compile(r"^### `([a-z]+)/`$")
_ROW = re.compile(r"^\| `(?P<target>[^`]+)` \| (?P<planted>.*) \| (?P<expected>.*) \|$")
_FINDING = re.compile(r"`(EXC-[A-Z]\d{3})` \*\*(critical|high|medium|low|info)\*\*")


def documented_findings(readme: str) -> dict[str, set[tuple[str, str, str]]]:
    """Per sample folder: (rule, target, severity) of every finding its connector tables promise."""
    found: dict[str, set[tuple[str, str, str]]] = {}
    folder: str | None = None
    for line in readme.splitlines():
        if line.startswith("## "):
            folder = None
        elif heading := _FOLDER.match(line):
            folder = heading[1]
            found[folder] = set()
        elif folder is not None and (row := _ROW.match(line)) and row["target"] != "connector":
            cell = row["expected"]
            findings = _FINDING.findall(cell)
            # A row promises findings or says "none: why"; anything else is a typo the test would miss.
            assert findings or cell.startswith("none: "), line
            found[folder] |= {(rule, row["target"], severity) for rule, severity in findings}
    return found


def test_readme_parser_reads_what_it_is_given() -> None:
    readme = (
        "## Mistakes\n### `x/`\n| connector | planted | expected finding |\n|---|---|---|\n"
        "| `A\\B` | p | `EXC-R002` **high**: why; `EXC-S004` **critical**: why |\n| `C` | p | none: fine |\n"
        "## bad/\n| `D` | p | `EXC-R001` **low**: not a connector table |\n"
    )
    assert documented_findings(readme) == {
        "x": {("EXC-R002", "A\\B", "high"), ("EXC-S004", "A\\B", "critical")}
    }


def test_every_severity_samples_readme_documents_is_what_audit_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """samples/README.md and the tool cannot drift: each sample folder's audit prints exactly the
    findings (rule, target, severity) the README's tables list for it, no more, no fewer. A rule change
    that moves one of them means updating the Expect entries in scripts/make_samples.py."""
    documented = documented_findings((ROOT / "samples" / "README.md").read_text(encoding="utf-8"))
    assert set(documented) == {"fabrikam", "exo"}
    assert len(documented["fabrikam"]) == 8 and len(documented["exo"]) == 1
    for folder, promised in documented.items():
        main(
            [
                "audit",
                "--offline",
                "--format",
                "json",
                "--fail-on",
                "critical",
                str(ROOT / "samples" / folder),
            ]
        )
        report = json.loads(capsys.readouterr().out)
        printed = {(f["rule"], f["target"]["identity"], f["severity"]) for f in report["findings"]}
        assert printed == promised, (
            folder,
            {
                "printed, not in the README": printed - promised,
                "in the README, not printed": promised - printed,
            },
        )
