"""The SMTP probe against real SMTP servers on loopback (tests/servers/smtp.py); no mocks."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.resolver
import pytest

from exconn.posture import codec
from exconn.posture.facts import MxHostFacts
from exconn.posture.scan import host_facts
from exconn.posture.smtp import (
    MxProbe,
    PlainMailVerdict,
    SmtpReply,
    certificate_name_matches,
    classify_mail_reply,
    probe_mx,
)
from tests.servers.ca import TestCA
from tests.servers.smtp import PROFILES, SmtpServers

pytestmark = pytest.mark.servers

HOSTS = {f"mx.{profile}.test": profile for profile in sorted(PROFILES)}
SAFE_VERBS = {"EHLO", "HELO", "MAIL", "RSET", "STARTTLS", "QUIT"}


def host_of(profile: str) -> str:
    return f"mx.{profile}.test"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("smtp-ca"))


@pytest.fixture(scope="module")
def servers(ca: TestCA) -> Iterator[SmtpServers]:
    with SmtpServers.start(ca, HOSTS, start_octet=100) as running:
        yield running


def probe(servers: SmtpServers, ca: TestCA, profile: str, **kwargs: Any) -> MxProbe:
    host = host_of(profile)
    servers.clear(host)
    kwargs.setdefault("ca_file", str(ca.pem_path))
    kwargs.setdefault("timeout", 5.0)
    return probe_mx(host, port=servers[host].port, resolve=servers.resolve, **kwargs)


def verbs(servers: SmtpServers, profile: str) -> list[tuple[str, bool]]:
    return [(c.verb, c.tls) for c in servers.commands(host_of(profile))]


def test_good_server_full_session(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "good")
    info = servers[host_of("good")]
    assert result.errors == ()
    assert result.address == info.ip
    assert result.banner is not None and result.banner.code == 220
    assert result.starttls_offered is True
    assert "STARTTLS" in result.ehlo_extensions
    assert result.tls_established
    assert result.tls_version == "TLSv1.3"
    assert result.cipher
    assert result.plaintext_mail is PlainMailVerdict.ACCEPTED
    assert result.plaintext_mail_from == SmtpReply(250, "2.1.0", "Sender OK")
    cert = result.certificate
    assert cert is not None and info.cert is not None
    assert (cert.trusted, cert.name_matches, cert.expired) == (True, True, False)
    assert cert.sans == ("mx.good.test",)
    assert cert.subject == "CN=mx.good.test"
    assert cert.issuer == "CN=exconn Test Root CA"
    assert cert.leaf_der == info.cert.der
    assert cert.chain_der == (info.cert.der, ca.der)  # leaf first, as presented
    assert cert.not_after.endswith("Z")
    assert verbs(servers, "good") == [
        ("EHLO", False),
        ("MAIL", False),
        ("RSET", False),
        ("STARTTLS", False),
        ("EHLO", True),
        ("QUIT", True),
    ]
    assert servers.commands(host_of("good"))[1].arg == "FROM:<>"


def test_system_trust_store_does_not_trust_the_test_ca(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "good", ca_file=None)
    assert result.tls_established
    assert result.certificate is not None and not result.certificate.trusted
    assert result.error_types == {"certificate-not-trusted"}


def test_no_starttls(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "no-starttls")
    assert result.starttls_offered is False
    assert not result.tls_established and result.certificate is None
    assert result.error_types == {"starttls-not-supported"}
    assert result.plaintext_mail is PlainMailVerdict.ACCEPTED
    assert [v for v, _ in verbs(servers, "no-starttls")] == ["EHLO", "MAIL", "RSET", "QUIT"]


def test_require_tls_server(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "require-tls")
    assert result.plaintext_mail is PlainMailVerdict.TLS_REQUIRED
    assert result.plaintext_mail_from is not None
    assert (result.plaintext_mail_from.code, result.plaintext_mail_from.enhanced) == (530, "5.7.0")
    assert "STARTTLS" in result.plaintext_mail_from.text
    assert result.tls_established and result.errors == ()


def test_auth_required_endpoint(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "auth-required")
    assert result.plaintext_mail is PlainMailVerdict.AUTH_REQUIRED
    assert result.plaintext_mail_from is not None
    assert result.plaintext_mail_from.enhanced == "5.7.57"
    assert result.tls_established and result.errors == ()


def test_expired_certificate(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "expired")
    assert result.tls_established
    cert = result.certificate
    assert cert is not None
    assert (cert.expired, cert.trusted, cert.name_matches) == (True, True, True)
    assert result.error_types == {"certificate-expired"}


def test_untrusted_certificate(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "untrusted")
    assert result.tls_established
    assert result.certificate is not None and not result.certificate.trusted
    assert result.certificate.name_matches and not result.certificate.expired
    assert result.error_types == {"certificate-not-trusted"}
    assert "not in the trust store" in result.errors[0].detail
    # the same chain is trusted once its own CA is the trust store
    again = probe(servers, ca, "untrusted", ca_file=str(servers.untrusted_ca.pem_path))
    assert again.certificate is not None and again.certificate.trusted
    assert again.errors == ()


def test_critical_san_is_trusted_as_senders_trust_it_with_a_webpki_warning(
    servers: SmtpServers, ca: TestCA, tmp_path: Path
) -> None:
    """Issue 9 §3: one notion of trust on both paths. The MTA-STS fetch (OpenSSL, via ssl) accepts
    a private CA's leaf with a critical subjectAltName; so must the probe, with the Web PKI profile
    deviation as a warning of its own, never `certificate-not-trusted`."""
    import ssl

    result = probe(servers, ca, "critical-san")
    cert = result.certificate
    assert cert is not None
    assert (cert.trusted, cert.name_matches, cert.expired) == (True, True, False)
    assert result.error_types == {"certificate-webpki-deviation"}
    assert "critical" in result.errors[0].detail
    # The same chain through the HTTPS path's own context (OpenSSL) verifies too.
    from exconn.posture.certs import TrustStore

    info = servers[host_of("critical-san")]
    assert info.cert is not None
    context = TrustStore.load(str(ca.pem_path)).https_context()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(info.cert.chain_path, info.cert.key_path)
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = context.wrap_bio(client_in, client_out, server_hostname=host_of("critical-san"))
    peer = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side in (client, peer):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    assert client.getpeercert() is not None  # verified: no SSLCertVerificationError raised


def test_wrong_name_certificate(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "wrong-name")
    cert = result.certificate
    assert cert is not None
    assert (cert.name_matches, cert.trusted, cert.expired) == (False, True, False)
    assert cert.sans == ("other-name.invalid",)
    assert result.error_types == {"certificate-host-mismatch"}


def test_tls12_only(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "tls12-only")
    assert result.tls_version == "TLSv1.2"
    assert result.cipher is not None and "ECDHE" in result.cipher
    assert result.errors == ()


def test_starttls_broken_handshake(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "starttls-broken")
    assert result.starttls_offered is True
    assert not result.tls_established and result.certificate is None
    assert "validation-failure" in result.error_types
    assert "starttls-not-supported" not in result.error_types
    assert result.plaintext_mail is PlainMailVerdict.ACCEPTED


def test_banner_554_is_an_error(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "banner-554")
    assert result.banner is not None and result.banner.code == 554
    assert result.error_types == {"smtp-banner-rejected"}
    assert result.starttls_offered is None
    assert result.plaintext_mail is PlainMailVerdict.UNKNOWN
    assert verbs(servers, "banner-554") == [("QUIT", False)]


def test_helo_fallback_when_ehlo_refused(servers: SmtpServers, ca: TestCA) -> None:
    result = probe(servers, ca, "helo-only")
    assert result.starttls_offered is False and result.ehlo_extensions == ()
    assert result.error_types == {"starttls-not-supported"}
    assert result.plaintext_mail is PlainMailVerdict.ACCEPTED
    assert [v for v, _ in verbs(servers, "helo-only")][:2] == ["EHLO", "HELO"]


def test_silent_server_ends_within_timeout(servers: SmtpServers, ca: TestCA) -> None:
    started = time.monotonic()
    result = probe(servers, ca, "silent", timeout=1.5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 1.0
    assert result.address == servers[host_of("silent")].ip
    assert result.error_types == {"timeout"}
    assert result.banner is None and result.starttls_offered is None


def test_endless_reply_is_cut(servers: SmtpServers, ca: TestCA) -> None:
    started = time.monotonic()
    result = probe(servers, ca, "endless", timeout=10.0)
    assert time.monotonic() - started < 3.0  # cut by the line cap, not by the timeout
    assert result.error_types == {"smtp-reply-too-long"}
    assert result.starttls_offered is None
    assert verbs(servers, "endless") == [("EHLO", False)]


def test_probe_never_sends_rcpt_or_data(servers: SmtpServers, ca: TestCA) -> None:
    for profile in sorted(PROFILES - {"silent"}):
        probe(servers, ca, profile, timeout=3.0)
        sent = servers.commands(host_of(profile))
        assert sent, profile
        assert {c.verb for c in sent} <= SAFE_VERBS, (profile, sent)
        assert all(c.arg == "FROM:<>" for c in sent if c.verb == "MAIL"), profile


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_a_probe_error() -> None:
    result = probe_mx("mx.nowhere.test", addresses=["127.0.0.1"], port=_unused_port(), timeout=3)
    assert result.address is None
    assert result.error_types == {"connect-failed"}
    assert "127.0.0.1" in result.errors[0].detail
    assert result.plaintext_mail is PlainMailVerdict.UNKNOWN


def test_addresses_are_tried_in_order(servers: SmtpServers, ca: TestCA) -> None:
    info = servers[host_of("good")]
    result = probe_mx(
        host_of("good"),
        addresses=["127.0.0.254", info.ip],  # nothing listens on .254
        port=info.port,
        ca_file=str(ca.pem_path),
        resolve=lambda _host: pytest.fail("resolve must not be called when addresses are given"),
        timeout=5,
    )
    assert result.address == info.ip
    assert result.errors == ()


def test_resolver_failures_are_probe_errors() -> None:
    def nxdomain(host: str) -> list[str]:
        raise dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(host)])

    def timeout(host: str) -> list[str]:
        raise dns.resolver.LifetimeTimeout(timeout=1.0, errors={})

    assert probe_mx("mx.gone.test", resolve=nxdomain).error_types == {"dns-nxdomain"}
    assert probe_mx("mx.slow.test", resolve=timeout).error_types == {"dns-timeout"}
    assert probe_mx("mx.empty.test", resolve=lambda _h: []).error_types == {"dns-no-address"}


def test_system_resolver_failure_is_a_probe_error() -> None:
    result = probe_mx("exconn-probe-test.invalid", port=_unused_port(), timeout=3)
    assert result.error_types <= {"dns-nxdomain", "dns-error", "dns-timeout"}
    assert len(result.errors) == 1 and result.address is None


@pytest.mark.parametrize("profile", ["good", "no-starttls", "silent", "wrong-name", "require-tls"])
def test_json_round_trip(servers: SmtpServers, ca: TestCA, profile: str) -> None:
    """A probe has one saved shape, the posture's MxHostFacts: it survives the codec unchanged."""
    result = probe(servers, ca, profile, timeout=1.5)
    facts = host_facts(result, policy_match=None)
    data = json.loads(json.dumps(codec.to_json(facts)))
    assert codec.from_json(MxHostFacts, data, "mx_hosts[0]") == facts
    assert data["plaintext_mail"] == (result.plaintext_mail.value if result.plaintext_mail_from else None)
    if result.certificate is not None:
        assert result.certificate.chain_der  # the chain reaches DANE in the same run...
        assert data["certificate"]["subject"] == result.certificate.subject
        assert "chain_der" not in data["certificate"]  # ...and is never saved


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (SmtpReply(250, "2.1.0", "Sender OK"), PlainMailVerdict.ACCEPTED),
        (SmtpReply(530, "5.7.0", "Must issue a STARTTLS command first"), PlainMailVerdict.TLS_REQUIRED),
        (SmtpReply(451, "5.7.3", "STARTTLS is required to send mail"), PlainMailVerdict.TLS_REQUIRED),
        (SmtpReply(530, None, "Must issue a STARTTLS command first"), PlainMailVerdict.TLS_REQUIRED),
        (SmtpReply(530, "5.7.57", "Client not authenticated to send mail"), PlainMailVerdict.AUTH_REQUIRED),
        (SmtpReply(530, "5.7.0", "Authentication required"), PlainMailVerdict.AUTH_REQUIRED),
        (SmtpReply(550, "5.7.1", "Service unavailable; client host blocked"), PlainMailVerdict.REFUSED),
        (None, PlainMailVerdict.UNKNOWN),
    ],
)
def test_mail_from_classification(reply: SmtpReply | None, verdict: PlainMailVerdict) -> None:
    assert classify_mail_reply(reply) is verdict


