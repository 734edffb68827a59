"""The admin who pastes odd things: the CLI end to end, one line and the right exit status each.

Every test here failed before the fix it guards (see each docstring); all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import codecs
import http.server
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exconn.cli import main

ROOT = Path(__file__).parents[1]
SAMPLES = ROOT / "samples"
SEND = SAMPLES / "fabrikam" / "Get-SendConnector.xml"
POSTURE = SAMPLES / "posture" / "fabrikam.json"
NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *needles: str) -> None:
    """stderr is exactly one `exconn...: error: ...` line holding every needle, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ": error: " in lines[0] and "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in lines[0], err


def send_text() -> str:
    return SEND.read_bytes().decode("utf-16")


# --- exports that are odd but legitimate ---------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF32_LE + t.encode("utf-32-le"),  # Export-Clixml -Encoding UTF32
        lambda t: t.encode("utf-32-be"),
        lambda t: ('<?xml version="1.0" encoding="ISO-8859-1"?>\n' + t).encode("latin-1"),
        lambda t: ("#< CLIXML\r\n" + t).encode("utf-8"),  # powershell -OutputFormat XML
        lambda t: codecs.BOM_UTF16_LE + ("#< CLIXML\r\n" + t).encode("utf-16-le"),
    ],
    ids=["utf32le-bom", "utf32be", "latin1-declared", "clixml-marker", "clixml-marker-utf16"],
)
def test_legitimate_encodings_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str], encode) -> None:  # type: ignore[no-untyped-def]
    """Was: UTF-32 'is a binary file', Latin-1 'Invalid bytes', `#< CLIXML` 'is not XML'."""
    text = send_text().lstrip("\ufeff").replace("Lab", "Läb")
    path = tmp_path / "send.xml"
    path.write_bytes(encode(text))
    code, out, err = run(capsys, "audit", "--offline", str(path), "--format", "json")
    assert code == 1, err
    identities = {i["identity"] for i in json.loads(out)["inventory"]}
    assert "Läb" in identities and "To Contoso" in identities


def test_undeclared_latin1_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "send.xml"
    path.write_bytes(send_text().lstrip("\ufeff").replace("Lab", "Läb").encode("latin-1"))
    code, _, err = run(capsys, "audit", "--offline", str(path))
    assert code == 2
    one_error_line(err, str(path), "not valid UTF-8", "XML declaration")


def test_non_utf8_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: internal error (lxml cannot encode the surrogate-escaped name; UTF-8 writers neither)."""
    folder = os.fsencode(tmp_path)
    (Path(os.fsdecode(folder + b"/caf\xe9.xml"))).write_bytes(SEND.read_bytes())
    fix = tmp_path / "fix"
    code, out, err = run(
        capsys, "audit", "--offline", str(tmp_path), "--format", "json", "--fix-out", str(fix)
    )
    assert code == 1, err
    assert json.loads(out)["sources"] == [f"{tmp_path}/caf\\xe9.xml"]
    assert "caf\\xe9.xml" in (fix / "remediation.ps1").read_text(encoding="utf-8-sig")


def test_lone_surrogate_in_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: internal error UnicodeEncodeError writing the report and the fix scripts."""
    path = tmp_path / "send.xml"
    path.write_text(send_text().lstrip("\ufeff").replace("To Contoso", "To _xD800_Contoso"), "utf-8")
    out_file, fix = tmp_path / "report.json", tmp_path / "fix"
    code, _, err = run(
        capsys,
        "audit",
        "--offline",
        str(path),
        "--format",
        "json",
        "-o",
        str(out_file),
        "--fix-out",
        str(fix),
    )
    assert code == 1, err
    findings = json.loads(out_file.read_text(encoding="utf-8"))["findings"]
    assert any(f["target"]["identity"] == "To \ud800Contoso" for f in findings)
    assert "To \\ud800Contoso" in (fix / "remediation.ps1").read_text(encoding="utf-8-sig")


