"""Live collection against a loopback endpoint that answers like Exchange's `/PowerShell`.

Everything on the client side is the real path: exconn's code, pypsrp's HTTP transport, NTLM
(pyspnego) with HTTP message encryption, WS-Management SOAP, PSRP fragments and messages, and
CLIXML objects taken from real Exchange 2019 exports. The peer is `tests/servers/psrp.py`: real
HTTP, real NTLM acceptor, real PSRP server state machine (psrpcore); only the cmdlets, RBAC and the
no-language restriction are emulated there (no Exchange can run here).

Kerberos is real too: Debian's MIT KDC on loopback (`tests/servers/kdc.py`), the endpoint accepting
with a keytab for HTTP/localhost, GSSAPI on the client, a ticket got from a password or from the
credential cache `kinit` fills, and a KDC whose clock is off (libfaketime).

Not exercised here, because no peer can run in a test: CredSSP (needs requests-credssp and a
TLS-in-TLS acceptor nobody ships for Python), certificate authentication (IIS client-certificate
mapping), and DNS failures (resolving a name would leave loopback; `describe_error` maps `gaierror`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from exconn.cli import main
from exconn.model import Organization, Source, kind_of
from exconn.sources.files import load
from exconn.sources.psrp import _server_name, collect
from exconn.sources.psrp_adapt import to_organization
from exconn.sources.psrp_session import ConnectionOptions, describe_error, kerberos_available, open_session
from tests.servers.ca import TestCA
from tests.servers.kdc import KDC, REALM, missing_binaries
from tests.servers.psrp import (
    NO_LANGUAGE_MESSAGE,
    ExchangeEndpoint,
    ExchangeOrg,
    wire_object,
    wire_objects_from_clixml,
    write_ntlm_user_file,
)

pytestmark = pytest.mark.servers

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
ADMIN, PASSWORD = "CONTOSO\\exadmin", "Sw0rdfish!-not-in-any-output"
VIEWER, VIEWER_PASSWORD = "CONTOSO\\helpdesk", "Another!secret-42"
USERS = {ADMIN: PASSWORD, VIEWER: VIEWER_PASSWORD}
PW_ENV = "EXCONN_TEST_PASSWORD"
EX01, EX02 = "WIN-CTD3L0RGEN4", "EX02"  # EX01 is the lab server of the real exports


def _exchange_server(name: str, fqdn: str) -> bytes:
    return wire_object(
        ["Microsoft.Exchange.Data.Directory.Management.ExchangeServer", "System.Object"],
        name,
        [
            ("Name", "S", name),
            ("Fqdn", "S", fqdn),
            ("Identity", "S", name),
            ("AdminDisplayVersion", "S", "Version 15.2 (Build 1118.7)"),
            ("ServerRole", "S", "Mailbox"),
            (
                "DistinguishedName",
                "S",
                f"CN={name},CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative "
                "Groups,CN=Contoso Lab,CN=Microsoft Exchange,CN=Services,CN=Configuration,DC=exlab,DC=dom",
            ),
        ],
    )


def _org() -> ExchangeOrg:
    # Only the tests served these real exports need them; the others run without ../shared.
    if not REAL.is_dir():  # pragma: no cover - CI has the shared fixtures
        pytest.skip("../shared/fixtures/real is not present")
    to_ex02 = {EX01: EX02, EX01.lower(): EX02.lower()}
    receive = REAL / "CSS-Exchange_GetReceiveConnector.xml"
    certs = REAL / "CSS-Exchange_GetExchangeCertificate_sameLab.xml"
    return ExchangeOrg(
        send_connectors=[
            *wire_objects_from_clixml(REAL / "CSS-Exchange_GetSendConnector.xml"),
            *wire_objects_from_clixml(REAL / "CSS-Exchange_GetSendConnectorConfiguredToRelayToM365.xml"),
        ],
        receive_connectors={
            EX01: wire_objects_from_clixml(receive),
            EX02: wire_objects_from_clixml(receive, replace=to_ex02),
        },
        certificates={EX01: wire_objects_from_clixml(certs), EX02: wire_objects_from_clixml(certs)},
        accepted_domains=[
            wire_object(
                ["Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomain", "System.Object"],
                "exlab.dom",
                [
                    ("Name", "S", "exlab.dom"),
                    ("Identity", "S", "exlab.dom"),
                    ("DomainName", "S", "exlab.dom"),
                    ("DomainType", "S", "Authoritative"),
                    ("Default", "B", True),
                ],
            )
        ],
        transport_config=[
            wire_object(
                [
                    "Microsoft.Exchange.Data.Directory.SystemConfiguration.TransportConfigContainer",
                    "System.Object",
                ],
                "Transport Settings",
                [
                    ("Identity", "S", "Transport Settings"),
                    ("TLSReceiveDomainSecureList", "LST", ["fabrikam.com"]),
                    ("TLSSendDomainSecureList", "LST", []),
                ],
            )
        ],
        organization_config=[
            wire_object(
                ["Microsoft.Exchange.Data.Directory.Management.OrganizationConfig", "System.Object"],
                "Contoso Lab",
                [("Name", "S", "Contoso Lab"), ("Identity", "S", "Contoso Lab")],
            )
        ],
        exchange_servers=[
            _exchange_server(EX01, "WIN-CTD3L0RGEN4.exlab.dom"),
            _exchange_server(EX02, "ex02.exlab.dom"),
        ],
        # What Exchange resolves for -Server: names, FQDNs, and (as DNS would) the loopback addresses.
        aliases={
            EX01.lower(): EX01,
            "win-ctd3l0rgen4.exlab.dom": EX01,
            "127.0.0.2": EX01,
            "localhost": EX01,
            "ex02": EX02,
            "ex02.exlab.dom": EX02,
            "127.0.0.3": EX02,
        },
    )


@pytest.fixture
def ntlm_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTLM_USER_FILE", str(write_ntlm_user_file(tmp_path / "ntlm-users", USERS)))
    monkeypatch.setenv(PW_ENV, PASSWORD)


@pytest.fixture
def org() -> ExchangeOrg:
    return _org()


def _pair_port() -> int:
    """A port free on both 127.0.0.2 and 127.0.0.3 (two 'servers', one --port, like IIS on 80)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.2", 0))
            port = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.3", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no common free port")


