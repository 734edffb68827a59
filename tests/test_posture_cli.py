"""`exconn posture` end to end: output formats, --save/--load, --fail-on and exit codes."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from exconn.posture.cli import add_posture_parser, main, run_posture
from tests.conftest import PostureEnv


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- usage and input errors: exit 2, one line, no traceback ------------------------------------


def test_bad_resolver_address_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["example.test", "--resolver", "not-an-ip"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "bad resolver address" in err


def test_unreadable_domains_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["--domains-file", str(tmp_path / "missing.txt")], capsys)
    assert code == 2 and "cannot read domains file" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "no domains given"),
        (["bad..domain"], "not a domain name"),
        (["a.test", "--fail-on", "nonsense"], "unknown --fail-on"),
        (["a.test", "--timeout", "0"], "--timeout"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(argv, capsys)
    assert code == 2 and fragment in err


def test_load_rejects_foreign_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"format": "something-else", "version": 1}')
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert run(["--load", str(other)], capsys)[0] == 2
    code, _out, err = run(["--load", str(broken)], capsys)
    assert code == 2 and "is not JSON" in err


def test_module_entry_point_never_prints_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exconn.posture.cli", "x.test", "--resolver", "1.2.3.4:99999"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "bad port" in result.stderr


def test_add_posture_parser_wires_into_a_main_parser() -> None:
    parser = argparse.ArgumentParser(prog="exconn")
    sub = parser.add_subparsers(dest="command")
    add_posture_parser(sub)
    args = parser.parse_args(["posture", "a.test", "--format", "json", "--no-smtp", "--concurrency", "4"])
    assert args.command == "posture" and args.domains == ["a.test"] and args.no_smtp
    assert args.concurrency == 4 and args.https_port == 443 and args.smtp_port == 25
    assert "--smtp-port" not in parser.format_help()


# --- against the loopback servers --------------------------------------------------------------


@pytest.mark.servers
def test_json_output_and_exit_0(posture_env: PostureEnv, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["good.test", "nosts.test", "bogus.test", "--format", "json", *posture_env.cli_args()], capsys
    )
    assert code == 0  # completed, whatever the domains' states
    data = json.loads(out)
    assert data["format"] == "exconn-posture" and data["version"] == 1
    by_domain = {d["domain"]: d for d in data["domains"]}
    assert by_domain["good.test"]["mta_sts"]["status"] == "valid"
    assert by_domain["nosts.test"]["mta_sts"]["status"] == "absent"
    assert by_domain["bogus.test"]["mta_sts"]["status"] == "error"
    assert by_domain["good.test"]["mx"] == [{"host": "mx.good.test", "preference": 10}]
    assert "[" not in err  # stderr is not a terminal: no progress bar


@pytest.mark.servers
def test_table_output(posture_env: PostureEnv, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["good.test", "nullmx.test", *posture_env.cli_args(smtp=True)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["domain", "MX", "MTA-STS", "TLS-RPT"]
    good = next(line for line in lines if line.startswith("good.test"))
    assert "enforce (1 mx)" in good and "valid" in good and "1/1 ok" in good
    assert "null MX" in next(line for line in lines if line.startswith("nullmx.test"))


@pytest.mark.servers
def test_domains_file(posture_env: PostureEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "domains.txt"
    listing.write_text("# partners\ngood.test\n\nNOSTS.test.  # trailing comment\n")
    code, out, _err = run(
        ["--domains-file", str(listing), "--format", "json", *posture_env.cli_args()], capsys
    )
    assert code == 0
    assert [d["domain"] for d in json.loads(out)["domains"]] == ["good.test", "nosts.test"]


@pytest.mark.servers
def test_save_and_load_round_trip(
    posture_env: PostureEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "posture.json"
    code, live, _ = run(
        [
            "good.test",
            "twotxt.test",
            "--format",
            "json",
            "--save",
            str(saved),
            *posture_env.cli_args(smtp=True),
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(saved.read_text())
    assert data["format"] == "exconn-posture" and data["version"] == 1 and data["observed_at"].endswith("Z")
    assert all(d["observed_at"] for d in data["domains"])
    code, replayed, _ = run(["--load", str(saved), "--format", "json"], capsys)
    assert code == 0
    assert json.loads(replayed) == json.loads(live) == data


@pytest.mark.servers
def test_fail_on(posture_env: PostureEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "posture.json"
    code, _out, _err = run(
        [
            "good.test",
            "nosts.test",
            "requiretls.test",
            "--save",
            str(saved),
            *posture_env.cli_args(smtp=True),
        ],
        capsys,
    )
    assert code == 0
    # good.test passes everything it could fail
    code, _out, err = run(["--load", str(saved), "--fail-on", "no-mta-sts"], capsys)
    assert code == 1
    assert "nosts.test fails no-mta-sts" in err and "good.test" not in err
    code, _out, err = run(["--load", str(saved), "--fail-on", "tls-required,no-dane"], capsys)
    assert code == 1 and "requiretls.test fails tls-required, no-dane" in err
    code, _out, err = run(["--load", str(saved), "--fail-on", "error,bad-certificate,no-starttls"], capsys)
    assert code == 0 and err == ""


@pytest.mark.servers
def test_bad_resolver_port_still_ends(posture_env: PostureEnv, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["good.test", "--format", "json", *posture_env.cli_args(timeout=1.0)]
    argv[argv.index("--resolver") + 1] = posture_env.silent_resolver
    code, out, err = run(argv, capsys)
    # Issue 9 §3: a resolver that never answers observed nothing: the report is still printed, exit 2.
    assert code == 2
    domain = json.loads(out)["domains"][0]
    assert domain["mx_lookup"]["errors"][0]["type"] == "dns-timeout"
    assert [e["type"] for e in domain["errors"]] == ["resolver-not-public"]
    assert "does not give the public view" in err and "--resolver ADDR[:PORT]" in err


@pytest.mark.servers
def test_resolver_without_the_public_view(
    posture_env: PostureEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every domain asked NXDOMAIN (an AD DNS server's internal copy of the zone): not an absence."""
    code, out, err = run(["doesnotexist.test", "nxdomain2.test", *posture_env.cli_args()], capsys)
    assert code == 2
    assert "resolver-not-public" in out  # the problems column says why
    assert f"the resolver {posture_env.resolver} does not give the public view" in err
    assert "doesnotexist.test (NXDOMAIN)" in err
    # One NXDOMAIN among answered domains is an absence like any other (no "ours" on this command).
    code, out, err = run(
        ["doesnotexist.test", "good.test", "--fail-on", "error", *posture_env.cli_args()], capsys
    )
    assert code == 0 and "resolver-not-public" not in out + err