@pytest.mark.parametrize(
    "body",
    [
        "",
        '<Obj RefId="0"><TN RefId="0"><T>Deserialized.Microsoft.Exchange.Data.Directory.Management.Mailbox'
        '</T></TN><ToString>bob</ToString><Props><S N="Name">bob</S></Props></Obj>',
    ],
    ids=["zero-objects", "get-mailbox"],
)
def test_nothing_to_audit_is_no_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str) -> None:
    """Was: exit 0 and PASS for an export of another cmdlet, or of nothing."""
    path = tmp_path / "mailbox.xml"
    path.write_text(f'<Objs Version="1.1.0.1" {NS}>{body}</Objs>', encoding="utf-8")
    code, _, err = run(capsys, "audit", "--offline", str(path))
    assert code == 2
    one_error_line(err, str(path), "nothing exconn audits")


def test_fifo_and_devices_are_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: 'no such file or folder' for paths that exist; --posture FIFO hung, /dev/zero grew."""
    fifo = tmp_path / "send.xml"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "audit", "--offline", str(fifo))
    assert code == 2
    one_error_line(err, str(fifo), "not a regular file")
    for argv in (
        ["audit", "--offline", str(SEND), "--posture", str(fifo)],
        ["audit", "--offline", str(SEND), "--posture", "/dev/zero"],
        ["posture", "--load", "/dev/zero"],
        ["posture", "--domains-file", str(fifo)],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2
        one_error_line(err, "not a regular file")


# --- odd options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", ""],
        ["audit", "--offline", str(SEND), "-o", ""],
        ["audit", "--offline", str(SEND), "--fix-out", ""],
        ["posture", "--load", str(POSTURE), "--save", ""],
        ["collect", "--server", "127.0.0.1", "--out", ""],
    ],
    ids=["path", "output", "fix-out", "save", "out"],
)
def test_empty_names_are_refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """Was: the current folder audited / written into, or --save silently ignored."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    one_error_line(capsys.readouterr().err, "empty name")


def test_format_is_case_insensitive_and_lists_choices(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "--offline", str(SEND), "--format", "JSON")
    assert code == 1 and json.loads(out)["findings"]
    with pytest.raises(SystemExit):
        main(["audit", "--offline", str(SEND), "--format", "csv"])
    one_error_line(capsys.readouterr().err, "table, json, markdown, sarif")