@pytest.fixture
def two_servers(ntlm_users: None, org: ExchangeOrg) -> Iterator[list[ExchangeEndpoint]]:
    port = _pair_port()
    endpoints = [
        ExchangeEndpoint(
            org, server_name=EX01, users=USERS, admins={ADMIN}, host="127.0.0.2", port=port
        ).start(),
        ExchangeEndpoint(
            org, server_name=EX02, users=USERS, admins={ADMIN}, host="127.0.0.3", port=port
        ).start(),
    ]
    yield endpoints
    for endpoint in endpoints:
        endpoint.stop()


@pytest.fixture
def one_server(ntlm_users: None, org: ExchangeOrg) -> Iterator[ExchangeEndpoint]:
    endpoint = ExchangeEndpoint(org, server_name=EX01, users=USERS, admins={ADMIN}, host="127.0.0.2").start()
    yield endpoint
    endpoint.stop()


def _ntlm_args(*servers: str, port: int, user: str = ADMIN) -> list[str]:
    args = []
    for server in servers:
        args += ["--server", server]
    return [*args, "--port", str(port), "--auth", "ntlm", "--username", user, "--password-env", PW_ENV]


def _options(port: int, **changes: object) -> ConnectionOptions:
    base = ConnectionOptions(auth="ntlm", username=ADMIN, password=PASSWORD, port=port, timeout=10)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _stderr_lines(captured: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in captured.readouterr().err.splitlines() if line.strip()]


def _comparable(org: Organization) -> list[tuple[str, str, str, object]]:
    """Model objects without their Source (a file path vs psrp://host), sorted stably."""
    neutral = Source("-")
    rows = []
    for obj in org.objects():
        server = str(getattr(obj, "server", ""))
        rows.append(
            (
                kind_of(obj),
                repr(getattr(obj, "identity", "")),
                server,
                dataclasses.replace(obj, source=neutral),
            )
        )
    return sorted(rows, key=lambda row: row[:3])


# --- the main path ---------------------------------------------------------------------------------