def test_an_own_domain_not_observed_fails_on_error() -> None:
    from exconn.posture.cli import failed_conditions
    from exconn.posture.facts import (
        DaneFacts,
        DomainPosture,
        MtaStsFacts,
        MxFacts,
        PostureReport,
        TlsRptFacts,
    )
    from exconn.posture.view import judge_view, observation_failed

    def posture(domain: str, mx: str) -> DomainPosture:
        return DomainPosture(
            domain,
            "2025-01-01T00:00:00Z",
            MxFacts(mx),
            MtaStsFacts("absent"),
            TlsRptFacts("absent"),
            DaneFacts("not-applicable"),
        )

    report = PostureReport(
        "2025-01-01T00:00:00Z", (posture("contoso.com", "nxdomain"), posture("partner.example", "ok"))
    )
    view = judge_view(report, resolver="10.0.0.1:53", ours=["contoso.com"])
    assert view.unobserved == ("contoso.com",) and not view.nothing_observed
    ours, partner = view.report.domains
    assert observation_failed(ours) and not observation_failed(partner)
    assert failed_conditions(ours, ["error"]) == ["error"] and failed_conditions(partner, ["error"]) == []
    assert view.message is not None and "10.0.0.1:53" in view.message and "--resolver" in view.message
    # A partner's NXDOMAIN among answers is an absence; ours must exist publicly to receive mail.
    assert judge_view(report, resolver="x", ours=()).message is None


def test_run_posture_is_callable_with_a_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_posture_parser(sub)
    args = parser.parse_args(["posture", "--load", "/nonexistent/posture.json"])
    assert run_posture(args) == 2
    assert "cannot read /nonexistent/posture.json" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.servers
def test_progress_bar_only_on_a_terminal(posture_env: PostureEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["good.test", "nosts.test", "--format", "json", *posture_env.cli_args()]) == 0
    assert terminal.getvalue().endswith("] 2/2\n")
    assert "] 1/2" in terminal.getvalue()


@pytest.mark.parametrize("content", [b"not a certificate\n", b""], ids=["text", "empty"])
def test_a_ca_file_without_a_certificate_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    """Said before anything is asked, with the file named: not an internal error mid-scan."""
    bad = tmp_path / "roots.pem"
    bad.write_bytes(content)
    code, out, err = run(["example.test", "--ca-file", str(bad), "--no-smtp"], capsys)
    assert code == 2 and out == ""
    assert f"no certificate found in CA file {bad}" in err and "internal error" not in err, err