def test_output_to_a_fifo_stays_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: -o /dev/null (as root) replaced the device by a regular file, via rename."""
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code, _, err = run(capsys, "audit", "--offline", str(SEND), "--format", "json", "-o", str(fifo))
        assert code == 1, err
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert os.read(reader, 65536).startswith(b"{")
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_fix_out_onto_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: internal error FileExistsError."""
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    code, _, err = run(capsys, "audit", "--offline", str(SEND), "--fix-out", str(target))
    assert code == 2
    one_error_line(err, str(target), "not a folder")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    "argv",
    [
        ["posture", "a.test", "--timeout", "nan", "--resolver", "127.0.0.1:1", "--no-smtp"],
        ["posture", "a.test", "--timeout", "inf", "--resolver", "127.0.0.1:1", "--no-smtp"],
        ["audit", str(SEND), "--timeout", "nan", "--resolver", "127.0.0.1:1"],
        ["collect", "--server", "127.0.0.1", "--port", "1", "--timeout", "nan", "--out", "x"],
        ["collect", "--server", "127.0.0.1", "--port", "70000", "--out", "x"],
    ],
    ids=["posture-nan", "posture-inf", "audit-nan", "collect-nan", "port"],
)
def test_impossible_numbers(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """Was: nan/inf passed `<= 0` checks and hung; nan crashed int(); port 70000 'InvalidURL'."""
    code, _, err = run(capsys, *argv)
    assert code == 2
    one_error_line(err)
    assert "nan" in err or "inf" in err or "between 1 and 65535" in err


def test_domain_lists_as_admins_write_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: IDNs 'not a domain name'; a UTF-16 list (PowerShell 5.1 `>`) unreadable."""
    listing = tmp_path / "domains.txt"
    listing.write_text("bücher.test\r\nexample.test.\r\n", encoding="utf-16")
    code, out, err = run(
        capsys,
        *["posture", "--domains-file", str(listing), "--resolver", "127.0.0.1:1"],
        *["--timeout", "0.5", "--no-smtp", "--format", "json"],
    )
    # Nothing answers at 127.0.0.1:1: the list is read and reported, and nothing observed (issue 9 §3).
    assert code == 2 and "does not give the public view" in err, err
    assert [d["domain"] for d in json.loads(out)["domains"]] == ["xn--bcher-kva.test", "example.test"]
    code, _, err = run(capsys, "posture", "a" * 300 + ".test", "--no-smtp")
    assert code == 2
    one_error_line(err, "at most 253")
    assert len(err) < 300


# --- hostile peers for collect / audit --server --------------------------------------------------


@pytest.fixture
def web_page() -> Iterator[int]:
    """An HTTP server on loopback that answers every request with 200 and an HTML page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<html><body>IIS Windows Server</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_web_page_instead_of_the_endpoint(
    web_page: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: `KeyError: '127.0.0.1'` (pypsrp's missing security context)."""
    monkeypatch.setenv("EXCONN_TEST_PW", "pw")
    code, _, err = run(
        capsys,
        *["collect", "--server", "127.0.0.1", "--port", str(web_page), "--auth", "ntlm"],
        *[
            "--username",
            "u",
            "--password-env",
            "EXCONN_TEST_PW",
            "--timeout",
            "3",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert code == 2
    one_error_line(err, "127.0.0.1", "without asking for authentication", "--path")


def test_basic_password_characters_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: UnicodeEncodeError quoting the password's '€' and its position."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    secret = "s3cr\"et'ü€$x"
    monkeypatch.setenv("EXCONN_TEST_PW", secret)
    code, out, err = run(
        capsys,
        *["collect", "--server", "127.0.0.1", "--port", str(port), "--ssl", "--auth", "basic"],
        *[
            "--username",
            "u",
            "--password-env",
            "EXCONN_TEST_PW",
            "--timeout",
            "3",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert code == 2
    one_error_line(err, "Latin-1")
    assert "€" not in out + err and "20ac" not in (out + err).lower() and secret not in out + err


def test_fix_out_replaces_a_planted_symlink_never_writes_through_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: a link `fix/remediation.ps1 -> ~/.bashrc` got the script written into ~/.bashrc (mode reset)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    fix = tmp_path / "fix"
    fix.mkdir()
    (fix / "remediation.ps1").symlink_to(victim)
    (fix / "rollback.ps1").symlink_to(tmp_path / "dangling")
    code, _, err = run(capsys, "audit", "--offline", str(SEND), "--fix-out", str(fix))
    assert code == 1, err
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (tmp_path / "dangling").exists()
    for name in ("remediation.ps1", "rollback.ps1"):
        assert not (fix / name).is_symlink() and (fix / name).read_bytes().startswith(b"\xef\xbb\xbf<#")


def test_output_keeps_the_mode_of_the_file_it_replaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: -o onto a 0600 report made it 0644 (the umask's mode)."""
    out = tmp_path / "audit.json"
    out.write_text("old")
    out.chmod(0o600)
    code, _, err = run(capsys, "audit", "--offline", str(SEND), "--format", "json", "-o", str(out))
    assert code == 1, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text().startswith("{")


def test_output_into_a_missing_folder_fails_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: the whole audit ran, then `cannot write: No such file or directory`."""
    missing = tmp_path / "nope" / "audit.json"
    # The export does not exist either: the output check comes first, so that is not the error.
    code, _, err = run(capsys, "audit", "--offline", str(tmp_path / "absent.xml"), "-o", str(missing))
    assert code == 2
    one_error_line(err, str(missing), "does not exist")
