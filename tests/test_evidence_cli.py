"""`exconn evidence` end to end, the JSON contract, the save format and merging by addition."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exconn.cli import main
from exconn.evidence import dumps, load, merge, reduce_paths
from exconn.evidence.saved import from_doc, to_doc
from tests.test_evidence_readers import REAL, inbound_tls, protocol_log, session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A folder of real fixtures plus synthetic receive and send logs of two days."""
    folder = tmp_path / "logs"
    shutil.copytree(REAL, folder)
    for day in ("25", "26"):
        sessions = [inbound_tls(f"08DD00000000{day}A{i}", f"198.51.100.{i}") for i in range(3)]
        lines = [line.replace("2025-05-26", f"2025-05-{day}") for s in sessions for line in s]
        (folder / f"recv{day}").write_text(protocol_log("Receive", lines), newline="")
        send = session("Internet", f"08DD00000000{day}C1", "10.0.0.2:41000", "142.250.1.27:25", [
            ("+", "", ""), ("<", "220 mx.google.com ESMTP", ""), (">", "EHLO mail.fabrikam.com", ""),
            ("<", "250  mx.google.com at your service SIZE 157286400 8BITMIME STARTTLS", ""),
            (">", "STARTTLS", ""), ("<", "220 2.0.0 Ready to start TLS", ""),
            ("*", "", "TLS protocol SP_PROT_TLS1_3_CLIENT negotiation succeeded using bulk encryption algorithm CALG_AES_256"),
            (">", "MAIL FROM:<u@fabrikam.com>", ""), (">", "RCPT TO:<x@gmail.com>", ""), ("-", "", "Local"),
        ], t=f"2025-05-{day}T11:00:0")  # fmt: skip
        (folder / f"send{day}").write_text(protocol_log("Send", send), newline="")
    return folder


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract(logs, capsys):
    code, out, err = run_cli("evidence", str(logs), "--format", "json", "--workers", "1", capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"traffic", "tls_reports", "policy_fetches", "recipient_domains", "coverage"}
    traffic_keys = {"direction", "server", "connector", "remote_ip", "remote_host", "remote_domain", "sessions", "tls",
                    "plaintext", "tls_failed", "starttls_offered", "tls_versions", "certificates", "first", "last"}  # fmt: skip
    for t in doc["traffic"]:
        assert set(t) == traffic_keys
        assert t["sessions"] == t["tls"] + t["plaintext"] + t["tls_failed"]
        for c in t["certificates"]:
            assert set(c) == {"thumbprint", "subject", "not_after", "sessions"}
    out_google = next(t for t in doc["traffic"] if t["connector"] == "Internet")
    assert (out_google["server"], out_google["remote_domain"], out_google["remote_host"]) == (
        "EX02",
        "gmail.com",
        "mx.google.com",
    )
    assert out_google["tls_versions"] == {"TLS1.3": 2} and out_google["first"] == "2025-05-25T11:00:00.000Z"
    for r in doc["tls_reports"]:
        assert set(r) == {"organization", "report_id", "start", "end", "policy_domain", "policy_type", "successful",
                          "failed", "failures"}  # fmt: skip
        for f in r["failures"]:
            assert set(f) == {
                "result_type",
                "receiving_mx_hostname",
                "receiving_ip",
                "sending_mta_ip",
                "count",
            }
    assert "2025-05-25" in doc["coverage"]["days"] and "EX02" in doc["coverage"]["servers"]
    assert "1 file(s) are not logs or reports" in err and err.count("\n") == 1


def test_since_filters_sessions_and_reports(logs, capsys):
    code, out, _ = run_cli("evidence", str(logs), "--format", "json", "--since", "2025-05-26", capsys=capsys)
    doc = json.loads(out)
    assert sum(t["sessions"] for t in doc["traffic"]) == 4  # 3 inbound + 1 outbound of the 26th
    assert {r["start"][:10] for r in doc["tls_reports"]} == {"2025-06-14"}  # the others end earlier


def test_merge_of_halves_equals_whole_and_save_round_trip(logs, tmp_path):
    files = sorted(p for p in logs.iterdir())
    whole = reduce_paths([logs], workers=1)
    half_a = reduce_paths(files[::2], workers=1)
    half_b = reduce_paths(files[1::2], workers=1)
    assert merge(half_a, half_b) == whole
    assert merge(half_b, half_a) == whole
    assert from_doc(json.loads(dumps(whole))) == whole
    assert to_doc(load_path(tmp_path, whole)) == to_doc(whole)


def load_path(tmp_path: Path, ev):
    path = tmp_path / "saved.json"
    path.write_bytes(dumps(ev))
    return load(path)


def test_saved_files_given_as_paths_merge(logs, tmp_path, capsys):
    files = sorted(p for p in logs.iterdir())
    a, b, whole = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "whole.json"
    assert run_cli("evidence", *map(str, files[::2]), "--save", str(a), capsys=capsys)[0] == 0
    assert run_cli("evidence", *map(str, files[1::2]), "--save", str(b), capsys=capsys)[0] == 0
    assert run_cli("evidence", str(logs), "--save", str(whole), capsys=capsys)[0] == 0
    merged = tmp_path / "merged.json"
    assert run_cli("evidence", str(a), str(b), "--save", str(merged), capsys=capsys)[0] == 0
    assert load(merged) == load(whole)
    assert json.loads(whole.read_text())["format"] == "exconn-evidence"


def test_parallel_equals_serial(logs):
    assert reduce_paths([logs], workers=2) == reduce_paths([logs], workers=1)


def test_table_and_markdown_show_on_the_wire(logs, capsys):
    code, out, _ = run_cli("evidence", str(logs), capsys=capsys)
    assert (
        code == 0
        and out.startswith("On the wire")
        and "EX02\\Default Frontend EX02" in out
        and "100 %" in out
    )
    code, out, _ = run_cli("evidence", str(logs), "--format", "markdown", capsys=capsys)
    assert "## On the wire" in out and "| inbound" in out


def test_bad_inputs_one_line(tmp_path, capsys):
    code, _, err = run_cli("evidence", str(tmp_path / "missing"), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "missing" in err
    (tmp_path / "junk.txt").write_text("hello\n")
    code, _, err = run_cli("evidence", str(tmp_path), capsys=capsys)
    assert code == 2 and "no readable logs" in err
    with pytest.raises(SystemExit) as exc:
        main(["evidence", str(tmp_path), "--since", "yesterday"])
    assert exc.value.code == 2 and "not a date" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "exconn-evidence", "version": 1, "traffic": [{"direction": 3}]}')
    code, _, err = run_cli("evidence", str(bad), capsys=capsys)
    assert "bad.json" in err and "direction" in err and "Traceback" not in err


def test_module_entry_point(logs):
    proc = subprocess.run([sys.executable, "-m", "exconn", "evidence", str(logs), "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["traffic"]