def test_collect_two_servers_writes_the_export_scripts_snapshot(
    two_servers: list[ExchangeEndpoint], org: ExchangeOrg, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "snapshot"
    port = two_servers[0].port
    assert main(["collect", *_ntlm_args("127.0.0.2", "127.0.0.3", port=port), "--out", str(out)]) == 0

    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["format"] == "exconn-snapshot" and manifest["version"] == 1
    assert manifest["environment"] == "ExchangeServer"
    assert manifest["organization"] == "Contoso Lab"  # Get-OrganizationConfig, as the script does
    assert manifest["exchangeBuild"] == "Version 15.2 (Build 1118.7)"
    assert [s["name"] for s in manifest["servers"]] == [EX01, EX02]
    runs = {(c["cmdlet"], c["server"]): c for c in manifest["commands"]}
    assert set(runs) == {
        ("Get-ExchangeServer", None),
        ("Get-OrganizationConfig", None),
        ("Get-SendConnector", None),
        ("Get-AcceptedDomain", None),
        ("Get-TransportConfig", None),
        # -Server gets the host as given when Get-ExchangeServer knows it by no such name/FQDN.
        ("Get-ReceiveConnector", "127.0.0.2"),
        ("Get-ReceiveConnector", "127.0.0.3"),
        ("Get-ExchangeCertificate", "127.0.0.2"),
        ("Get-ExchangeCertificate", "127.0.0.3"),
    }
    assert runs[("Get-OrganizationConfig", None)]["file"] is None  # read for the name only
    assert runs[("Get-SendConnector", None)] == {
        "cmdlet": "Get-SendConnector",
        "server": None,
        "file": "Get-SendConnector.xml",
        "count": 2,
        "errors": [],
    }
    assert runs[("Get-ReceiveConnector", "127.0.0.3")]["file"] == "Get-ReceiveConnector.xml"
    assert runs[("Get-ReceiveConnector", "127.0.0.3")]["count"] == 5
    assert runs[("Get-ExchangeCertificate", "127.0.0.3")]["file"] == "Get-ExchangeCertificate-127.0.0.3.xml"
    assert all(c["errors"] == [] for c in manifest["commands"])
    files = {p.name for p in out.iterdir()} - {"manifest.json"}
    assert files == {c["file"] for c in manifest["commands"] if c["file"]}
    for name in files:
        assert (out / name).read_bytes()[:2] == b"\xff\xfe"  # UTF-16LE + BOM, like Export-Clixml in 5.1
    assert (out / "manifest.json").read_bytes()[:1] == b"{"  # UTF-8 without BOM, like the script

    # Org-wide cmdlets ran once in the whole collection; per-server ones once per server, by name.
    calls = [(name, params.get("Server")) for name, params in org.calls]
    assert calls.count(("Get-SendConnector", None)) == 1
    assert ("Get-ReceiveConnector", "127.0.0.2") in calls and ("Get-ReceiveConnector", "127.0.0.3") in calls
    assert ("Get-ExchangeCertificate", "127.0.0.3") in calls

    # Over plain HTTP, every SOAP body after the NTLM handshake was sealed; the password never
    # crossed the wire, reached the snapshot, or was printed.
    for endpoint in two_servers:
        bodies = [r for r in endpoint.requests if r["body"]]
        assert bodies and all(r["content_type"].startswith("multipart/encrypted") for r in bodies)
        assert b"Envelope" not in endpoint.raw_traffic()
        assert PASSWORD.encode() not in endpoint.raw_traffic()
    for file in out.iterdir():
        data = file.read_bytes()
        assert PASSWORD.encode() not in data and PASSWORD.encode("utf-16-le") not in data
    assert PASSWORD not in capsys.readouterr().err


def test_snapshot_audits_the_same_as_the_live_run(
    two_servers: list[ExchangeEndpoint], tmp_path: Path
) -> None:
    """`exconn collect` then `load()` gives exactly the model that converting the live objects gives."""
    out = tmp_path / "snapshot"
    port = two_servers[0].port
    assert main(["collect", *_ntlm_args("127.0.0.2", "127.0.0.3", port=port), "--out", str(out)]) == 0
    offline = load([out])
    live = to_organization(collect(["127.0.0.2", "127.0.0.3"], _options(port)))

    assert len(live.receive_connectors) == 10 and len(live.send_connectors) == 2
    assert len(live.certificates) == 8 and len(live.servers) == 2
    assert _comparable(live) == _comparable(offline)
    assert {s.form for s in (o.source for o in live.objects())} == {"psrp"}
    # The live objects are really typed (not strings): a receive connector of the real export.
    frontend = next(r for r in live.receive_connectors if r.identity == f"{EX02}\\Default Frontend {EX02}")
    assert frontend.domain_secure_enabled is True


def test_a_failing_cmdlet_is_reported_and_the_others_are_collected(
    two_servers: list[ExchangeEndpoint], org: ExchangeOrg, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org.failures[("Get-ExchangeCertificate", EX02)] = (
        "The RPC server is unavailable. (Exception from HRESULT: 0x800706BA)"
    )
    out = tmp_path / "snapshot"
    port = two_servers[0].port
    assert main(["collect", *_ntlm_args("127.0.0.2", "127.0.0.3", port=port), "--out", str(out)]) == 0

    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    runs = {(c["cmdlet"], c["server"]): c for c in manifest["commands"]}
    failed = runs[("Get-ExchangeCertificate", "127.0.0.3")]
    assert failed["count"] == 0 and failed["file"] is None
    assert failed["errors"] == ["The RPC server is unavailable. (Exception from HRESULT: 0x800706BA)"]
    assert not (out / "Get-ExchangeCertificate-127.0.0.3.xml").exists()
    assert runs[("Get-ExchangeCertificate", "127.0.0.2")]["count"] == 4
    assert runs[("Get-ReceiveConnector", "127.0.0.3")]["count"] == 5
    warnings = [line for line in _stderr_lines(capsys) if "warning" in line]
    assert warnings == [
        "exconn: warning: 127.0.0.3: Get-ExchangeCertificate -Server 127.0.0.3: "
        "The RPC server is unavailable. (Exception from HRESULT: 0x800706BA)"
    ]


def test_unknown_cmdlet_and_scripts_get_exchanges_errors(one_server: ExchangeEndpoint) -> None:
    """The emulated endpoint is no-language like Exchange's; exconn only ever sends cmdlets."""
    with open_session("127.0.0.2", _options(one_server.port)) as session:
        run = session.run("Get-NoSuchThing")
        assert run.objects == [] and "is not recognized as the name of a cmdlet" in run.errors[0]
        assert len(session.run("Get-SendConnector").objects) == 2  # the session is still usable
        servers = session.run("Get-ExchangeServer").objects
        assert _server_name("WIN-CTD3L0RGEN4.exlab.dom", servers) == EX01  # FQDN -> -Server name
        assert _server_name("ex02", servers) == EX02
        assert _server_name("10.1.2.3", servers) == "10.1.2.3"  # unknown: passed on as given

        ps = PowerShell(session.pool)
        ps.add_script("Get-SendConnector | Format-List")
        assert ps.invoke() == [] and ps.had_errors
        assert str(ps.streams.error[0]) == NO_LANGUAGE_MESSAGE
    scripts = [r for r in one_server.requests if b"Format-List" in r["body"]]
    assert scripts == []  # sealed on the wire, like everything else


# --- what an admin meets ---------------------------------------------------------------------------


def test_bad_credentials_give_one_line_without_the_password(
    one_server: ExchangeEndpoint, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "Wr0ng!password-xyz"
    monkeypatch.setenv(PW_ENV, wrong)
    code = main(["collect", *_ntlm_args("127.0.0.2", port=one_server.port), "--out", "unused"])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1
    assert "authentication failed (HTTP 401)" in lines[0]
    assert f"http://127.0.0.2:{one_server.port}/PowerShell" in lines[0]
    assert wrong not in lines[0] and PASSWORD not in lines[0]
    assert not Path("unused").exists()


def test_an_account_without_exchange_rights_is_told_so(
    one_server: ExchangeEndpoint, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PW_ENV, VIEWER_PASSWORD)
    code = main(["collect", *_ntlm_args("127.0.0.2", port=one_server.port, user=VIEWER), "--out", "unused"])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1
    assert "access denied (WSManFault 5)" in lines[0] and "management role" in lines[0]


def test_wrong_path_is_a_404_with_advice(
    one_server: ExchangeEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["collect", *_ntlm_args("127.0.0.2", port=one_server.port), "--path", "wsman", "--out", "x"])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1
    assert "HTTP 404" in lines[0] and "--path" in lines[0]


def test_winrm_endpoint_without_exchange_gives_the_resource_uri_fault(
    ntlm_users: None, org: ExchangeOrg, capsys: pytest.CaptureFixture[str]
) -> None:
    winrm = ExchangeEndpoint(
        org,
        server_name=EX01,
        users=USERS,
        host="127.0.0.2",
        path="/wsman",
        configurations=("Microsoft.PowerShell",),
    ).start()
    try:
        code = main(["collect", *_ntlm_args("127.0.0.2", port=winrm.port), "--path", "wsman", "--out", "x"])
    finally:
        winrm.stop()
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1
    assert "WSManFault 2150858811" in lines[0] and "Microsoft.Exchange" in lines[0]


def test_a_server_that_stops_answering_times_out(
    one_server: ExchangeEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    one_server.stalled.set()
    started = time.monotonic()
    code = main(["collect", *_ntlm_args("127.0.0.2", port=one_server.port), "--timeout", "2", "--out", "x"])
    elapsed = time.monotonic() - started
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1
    assert "stopped answering (no reply within 2s" in lines[0]
    assert elapsed < 15


def test_nothing_listening_is_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens
    code = main(["collect", "--server", "127.0.0.2", "--port", str(port), "--out", "x"])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1 and "connection refused by 127.0.0.2" in lines[0]


@pytest.fixture
def https_server(tmp_path: Path, org: ExchangeOrg) -> Iterator[tuple[ExchangeEndpoint, TestCA]]:
    ca = TestCA(tmp_path / "ca")
    issued = ca.issue("localhost", ["localhost"])
    endpoint = ExchangeEndpoint(
        org,
        server_name=EX01,
        users=USERS,
        admins={ADMIN},
        host="127.0.0.1",
        tls_chain=issued.chain_path,
        tls_key=issued.key_path,
        schemes=("Basic",),
    ).start()
    yield endpoint, ca
    endpoint.stop()


def test_https_with_the_test_ca_validates_and_basic_works(
    https_server: tuple[ExchangeEndpoint, TestCA],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, ca = https_server
    monkeypatch.setenv(PW_ENV, PASSWORD)
    args = ["collect", "--server", "localhost", "--ssl", "--port", str(endpoint.port), "--auth", "basic"]
    args += ["--username", ADMIN, "--password-env", PW_ENV]

    # Without --ca-file the certificate is validated against the system store, and refused.
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and "not trusted" in lines[0] and "--ca-file" in lines[0]
    assert not (tmp_path / "refused").exists()

    out = tmp_path / "snapshot"
    assert main([*args, "--ca-file", str(ca.pem_path), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert {(c["cmdlet"], c["count"]) for c in manifest["commands"]} >= {("Get-ReceiveConnector", 5)}
    assert PASSWORD not in capsys.readouterr().err


def test_audit_names_its_own_server_options(
    https_server: tuple[ExchangeEndpoint, TestCA],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`audit`'s --ca-file is the posture trust store: advice must name --server-ca-file."""
    endpoint, _ca = https_server
    monkeypatch.setenv(PW_ENV, PASSWORD)
    args = ["audit", "--server", "localhost", "--ssl", "--port", str(endpoint.port)]
    args += ["--auth", "basic", "--username", ADMIN, "--password-env", PW_ENV]
    assert main(args) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and "not trusted" in lines[0] and "--server-ca-file" in lines[0]
    assert main([*args, "--server-timeout", "0"]) == 2
    assert "--server-timeout must be" in capsys.readouterr().err
    assert main([*args, "--no-ssl", "--no-cert-validation"]) == 2
    assert "--server-ca-file and --no-cert-validation only apply with --ssl" in capsys.readouterr().err


def test_basic_over_http_is_refused_before_connecting(
    one_server: ExchangeEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["collect", "--server", "127.0.0.2", "--port", str(one_server.port), "--auth", "basic"]
    code = main([*args, "--username", ADMIN, "--password-env", PW_ENV, "--out", "x"])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1 and "Basic authentication over plain HTTP" in lines[0]
    assert one_server.requests == []  # not one packet


def test_kerberos_without_gssapi_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test machine has GSSAPI (the Kerberos tests below need it): its absence is simulated,
    since a missing library has no peer to run."""
    import exconn.sources.psrp_session as session_module

    assert kerberos_available()
    monkeypatch.setattr(session_module, "kerberos_available", lambda: False)
    code = main(["collect", "--server", "ex01.contoso.com", "--auth", "kerberos", "--out", "x"])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1 and "pip install 'exconn[kerberos]'" in lines[0]


def test_the_password_is_not_in_repr_or_errors() -> None:
    options = ConnectionOptions(auth="ntlm", username=ADMIN, password=PASSWORD)
    assert PASSWORD not in repr(options)
    leaked = RuntimeError(f"server said: bad password {PASSWORD}")
    assert PASSWORD not in describe_error(leaked, "ex01", options)


def test_pypsrp_objects_carry_what_the_adapter_needs(one_server: ExchangeEndpoint) -> None:
    """The shape the adapter relies on (issue 5's facts), checked on pypsrp's real output."""
    wsman = WSMan(
        "127.0.0.2",
        port=one_server.port,
        path="PowerShell",
        ssl=False,
        auth="ntlm",
        username=ADMIN,
        password=PASSWORD,
        operation_timeout=5,
        read_timeout=10,
    )
    with RunspacePool(wsman, configuration_name="Microsoft.Exchange") as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-ReceiveConnector").add_parameter("Server", EX01)
        connector = ps.invoke()[0]
    assert connector.adapted_properties["AuthMechanism"] == (
        "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer"
    )  # enums arrive as strings
    assert connector.adapted_properties["Bindings"].property_sets[0].startswith("<LST>")
    assert isinstance(connector.adapted_properties["WhenChangedUTC"], str)  # DateTime stays a string
    assert connector._xml.startswith("<Obj")  # the raw CLIXML the snapshot is written from


def test_audit_server_collects_and_audits_in_one_go(
    one_server: ExchangeEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "audit",
        *_ntlm_args("127.0.0.2", port=one_server.port),
        "--format",
        "json",
        "--fail-on",
        "critical",
    ]
    code = main(args)
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    kinds = [entry["kind"] for entry in report["inventory"]]
    assert kinds.count("ReceiveConnector") == 5 and kinds.count("SendConnector") == 2
    assert not (tmp_path / "snapshot").exists()  # nothing written: the live model is audited directly


# --- one decoder for files and live objects (MS-PSRP §2.2.5, as PowerShell's deserialiser reads it) ----


def _with_default(text: str) -> bytes:
    """Exchange's accepted domain with `Default` written as `text` (PowerShell writes true/false)."""
    obj = _org().accepted_domains[0]
    assert b'<B N="Default">true</B>' in obj
    return obj.replace(b'<B N="Default">true</B>', f'<B N="Default">{text}</B>'.encode())


def test_live_objects_are_read_as_powershell_reads_them(
    one_server: ExchangeEndpoint, org: ExchangeOrg, tmp_path: Path
) -> None:
    """`<B>1</B>` is true to XmlConvert.ToBoolean (and to the file reader); pypsrp reads it false,
    and the live path used to take pypsrp's reading, so a live run and its snapshot disagreed."""
    org.accepted_domains = [_with_default("1")]
    with open_session("127.0.0.2", _options(one_server.port)) as session:
        raw = session.run("Get-AcceptedDomain").objects[0]
    assert raw.adapted_properties["Default"] is False  # pypsrp's own reading: not the one we use

    live = to_organization(collect(["127.0.0.2"], _options(one_server.port)))
    assert [d.default for d in live.accepted_domains] == [True]
    out = tmp_path / "snapshot"
    assert main(["collect", *_ntlm_args("127.0.0.2", port=one_server.port), "--out", str(out)]) == 0
    assert [d.default for d in load([out]).accepted_domains] == [True]


def test_a_live_value_powershell_would_refuse_is_one_line(
    one_server: ExchangeEndpoint, org: ExchangeOrg, capsys: pytest.CaptureFixture[str]
) -> None:
    """pypsrp reads `<B>yes</B>` as false without a word; PowerShell refuses it, and so does exconn,
    naming the cmdlet and the object, the way the file reader names the file and the object."""
    org.accepted_domains = [_with_default("yes")]
    # The refusal comes while loading, before any domain would be observed.
    code = main(["audit", *_ntlm_args("127.0.0.2", port=one_server.port)])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "psrp://127.0.0.2/Get-AcceptedDomain object #0" in lines[0]
    assert "<B> holds 'yes', which is not a valid B" in lines[0]


_OBJ = '<Obj RefId="0"><TN RefId="0"><T>Exconn.Test</T><T>System.Object</T></TN><Props>{}</Props></Obj>'


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ('<B N="V">1</B>', True),  # old live path: False (pypsrp)
        ('<B N="V">True</B>', "not a valid B"),  # XmlConvert is case-sensitive; old live path: True
        ('<TS N="V">PT1H30M</TS>', dt.timedelta(hours=1, minutes=30)),
        ('<TS N="V">01:30:00</TS>', "not a valid TS"),  # old live path: the string "01:30:00"
        ('<Ref N="V" RefId="7" />', "points at no earlier object"),  # old live path: None
        ('<Version N="V">15.2_x0035_</Version>', "15.2_x0035_"),  # written raw; old live path: "15.25"
        ('<URI N="V">http://a/_x0041_</URI>', "http://a/A"),  # an escaped string, like S
        ('<S N="V">_xD83D__xDE00_ x_x005F_x0041_</S>', "\U0001f600 x_x0041_"),
        ('<I32 N="V">x</I32>', "not a valid I32"),
        ('<Nil N="V" />', None),
    ],
)
def test_files_and_live_objects_share_one_decoder(tmp_path: Path, member: str, expected: object) -> None:
    """The same object, read from an Export-Clixml file and as a PSRP message, means one thing."""
    from types import SimpleNamespace

    from exconn.clixml.reader import iter_clixml
    from exconn.errors import InputError
    from exconn.sources.psrp_adapt import to_psobject

    xml = _OBJ.format(member)
    file = tmp_path / "one.xml"
    file.write_text(
        f'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">{xml}</Objs>'
    )
    # pypsrp keeps each received object's CLIXML in `_xml`: that string is all the adapter reads.
    message = SimpleNamespace(_xml=xml)
    readings: list[object] = []
    for read in (lambda: next(iter_clixml(file)), lambda: to_psobject(message, where="psrp://ex01/Get-Test")):
        try:
            obj = read()
        except InputError as error:
            readings.append(("refused", error.reason.split(": ", 1)[-1]))
        else:
            assert not isinstance(obj, str | None) and hasattr(obj, "get")
            readings.append(obj.get("V"))  # type: ignore[union-attr]
    assert readings[0] == readings[1]
    if isinstance(expected, str) and expected.startswith(("not a valid", "points at")):
        assert isinstance(readings[0], tuple) and expected in str(readings[0][1])
    else:
        assert readings[0] == expected


# --- --server HOST[:PORT] ------------------------------------------------------------------------------


def _closed_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])  # closed again when the block ends: nothing listens


def test_each_server_may_carry_its_own_port(
    ntlm_users: None, org: ExchangeOrg, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two endpoints on different ports in one collect; --port (closed here) is only the default."""
    ex01 = ExchangeEndpoint(org, server_name=EX01, users=USERS, admins={ADMIN}, host="127.0.0.2").start()
    ex02 = ExchangeEndpoint(org, server_name=EX02, users=USERS, admins={ADMIN}, host="127.0.0.3").start()
    try:
        assert ex01.port != ex02.port
        out = tmp_path / "snapshot"
        servers = [f"127.0.0.2:{ex01.port}", f"127.0.0.3:{ex02.port}"]
        args = _ntlm_args(*servers, port=_closed_port())
        assert main(["collect", *args, "--out", str(out)]) == 0
    finally:
        ex01.stop()
        ex02.stop()
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["collectedFrom"] == [
        f"http://127.0.0.2:{ex01.port}/PowerShell",
        f"http://127.0.0.3:{ex02.port}/PowerShell",
    ]
    runs = {(c["cmdlet"], c["server"]): c for c in manifest["commands"]}
    # -Server names the host, never the port; each server answered its own per-server cmdlets.
    assert runs[("Get-ReceiveConnector", "127.0.0.2")]["count"] == 5
    assert runs[("Get-ReceiveConnector", "127.0.0.3")]["count"] == 5
    assert all(c["errors"] == [] for c in manifest["commands"])
    assert ex01.requests and ex02.requests
    assert "warning" not in capsys.readouterr().err
    snapshot = load([out])
    assert {c.server for c in snapshot.certificates} == {"127.0.0.2", "127.0.0.3"}  # PSComputerName: the host


def test_an_ipv6_server_in_brackets_with_its_port(ntlm_users: None, org: ExchangeOrg) -> None:
    org.aliases["::1"] = EX01
    endpoint = ExchangeEndpoint(org, server_name=EX01, users=USERS, admins={ADMIN}, host="::1").start()
    try:
        collection = collect([f"[::1]:{endpoint.port}"], _options(_closed_port("127.0.0.1")))
    finally:
        endpoint.stop()
    assert collection.hosts == (f"[::1]:{endpoint.port}",)
    assert collection.endpoints == (f"http://[::1]:{endpoint.port}/PowerShell",)
    assert all(run.errors == [] for run in collection.runs)
    live = to_organization(collection)
    assert len(live.receive_connectors) == 5
    assert {o.source.path for o in live.receive_connectors} == {
        f"psrp://[::1]:{endpoint.port}/Get-ReceiveConnector"
    }


def test_the_same_endpoint_twice_is_one_session(one_server: ExchangeEndpoint) -> None:
    port = one_server.port
    collection = collect(["127.0.0.2", f"127.0.0.2:{port}"], _options(port))
    assert collection.hosts == ("127.0.0.2",)
    assert len([r for r in collection.runs if r.cmdlet == "Get-ReceiveConnector"]) == 1


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("ex01.contoso.com", "ex01.contoso.com", None),
        ("ex01.contoso.com:5985", "ex01.contoso.com", 5985),
        ("[::1]:5985", "::1", 5985),
        ("[::1]", "::1", None),
        ("::1", "::1", None),  # a bare IPv6 address has no port
        ("[fe80::1%eth0]:80", "fe80::1%eth0", 80),
        ("192.0.2.1:443", "192.0.2.1", 443),
    ],
)
def test_server_values(text: str, host: str, port: int | None) -> None:
    from exconn.sources.psrp_session import Server, parse_server

    assert parse_server(text) == Server(host, port)


@pytest.mark.parametrize(
    "text", ["ex01:", "ex01:0", "ex01:65536", "ex01:http", "[::1", "[ex01]:80", "[::1]x", "a:b:c", ":80", " "]
)
def test_bad_server_values_are_one_line_before_any_packet(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["collect", "--server", text, "--auth", "ntlm", "--username", ADMIN, "--out", "x"])
    lines = _stderr_lines(capsys)
    assert code == 2 and len(lines) == 1 and "--server" in lines[0], lines
    assert "Traceback" not in lines[0]


# --- Kerberos, end to end: a real MIT KDC on loopback, the endpoint accepting with its keytab -------

KRB_USER, KRB_PASSWORD = "exadmin", "Kerb3ros!-not-in-any-output"
KRB_PRINCIPAL = f"{KRB_USER}@{REALM}"


def _kerberos_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, org: ExchangeOrg, *, skew_seconds: int = 0
) -> Iterator[tuple[KDC, ExchangeEndpoint]]:
    missing = missing_binaries()
    assert not missing, f"{missing} missing: run scripts/install-test-servers.sh"
    kdc = KDC(tmp_path / "kdc", users={KRB_USER: KRB_PASSWORD}, skew_seconds=skew_seconds).start()
    for name, value in kdc.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(PW_ENV, KRB_PASSWORD)
    # The endpoint listens on 127.0.0.1; the client names it `localhost`, whose HTTP SPN the KDC has.
    endpoint = ExchangeEndpoint(
        org, server_name=EX01, users=USERS, admins={KRB_PRINCIPAL}, host="127.0.0.1"
    ).start()
    org.aliases["localhost"] = EX01
    try:
        yield kdc, endpoint
    finally:
        endpoint.stop()
        kdc.stop()


@pytest.fixture
def kerberos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, org: ExchangeOrg
) -> Iterator[tuple[KDC, ExchangeEndpoint]]:
    yield from _kerberos_world(tmp_path, monkeypatch, org)


def _krb_collect(endpoint: ExchangeEndpoint, out: Path, *extra: str, host: str = "localhost") -> int:
    return main(["collect", "--server", f"{host}:{endpoint.port}", *extra, "--out", str(out)])


def _assert_kerberos_snapshot(endpoint: ExchangeEndpoint, out: Path) -> None:
    assert endpoint.logins and set(endpoint.logins) == {(KRB_PRINCIPAL, "kerberos")}
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert all(c["errors"] == [] for c in manifest["commands"])
    assert {(c["cmdlet"], c["count"]) for c in manifest["commands"]} >= {("Get-ReceiveConnector", 5)}
    # Over plain HTTP, every SOAP body after the login was sealed with the Kerberos session key.
    bodies = [r for r in endpoint.requests if r["body"]]
    assert bodies and all(r["content_type"].startswith("multipart/encrypted") for r in bodies)
    assert b"Envelope" not in endpoint.raw_traffic()
    assert KRB_PASSWORD.encode() not in endpoint.raw_traffic()


def test_kerberos_with_a_password(
    kerberos: tuple[KDC, ExchangeEndpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--auth kerberos --username user@REALM`: the ticket is got from the password (no kinit)."""
    kdc, endpoint = kerberos
    out = tmp_path / "snapshot"
    args = ["--auth", "kerberos", "--username", KRB_PRINCIPAL, "--password-env", PW_ENV]
    assert _krb_collect(endpoint, out, *args) == 0
    _assert_kerberos_snapshot(endpoint, out)
    assert not kdc.ccache.exists()  # the password's ticket stays in memory, not in the user's cache
    assert KRB_PASSWORD not in capsys.readouterr().err


@pytest.mark.parametrize("auth", [None, "kerberos"])
def test_the_ticket_from_the_credential_cache(
    kerberos: tuple[KDC, ExchangeEndpoint], tmp_path: Path, auth: str | None
) -> None:
    """After `kinit`, no user name nor password: the default (negotiate) and --auth kerberos use
    the cached ticket, as on a domain-joined admin workstation."""
    kdc, endpoint = kerberos
    kdc.kinit(KRB_USER, KRB_PASSWORD)
    out = tmp_path / "snapshot"
    assert _krb_collect(endpoint, out, *(["--auth", auth] if auth else [])) == 0
    _assert_kerberos_snapshot(endpoint, out)


def test_kerberos_without_a_ticket_or_password_says_kinit(
    kerberos: tuple[KDC, ExchangeEndpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _kdc, endpoint = kerberos
    assert _krb_collect(endpoint, tmp_path / "x", "--auth", "kerberos") == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and "no ticket in the credential cache" in lines[0] and "kinit" in lines[0]


@pytest.mark.parametrize(
    ("user", "password", "host", "expected"),
    [
        ("nobody@" + REALM, KRB_PASSWORD, "localhost", f"knows no user nobody@{REALM}: check --username"),
        (KRB_PRINCIPAL, "Wr0ng!password-xyz", "localhost", "password of exadmin@EXLAB.TEST was refused"),
        # An address instead of the name the SPN is registered for: the KDC has no HTTP/127.0.0.1.
        (KRB_PRINCIPAL, KRB_PASSWORD, "127.0.0.1", f"no service principal HTTP/127.0.0.1@{REALM}"),
    ],
)
def test_unknown_kerberos_principals_give_one_clear_line(
    kerberos: tuple[KDC, ExchangeEndpoint],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    user: str,
    password: str,
    host: str,
    expected: str,
) -> None:
    _kdc, endpoint = kerberos
    monkeypatch.setenv(PW_ENV, password)
    args = ["--auth", "kerberos", "--username", user, "--password-env", PW_ENV]
    assert _krb_collect(endpoint, tmp_path / "x", *args, host=host) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and expected in lines[0], lines
    assert f"http://{host}:{endpoint.port}/PowerShell: Kerberos: " in lines[0]
    assert password not in lines[0]
    assert not (tmp_path / "x").exists()


def test_clock_skew_gives_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, org: ExchangeOrg, capsys: pytest.CaptureFixture[str]
) -> None:
    """The KDC's clock an hour ahead (libfaketime): Kerberos refuses the login, and says why."""
    world = _kerberos_world(tmp_path, monkeypatch, org, skew_seconds=3600)
    _kdc, endpoint = next(world)
    try:
        args = ["--auth", "kerberos", "--username", KRB_PRINCIPAL, "--password-env", PW_ENV]
        assert _krb_collect(endpoint, tmp_path / "x", *args) == 2
    finally:
        world.close()
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and "clock" in lines[0] and "differ by more than the allowed skew" in lines[0]
    assert endpoint.logins == []
