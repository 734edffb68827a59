"""Session fixtures: the loopback world the posture tests observe.

`posture_env` starts, once per session and only when a test asks for it:
  - a TestCA (and the SMTP layer's second, untrusted CA),
  - SMTP servers (aiosmtpd, tests/servers/smtp.py) for the MX hosts below, one 127.0.0.x each,
  - Knot with the zones below (`test.` signed, `insecure.test.` unsigned and delegated without DS,
    `bogus.test.` signed but with a DS in `test.` that matches none of its keys), TLSA records computed
    from the SMTP servers' certificates,
  - Unbound validating in front of Knot with the `test.` KSK read back from Knot as trust anchor,
  - nginx with one `mta-sts.<domain>` vhost per policy domain, plus a silent TCP server and a TLS
    server that drips bytes forever,
  - a UDP/TCP port that never answers DNS (a resolver that times out).

A missing server binary (or aiosmtpd) fails the session when the environment variable CI is set and
skips the tests otherwise. Each domain below is under `.test` and exists for one rule; `DOMAINS`
says which.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers.ca import IssuedCert, TestCA

if TYPE_CHECKING:
    from tests.servers.smtp import SmtpServers

NGINX_IP = "127.0.80.1"
SILENT_HTTPS_IP = "127.0.80.2"
DRIP_HTTPS_IP = "127.0.80.3"
SMTP_START_OCTET = 150

GOOD_POLICY = b"version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 604800\n"

# What each domain is for (the tests name them; keep this the one list).
DOMAINS: dict[str, str] = {
    "good.test": "everything valid: MTA-STS enforce, TLS-RPT mailto, DANE 3 1 1 matching, STARTTLS good",
    "testing.test": "MTA-STS mode testing with *. pattern; TLS-RPT with mailto and https URIs",
    "none.test": "MTA-STS mode none without mx (valid)",
    "split.test": "MTA-STS TXT record split in two strings (concatenated: valid)",
    "crlf.test": "policy with CRLF line ends (valid)",
    "repeat.test": "repeated keys: first mode/max_age win, every mx kept; unknown key ignored",
    "badmode.test": "policy mode 'strict' (invalid)",
    "maxage.test": "policy max_age 31557601 (invalid)",
    "stsnomx.test": "policy mode enforce without mx (invalid)",
    "badline.test": "policy line without ':' (invalid)",
    "nosts.test": "no _mta-sts TXT, no TLS-RPT, no TLSA (absent everywhere, signed)",
    "twotxt.test": "two v=STSv1 TXT records (invalid: no policy)",
    "badid.test": "TXT id with a hyphen and '!' (invalid)",
    "notsts.test": "TXT records not beginning 'v=STSv1;' only (absent)",
    "redirect.test": "policy host answers 301 (invalid, not followed)",
    "big.test": "70 KB policy (invalid, over 64 KiB)",
    "ctype.test": "policy served as text/html (invalid)",
    "notfound.test": "policy host answers 404 (invalid)",
    "webexpired.test": "policy host certificate expired (sts-webpki-invalid)",
    "webwrongname.test": "policy host certificate for another name (sts-webpki-invalid)",
    "webuntrusted.test": "policy host certificate from an untrusted CA (sts-webpki-invalid)",
    "silent.test": "policy host accepts TCP and never answers (error within the timeout)",
    "drip.test": "policy host drips one byte every 0.2 s forever (error within the timeout)",
    "nopolicyhost.test": "TXT present, mta-sts.<domain> has no address (error)",
    "tworpt.test": "two v=TLSRPTv1 records (invalid)",
    "badrua.test": "TLS-RPT rua=ftp:// (invalid)",
    "norua.test": "TLS-RPT record without rua (invalid)",
    "nullmx.test": "null MX (RFC 7505)",
    "implicit.test": "no MX, an A record: implicit MX (RFC 5321 §5.1), SMTP good",
    "noaddr.test": "no MX, no address: no mail host",
    "doesnotexist.test": "NXDOMAIN",
    "wild.test": "policy *.wild.test vs MX mx.wild.test (match), a.b.wild.test and wild.test (no match)",
    "tlsabad.test": "DANE 3 1 1 that matches nothing (tlsa-invalid)",
    "daneta.test": "DANE-TA 2 0 1 of the test CA (valid)",
    "unusable.test": "only PKIX-EE 1 1 1 TLSA (no usable record: tlsa-invalid)",
    "dane.insecure.test": "TLSA in an unsigned zone: no AD, no DANE judgement",
    "danebogus.test": "MX in bogus.test (DS mismatch): dnssec-invalid",
    "bogus.test": "a bogus zone apex: every lookup SERVFAILs (error, never absent)",
    "nostarttls.test": "MX without STARTTLS",
    "requiretls.test": "MX that requires TLS for MAIL FROM",
    "expired.test": "MX with an expired certificate",
    "cnameloop.test": "cnameloop.test and loop2.cnameloop.test are CNAMEs of each other (dns-cname-loop)",
    "daneaddr.test": "signed TLSA at _25._tcp.mx.daneaddr.test, but the MX host's address is a CNAME into the "
    "unsigned insecure.test (RFC 7672 §2.2.2: DANE unusable, dane-address-insecure)",
}

SMTP_PROFILES = {
    "mx.good.test": "good",
    "mx.tlsabad.test": "good",
    "mx.daneta.test": "good",
    "mx.unusable.test": "good",
    "mx.dane.insecure.test": "good",
    "implicit.test": "good",
    "mx.nostarttls.test": "no-starttls",
    "mx.requiretls.test": "require-tls",
    "mx.expired.test": "expired",
}


def _require(binaries: list[str]) -> None:
    missing = [
        b for b in binaries if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None
    ]
    if not missing:
        return
    message = f"test servers not installed: {', '.join(missing)} (run scripts/install-test-servers.sh)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class PostureEnv:
    resolver: str  # "127.0.53.2:PORT": Unbound, validating
    authoritative: str  # Knot
    silent_resolver: str  # never answers
    ca_file: str  # the test CA (trusted by passing it as --ca-file)
    https_port: int
    smtp_port: int
    certs: dict[str, IssuedCert] = field(default_factory=dict)
    directory: Path = Path()
    smtp: SmtpServers | None = None  # what each MX host was told

    def cli_args(self, *, smtp: bool = False, timeout: float = 5.0) -> list[str]:
        args = [
            "--resolver",
            self.resolver,
            "--ca-file",
            self.ca_file,
            "--https-port",
            str(self.https_port),
            "--smtp-port",
            str(self.smtp_port),
            "--timeout",
            str(timeout),
        ]
        return args if smtp else [*args, "--no-smtp"]


def _txt(owner: str, *strings: str) -> str:
    quoted = " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in strings)
    return f"{owner} TXT {quoted}"


def build_world(
    ca: TestCA, untrusted: TestCA, smtp_ips: dict[str, str], smtp_certs: dict[str, IssuedCert | None]
) -> tuple[list[object], list[object], dict[str, IssuedCert]]:
    """Zones (for tests/servers/dns.py) and vhosts (for tests/servers/https.py) of the domains above."""
    from tests.servers.dns import Zone
    from tests.servers.https import Vhost

    certs: dict[str, IssuedCert] = {}
    vhosts: list[object] = []
    test: list[str] = []

    def policy_domain(
        label: str,
        body: bytes | None,
        *,
        txt: tuple[str, ...] = ("v=STSv1; id=20240101000000;",),
        content_type: str = "text/plain",
        redirect: str | None = None,
        cert: IssuedCert | None = None,
        address: str = NGINX_IP,
        mx: bool = True,
    ) -> None:
        host = f"mta-sts.{label}.test"
        certs[host] = cert or ca.issue(f"web-{label}", [host])
        if mx:
            test.append(f"{label} MX 10 mx.good.test.")
        for record in txt:
            test.append(_txt(f"_mta-sts.{label}", record))
        test.append(f"mta-sts.{label} A {address}")
        if address == NGINX_IP:
            vhosts.append(Vhost(host, certs[host], body=body, content_type=content_type, redirect=redirect))

    # MTA-STS
    policy_domain("good", GOOD_POLICY)
    test.append(_txt("_smtp._tls.good", "v=TLSRPTv1; rua=mailto:tlsrpt@good.test"))
    policy_domain("testing", b"version: STSv1\nmode: testing\nmx: *.testing.test\nmax_age: 86400\n")
    test.append(
        _txt(
            "_smtp._tls.testing", "v=TLSRPTv1;rua=mailto:a@testing.test, https://reports.testing.test/tlsrpt"
        )
    )
    policy_domain("none", b"version: STSv1\nmode: none\nmax_age: 86400\n")
    policy_domain("split", GOOD_POLICY, txt=())
    test.append(_txt("_mta-sts.split", "v=STSv1; ", "id=split1;"))
    policy_domain("crlf", GOOD_POLICY.replace(b"\n", b"\r\n"))
    policy_domain(
        "repeat",
        b"version: STSv1\nmode: testing\nmode: enforce\nmx: a.repeat.test\nmax_age: 100\n"
        b"mx: b.repeat.test\nmax_age: 999999999\nfuture_key: anything at all\n",
    )
    policy_domain("badmode", b"version: STSv1\nmode: strict\nmx: mx.good.test\nmax_age: 86400\n")
    policy_domain("maxage", b"version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 31557601\n")
    policy_domain("stsnomx", b"version: STSv1\nmode: enforce\nmax_age: 86400\n")
    policy_domain("badline", b"version: STSv1\nmode: enforce\nmx mx.good.test\nmax_age: 86400\n")
    test.append("nosts MX 10 mx.good.test.")
    policy_domain("twotxt", GOOD_POLICY, txt=("v=STSv1; id=one;", "v=STSv1; id=two;"))
    policy_domain("badid", GOOD_POLICY, txt=("v=STSv1; id=bad-id!;",))
    test.append("notsts MX 10 mx.good.test.")
    test.append(_txt("_mta-sts.notsts", "v=spf1 -all"))
    test.append(_txt("_mta-sts.notsts", "v=STSv1 ; id=spaced;"))
    test.append(_txt("_mta-sts.notsts", "xv=STSv1; id=1;"))
    policy_domain("redirect", None, redirect="https://mta-sts.good.test/.well-known/mta-sts.txt")
    big = GOOD_POLICY + b"".join(b"ext%05d: %s\n" % (i, b"x" * 60) for i in range(1000))
    assert len(big) > 70_000
    policy_domain("big", big)
    policy_domain("ctype", GOOD_POLICY, content_type="text/html")
    policy_domain("notfound", None)
    policy_domain(
        "webexpired", GOOD_POLICY, cert=ca.issue("web-expired", ["mta-sts.webexpired.test"], expired=True)
    )
    policy_domain("webwrongname", GOOD_POLICY, cert=ca.issue("web-wrongname", ["mta-sts.other.test"]))
    policy_domain(
        "webuntrusted", GOOD_POLICY, cert=untrusted.issue("web-untrusted", ["mta-sts.webuntrusted.test"])
    )
    policy_domain("silent", GOOD_POLICY, address=SILENT_HTTPS_IP)
    policy_domain("drip", GOOD_POLICY, address=DRIP_HTTPS_IP)
    test.append("nopolicyhost MX 10 mx.good.test.")
    test.append(_txt("_mta-sts.nopolicyhost", "v=STSv1; id=1;"))
    # TLS-RPT
    test.append("tworpt MX 10 mx.good.test.")
    test.append(_txt("_smtp._tls.tworpt", "v=TLSRPTv1; rua=mailto:a@tworpt.test"))
    test.append(_txt("_smtp._tls.tworpt", "v=TLSRPTv1; rua=mailto:b@tworpt.test"))
    test.append("badrua MX 10 mx.good.test.")
    test.append(_txt("_smtp._tls.badrua", "v=TLSRPTv1; rua=ftp://reports.badrua.test/"))
    test.append("norua MX 10 mx.good.test.")
    test.append(_txt("_smtp._tls.norua", "v=TLSRPTv1; ruf=mailto:x@norua.test"))
    # MX
    test.append("nullmx MX 0 .")
    test.append(f"implicit A {smtp_ips['implicit.test']}")
    test.append(_txt("noaddr", "no mail here"))
    test.append("wild MX 10 mx.wild")
    test.append("wild MX 20 a.b.wild")
    test.append("wild MX 30 wild")
    test.append(f"wild A {NGINX_IP}")
    policy_domain(
        "wild", b"version: STSv1\nmode: enforce\nmx: *.wild.test\nmax_age: 86400\n", txt=(), mx=False
    )
    test.append(_txt("_mta-sts.wild", "v=STSv1; id=wild1;"))

    # SMTP hosts and DANE
    for host, ip in smtp_ips.items():
        if host.endswith(".insecure.test") or host == "implicit.test":
            continue
        label = host.removesuffix(".test")
        domain_label = label.removeprefix("mx.")
        if f"{domain_label} MX 10 {host}." not in test:
            test.append(f"{domain_label} MX 10 {host}.")
        test.append(f"{label} A {ip}")

    def leaf(host: str) -> IssuedCert:
        issued = smtp_certs[host]
        assert issued is not None
        return issued

    test.append(f"_25._tcp.mx.good TLSA 3 1 1 {leaf('mx.good.test').tlsa_data(1, 1)}")
    test.append(f"_25._tcp.mx.tlsabad TLSA 3 1 1 {'ab' * 32}")
    ca_sha256 = __import__("hashlib").sha256(ca.der).hexdigest()
    test.append(f"_25._tcp.mx.daneta TLSA 2 0 1 {ca_sha256}")
    test.append(f"_25._tcp.mx.unusable TLSA 1 1 1 {leaf('mx.unusable.test').tlsa_data(1, 1)}")
    test.append("danebogus MX 10 mx.bogus.test.")
    test.append("daneaddr MX 10 mx.daneaddr.test.")
    test.append("mx.daneaddr CNAME mx.dane.insecure.test.")
    test.append(f"_25._tcp.mx.daneaddr TLSA 3 1 1 {leaf('mx.dane.insecure.test').tlsa_data(1, 1)}")
    test.append("cnameloop CNAME loop2.cnameloop.test.")
    test.append("loop2.cnameloop CNAME cnameloop.test.")
    # delegations
    test.append("insecure NS ns.test.")
    test.append("bogus NS ns.test.")
    test.append(f"bogus DS 12345 13 2 {'00' * 32}")

    insecure = [
        "dane MX 10 mx.dane",
        f"mx.dane A {smtp_ips['mx.dane.insecure.test']}",
        f"_25._tcp.mx.dane TLSA 3 1 1 {leaf('mx.dane.insecure.test').tlsa_data(1, 1)}",
    ]
    bogus = [
        "@ MX 10 mx",
        f"mx A {smtp_ips['mx.good.test']}",
        f"_25._tcp.mx TLSA 3 1 1 {leaf('mx.good.test').tlsa_data(1, 1)}",
        _txt("_mta-sts", "v=STSv1; id=1;"),
    ]
    zones: list[object] = [
        Zone("test.", test, signed=True),
        Zone("insecure.test.", insecure, signed=False),
        Zone("bogus.test.", bogus, signed=True),
    ]
    return zones, vhosts, certs


@pytest.fixture(scope="session")
def posture_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostureEnv]:
    _require(["knotd", "unbound", "nginx"])
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        _require(["aiosmtpd (python package)"])

    from tests.servers.dns import DnsServers, SilentUdp, Zone, free_port
    from tests.servers.https import DripTls, Nginx, SilentTcp, Vhost
    from tests.servers.smtp import SmtpServers

    base = tmp_path_factory.mktemp("posture")
    ca = TestCA(base / "ca")
    untrusted = TestCA(base / "untrusted-ca", name="exconn Untrusted Web CA")
    stack: list[object] = []
    try:
        smtp = SmtpServers.start(ca, SMTP_PROFILES, start_octet=SMTP_START_OCTET)
        stack.append(smtp)
        smtp_ips = {host: smtp[host].ip for host in smtp}
        smtp_certs = {host: smtp[host].cert for host in smtp}
        smtp_port = smtp[next(iter(smtp))].port
        zones, vhosts, certs = build_world(ca, untrusted, smtp_ips, smtp_certs)
        dns_servers = DnsServers.start(base / "dns", [z for z in zones if isinstance(z, Zone)])
        stack.append(dns_servers)
        https_port = free_port(NGINX_IP, udp=False)
        nginx = Nginx.start(
            base / "nginx", [v for v in vhosts if isinstance(v, Vhost)], ip=NGINX_IP, port=https_port
        )
        stack.append(nginx)
        stack.append(SilentTcp(SILENT_HTTPS_IP, https_port))
        stack.append(DripTls(DRIP_HTTPS_IP, https_port, certs["mta-sts.drip.test"]))
        silent_dns = SilentUdp()
        stack.append(silent_dns)
        yield PostureEnv(
            resolver=dns_servers.resolver,
            authoritative=dns_servers.authoritative,
            silent_resolver=silent_dns.address,
            ca_file=str(ca.pem_path),
            https_port=https_port,
            smtp_port=smtp_port,
            certs={**certs, **{h: c for h, c in smtp_certs.items() if c is not None}},
            directory=base,
            smtp=smtp,
        )
    finally:
        for server in reversed(stack):
            stop = getattr(server, "stop", None)
            if stop is not None:
                stop()


@pytest.fixture(scope="session")
def posture_resolver(posture_env: PostureEnv):  # type: ignore[no-untyped-def]
    from exconn.posture.dns import make_resolver

    return make_resolver(posture_env.resolver, timeout=5.0)
