"""samples/fabrikam-evidence: deterministic, current, and consistent with samples/fabrikam."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from exconn.evidence import reduce_paths
from exconn.sources.files import load

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "fabrikam-evidence"


def _generate(out: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_evidence_samples.py"), str(out)], check=True,
                   capture_output=True, timeout=120)  # fmt: skip


def _tree(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_generator_is_deterministic_and_committed_samples_are_current(tmp_path):
    _generate(tmp_path / "a")
    _generate(tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b") == _tree(SAMPLES)
    for rel in _tree(SAMPLES):
        assert filecmp.cmp(tmp_path / "a" / rel, tmp_path / "b" / rel, shallow=False), rel
        assert filecmp.cmp(tmp_path / "a" / rel, SAMPLES / rel, shallow=False), (
            f"{rel}: run scripts/make_evidence_samples.py"
        )


def test_samples_agree_with_the_organisation():
    org = load([ROOT / "samples" / "fabrikam"])
    ev = reduce_paths([SAMPLES], workers=1)
    traffic = ev.resolved_traffic()
    receive_ids = {c.identity for c in org.receive_connectors}
    send_names = {c.name for c in org.send_connectors}
    assert {t.connector for t in traffic if t.direction == "inbound"} <= receive_ids
    assert {t.connector for t in traffic if t.direction == "outbound"} <= send_names
    # EX02's expired certificate (the one its Default Frontend's TlsCertificateName names) shows.
    expired = {c.thumbprint for c in org.certificates if c.server == "EX02" and str(c.not_after) < "2025"}
    ex02 = [t for t in traffic if t.connector == "EX02\\Default Frontend EX02" and t.tls]
    assert ex02 and all({c.thumbprint for c in t.certificates} == expired for t in ex02)
    ex01 = [t for t in traffic if t.connector == "EX01\\Default Frontend EX01" and t.tls]
    assert ex01 and not any({c.thumbprint for c in t.certificates} & expired for t in ex01)
    # The scanner relay: STARTTLS offered, never sent (IgnoreSTARTTLS), so every session plaintext.
    relay = [t for t in traffic if t.connector == "Legacy Scanner Relay"]
    assert relay and all(t.plaintext == t.sessions == t.plaintext_offered for t in relay)
    assert {t.server for t in relay} == {"EX01", "EX02"}
    # The Microsoft report's quirks, and the policy host's fetchers.
    ms = [r for r in ev.tls_reports if r.organization == "Microsoft Corporation" and r.policy_type == "sts"]
    assert ms and all(r.start.endswith("T00:00:00Z") and r.failures[0].sending_mta_ip is None for r in ms)
    assert {(f.fetcher, f.attributed_by) for f in ev.policy_fetches} == {
        ("Google", "user-agent"),
        ("Microsoft", "address"),
        ("Yahoo", "address"),
        ("curl", "unknown"),
    }
    assert ev.unlogged_connectors() == [n for n in send_names if n.startswith("Outbound to Office 365")]
    own = {d.domain_name for d in org.accepted_domains}
    assert not own & {r.domain for r in ev.recipient_domains()}