@pytest.mark.parametrize(
    ("host", "sans", "cns", "expected"),
    [
        ("mx.example.com", ["mx.example.com"], [], True),
        ("MX.Example.COM.", ["mx.example.com"], [], True),
        ("mx.example.com", ["*.example.com"], [], True),
        ("a.mx.example.com", ["*.example.com"], [], False),  # one label only
        ("example.com", ["*.example.com"], [], False),
        ("mx.example.com", ["m*.example.com"], [], False),  # partial-label wildcards refused
        ("mx.com", ["*.com"], [], False),
        ("mx.example.com", ["other.example.com"], ["mx.example.com"], False),  # CN ignored with SANs
        ("mx.example.com", [], ["mx.example.com"], True),  # CN only without DNS SANs
    ],
)
def test_certificate_name_matching(host: str, sans: list[str], cns: list[str], expected: bool) -> None:
    assert certificate_name_matches(host, sans, cns) is expected


def test_servers_stop_cleanly(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    own_ca = TestCA(tmp_path / "ca")
    with SmtpServers.start(own_ca, {"mx.a.test": "good", "mx.b.test": "silent"}, start_octet=200) as s:
        info = s["mx.a.test"]
        assert probe_mx("mx.a.test", addresses=[info.ip], port=info.port, timeout=3).tls_established
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []
    for ip in (info.ip, s["mx.b.test"].ip):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, info.port), timeout=1).close()


def test_malformed_ehlo_name_is_refused_before_any_connection() -> None:
    with pytest.raises(ValueError, match="ehlo_name"):
        probe_mx("mx.example.test", addresses=["127.0.0.1"], ehlo_name="x\r\nRCPT TO:<a@b>")
