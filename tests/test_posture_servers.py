"""Domain posture against real servers on loopback: Knot + Unbound, nginx, aiosmtpd (see conftest.py).

Every rule of issue 3 has a domain of its own under `.test`; `conftest.DOMAINS` says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import dns.flags
import dns.resolver
import pytest

from exconn.posture import dns as pdns
from exconn.posture.dane import check_dane_host
from exconn.posture.facts import DomainPosture, MtaStsFacts
from exconn.posture.mtasts import check_mta_sts
from exconn.posture.scan import ScanOptions, scan_domain, scan_domains
from exconn.posture.tlsrpt import check_tlsrpt
from tests.conftest import PostureEnv

pytestmark = pytest.mark.servers


def sts(env: PostureEnv, resolver: dns.resolver.Resolver, domain: str, timeout: float = 5.0) -> MtaStsFacts:
    return check_mta_sts(domain, resolver=resolver, timeout=timeout, ca_file=env.ca_file, port=env.https_port)


def options_for(env: PostureEnv, *, smtp: bool = True, timeout: float = 5.0) -> ScanOptions:
    return ScanOptions(
        timeout=timeout, ca_file=env.ca_file, smtp=smtp, smtp_port=env.smtp_port, https_port=env.https_port
    )


def scan(
    env: PostureEnv, resolver: dns.resolver.Resolver, domain: str, *, smtp: bool = True, timeout: float = 5.0
) -> DomainPosture:
    return scan_domain(domain, resolver=resolver, options=options_for(env, smtp=smtp, timeout=timeout))


def types(errors: object) -> set[str]:
    return {e.type for e in errors}  # type: ignore[attr-defined]


# --- MTA-STS: valid ----------------------------------------------------------------------------


def test_mta_sts_valid_enforce(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    facts = sts(posture_env, posture_resolver, "good.test")
    assert facts.status == "valid", facts.errors
    assert facts.id == "20240101000000"
    assert facts.record == "v=STSv1; id=20240101000000;"
    assert facts.policy is not None
    assert (facts.policy.mode, facts.policy.mx, facts.policy.max_age) == (
        "enforce",
        ("mx.good.test",),
        604800,
    )


def test_mta_sts_testing_and_none(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    testing = sts(posture_env, posture_resolver, "testing.test")
    none = sts(posture_env, posture_resolver, "none.test")
    assert testing.policy is not None and testing.policy.mode == "testing"
    assert testing.policy.mx == ("*.testing.test",)
    assert none.status == "valid" and none.policy is not None
    assert none.policy.mode == "none" and none.policy.mx == ()


def test_mta_sts_txt_strings_concatenated(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    facts = sts(posture_env, posture_resolver, "split.test")
    assert facts.status == "valid"
    assert facts.record == "v=STSv1; id=split1;" and facts.id == "split1"


def test_mta_sts_crlf_policy(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    facts = sts(posture_env, posture_resolver, "crlf.test")
    assert facts.status == "valid" and facts.policy is not None and facts.policy.mx == ("mx.good.test",)


def test_mta_sts_repeated_keys(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    facts = sts(posture_env, posture_resolver, "repeat.test")
    assert facts.status == "valid" and facts.policy is not None
    assert facts.policy.mode == "testing" and facts.policy.max_age == 100
    assert facts.policy.mx == ("a.repeat.test", "b.repeat.test")


# --- MTA-STS: absent, invalid, error -----------------------------------------------------------


def test_mta_sts_absent(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    facts = sts(posture_env, posture_resolver, "nosts.test")
    assert facts.status == "absent" and facts.errors == () and facts.record is None


def test_mta_sts_records_not_beginning_v_stsv1_discarded(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    facts = sts(posture_env, posture_resolver, "notsts.test")
    assert facts.status == "absent"


def test_mta_sts_two_records_no_policy(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    facts = sts(posture_env, posture_resolver, "twotxt.test")
    assert facts.status == "invalid" and facts.policy is None
    assert "2 TXT records" in facts.errors[0].detail


def test_mta_sts_bad_id(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    facts = sts(posture_env, posture_resolver, "badid.test")
    assert facts.status == "invalid" and facts.id is None
    assert types(facts.errors) == {"sts-policy-invalid"}
    assert "bad-id!" in facts.errors[0].detail


@pytest.mark.parametrize(
    ("domain", "error_type", "fragment"),
    [
        ("redirect.test", "sts-policy-fetch-error", "HTTP 301 redirect"),
        ("big.test", "sts-policy-fetch-error", "larger than 65536"),
        ("ctype.test", "sts-policy-invalid", "text/html"),
        ("notfound.test", "sts-policy-fetch-error", "HTTP 404"),
        ("badmode.test", "sts-policy-invalid", "mode 'strict'"),
        ("maxage.test", "sts-policy-invalid", "max_age '31557601'"),
        ("stsnomx.test", "sts-policy-invalid", "no mx"),
        ("badline.test", "sts-policy-invalid", "not 'key: value'"),
        ("webexpired.test", "sts-webpki-invalid", "expired"),
        ("webwrongname.test", "sts-webpki-invalid", "not valid for mta-sts.webwrongname.test"),
        ("webuntrusted.test", "sts-webpki-invalid", "not trusted"),
    ],
)
def test_mta_sts_invalid(
    posture_env: PostureEnv,
    posture_resolver: dns.resolver.Resolver,
    domain: str,
    error_type: str,
    fragment: str,
) -> None:
    facts = sts(posture_env, posture_resolver, domain)
    assert facts.status == "invalid"
    assert facts.policy is None
    assert facts.id is not None  # discovery was fine; the fetch or the policy was not
    assert any(e.type == error_type and fragment in e.detail for e in facts.errors), facts.errors


def test_mta_sts_redirect_target_is_a_valid_policy(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    # the redirect points at good.test's policy: following it would have produced "valid"
    facts = sts(posture_env, posture_resolver, "redirect.test")
    assert "mta-sts.good.test" in facts.errors[0].detail and facts.status == "invalid"


@pytest.mark.parametrize("domain", ["silent.test", "drip.test"])
def test_mta_sts_hostile_policy_host_ends_within_timeout(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver, domain: str
) -> None:
    started = time.monotonic()
    facts = sts(posture_env, posture_resolver, domain, timeout=1.5)
    elapsed = time.monotonic() - started
    assert facts.status == "error"
    assert types(facts.errors) == {"sts-policy-fetch-error"}
    assert elapsed < 1.5 + 1.0, elapsed  # one deadline for the whole fetch (+ DNS on loopback)


def test_mta_sts_policy_host_without_address(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    facts = sts(posture_env, posture_resolver, "nopolicyhost.test")
    assert facts.status == "error"
    assert "cannot resolve" in facts.errors[0].detail


def test_mta_sts_policy_host_resolved_by_our_resolver_only(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    # The system resolver knows nothing of .test: a valid result proves the policy host's address came
    # from the resolver we passed in.
    import socket

    with pytest.raises(OSError):
        socket.getaddrinfo("mta-sts.good.test", 443)
    assert sts(posture_env, posture_resolver, "good.test").status == "valid"


def test_mta_sts_servfail_is_error_not_absent(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    facts = sts(posture_env, posture_resolver, "bogus.test")
    assert facts.status == "error"
    assert types(facts.errors) == {"dnssec-invalid"}


def test_dns_timeout_is_error_not_absent(posture_env: PostureEnv) -> None:
    resolver = pdns.make_resolver(posture_env.silent_resolver, timeout=1.0)
    started = time.monotonic()
    posture = scan(posture_env, resolver, "good.test", timeout=1.0)
    assert time.monotonic() - started < 8
    assert posture.mx.status == "error" and types(posture.mx.errors) == {"dns-timeout"}
    assert posture.mta_sts.status == "error" and types(posture.mta_sts.errors) == {"dns-timeout"}
    assert posture.tlsrpt.status == "error" and types(posture.tlsrpt.errors) == {"dns-timeout"}


# --- TLS-RPT -----------------------------------------------------------------------------------


def test_tlsrpt_valid(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    good = check_tlsrpt("good.test", resolver=posture_resolver)
    two = check_tlsrpt("testing.test", resolver=posture_resolver)
    assert good.status == "valid" and good.rua == ("mailto:tlsrpt@good.test",)
    assert two.status == "valid"
    assert two.rua == ("mailto:a@testing.test", "https://reports.testing.test/tlsrpt")


@pytest.mark.parametrize(
    ("domain", "status", "fragment"),
    [
        ("nosts.test", "absent", None),
        ("tworpt.test", "invalid", "2 TXT records"),
        ("badrua.test", "invalid", "scheme 'ftp'"),
        ("norua.test", "invalid", "no rua"),
        ("bogus.test", "error", "SERVFAIL"),
    ],
)
def test_tlsrpt_not_valid(
    posture_env: PostureEnv,
    posture_resolver: dns.resolver.Resolver,
    domain: str,
    status: str,
    fragment: str | None,
) -> None:
    facts = check_tlsrpt(domain, resolver=posture_resolver)
    assert facts.status == status
    if fragment is None:
        assert facts.errors == ()
    else:
        assert any(fragment in e.detail for e in facts.errors), facts.errors


# --- MX ----------------------------------------------------------------------------------------


def test_mx_null(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    posture = scan(posture_env, posture_resolver, "nullmx.test")
    assert posture.mx.status == "null" and posture.mx.null_mx
    assert posture.mx_hosts == () and posture.dane.status == "not-applicable"
    assert posture.to_json()["mx"] == [{"host": "", "preference": 0}]


def test_mx_implicit_fallback(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    posture = scan(posture_env, posture_resolver, "implicit.test")
    assert posture.mx.status == "implicit"
    assert posture.mx.hosts == ("implicit.test",)
    assert posture.mx_hosts[0].starttls is True and posture.mx_hosts[0].tls_established is True


def test_mx_none_and_nxdomain(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    assert pdns.lookup_mx(posture_resolver, "noaddr.test").status == "none"
    missing = scan(posture_env, posture_resolver, "doesnotexist.test")
    assert missing.mx.status == "nxdomain"
    assert missing.mta_sts.status == "absent"  # NXDOMAIN of _mta-sts is an absence, not an error


def test_mx_servfail_is_error(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    posture = scan(posture_env, posture_resolver, "bogus.test")
    assert posture.mx.status == "error" and posture.mx.records == ()
    assert types(posture.mx.errors) <= {"dns-servfail", "dnssec-invalid"} and posture.mx.errors


def test_mx_ordered_and_lower_case(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    found = pdns.lookup_mx(posture_resolver, "WILD.test.")
    assert found.records == (("mx.wild.test", 10), ("a.b.wild.test", 20), ("wild.test", 30))
    assert found.authenticated


# --- policy match per MX -----------------------------------------------------------------------


def test_policy_match_exactly_one_label(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    posture = scan(posture_env, posture_resolver, "wild.test", smtp=False)
    matches = {h.host: h.policy_match for h in posture.mx_hosts}
    assert matches == {"mx.wild.test": True, "a.b.wild.test": False, "wild.test": False}
    assert all(h.probe == "skipped" for h in posture.mx_hosts)


# --- DANE --------------------------------------------------------------------------------------


def test_dane_valid_3_1_1(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    posture = scan(posture_env, posture_resolver, "good.test")
    assert posture.dane.status == "valid"
    host = posture.dane.hosts[0]
    assert host.matched is True and host.validated_by == posture_env.resolver
    assert [(t.usage, t.selector, t.matching) for t in host.tlsa] == [(3, 1, 1)]
    assert host.tlsa[0].data == posture_env.certs["mx.good.test"].tlsa_data(1, 1)


def test_dane_ta_2_0_1(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    posture = scan(posture_env, posture_resolver, "daneta.test")
    assert posture.dane.status == "valid" and posture.dane.hosts[0].matched is True


def test_dane_tlsa_not_matching(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    posture = scan(posture_env, posture_resolver, "tlsabad.test")
    assert posture.dane.status == "invalid"
    host = posture.dane.hosts[0]
    assert host.matched is False and types(host.errors) == {"tlsa-invalid"}


def test_dane_no_usable_records(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    posture = scan(posture_env, posture_resolver, "unusable.test")
    host = posture.dane.hosts[0]
    assert host.status == "invalid" and host.tlsa[0].usable is False
    assert "no usable TLSA" in host.errors[0].detail


def test_dane_without_smtp_is_unverified(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    posture = scan(posture_env, posture_resolver, "good.test", smtp=False)
    assert posture.dane.status == "unverified" and posture.dane.hosts[0].matched is None


def test_dane_unsigned_zone_no_judgement(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    posture = scan(posture_env, posture_resolver, "dane.insecure.test")
    host = posture.dane.hosts[0]
    assert host.status == "insecure" and host.matched is None and host.validated_by is None
    assert host.tlsa and host.errors == ()  # the records are seen, but not judged without AD
    assert posture.mx.authenticated is False


def test_dane_bogus_is_dnssec_invalid(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    posture = scan(posture_env, posture_resolver, "danebogus.test")
    assert posture.dane.status == "error"
    assert types(posture.dane.hosts[0].errors) == {"dnssec-invalid"}


def test_dane_signed_tlsa_over_an_insecure_address_is_unusable(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    """RFC 7672 §2.2.2: the TLSA is signed and matches, but mx.daneaddr.test's A record comes
    from an unsigned zone: senders never use the TLSA, so DANE is not judged on it alone."""
    posture = scan(posture_env, posture_resolver, "daneaddr.test", smtp=False)
    host = posture.dane.hosts[0]
    assert host.tlsa and host.validated_by == posture_env.resolver  # the TLSA itself validated
    assert host.status == "insecure" and host.matched is None
    assert types(host.errors) == {"dane-address-insecure"}
    assert "RFC 7672 §2.2.2" in host.errors[0].detail and " A " in host.errors[0].detail
    assert posture.dane.status != "unverified"


def test_cname_loop_is_named_a_cname_loop(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    result = pdns.lookup(posture_resolver, "cnameloop.test", "MX")
    assert result.status == "error"
    assert result.error is not None and result.error.type == "dns-cname-loop"
    assert "cnameloop.test -> loop2.cnameloop.test -> cnameloop.test" in result.error.detail
    assert "SERVFAIL" not in result.error.detail
    posture = scan(posture_env, posture_resolver, "cnameloop.test", smtp=False)
    assert posture.mx.status == "error" and types(posture.mx.errors) == {"dns-cname-loop"}


def test_dane_absent_securely(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    host = check_dane_host("mx.nostarttls.test", resolver=posture_resolver)
    assert host.status == "absent" and host.validated_by == posture_env.resolver


def test_dane_needs_a_validating_resolver(posture_env: PostureEnv) -> None:
    # Knot itself is authoritative, not validating: it never sets AD, so nothing is judged.
    knot = pdns.make_resolver(posture_env.authoritative, timeout=3.0)
    host = check_dane_host("mx.good.test", resolver=knot)
    assert host.status == "insecure" and host.tlsa


# --- SMTP per MX -------------------------------------------------------------------------------


def test_mx_hosts_from_probe(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    good = scan(posture_env, posture_resolver, "good.test").mx_hosts[0]
    assert good.probe == "done" and good.policy_match is True
    assert good.starttls and good.tls_version and good.cipher
    assert good.certificate is not None and good.certificate.trusted and good.certificate.name_matches
    assert good.plaintext_mail == "accepted" and good.plaintext_mail_from is not None
    assert good.plaintext_mail_from.code == 250


@pytest.mark.parametrize(
    ("domain", "check"),
    [
        ("nostarttls.test", lambda h: h.starttls is False and "starttls-not-supported" in types(h.errors)),
        (
            "requiretls.test",
            lambda h: h.plaintext_mail == "tls-required" and h.plaintext_mail_from.code == 530,
        ),
        ("expired.test", lambda h: h.certificate.expired and "certificate-expired" in types(h.errors)),
    ],
)
def test_mx_hosts_problems(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver, domain: str, check: object
) -> None:
    host = scan(posture_env, posture_resolver, domain).mx_hosts[0]
    assert host.probe == "done"
    assert check(host)  # type: ignore[operator]


# --- many domains ------------------------------------------------------------------------------


def test_scan_many_one_failure_does_not_stop_the_others(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    domains = ["good.test", "silent.test", "bogus.test", "nosts.test", "good.test", "nullmx.test"]
    seen: list[str] = []
    options = ScanOptions(
        timeout=2.0, ca_file=posture_env.ca_file, smtp=False, https_port=posture_env.https_port
    )
    report = scan_domains(
        domains,
        resolver=posture_resolver,
        options=options,
        concurrency=3,
        progress=lambda d: seen.append(d.domain),
    )
    assert [d.domain for d in report.domains] == [
        "good.test",
        "silent.test",
        "bogus.test",
        "nosts.test",
        "nullmx.test",
    ]
    assert sorted(seen) == sorted(d.domain for d in report.domains)
    statuses = {d.domain: d.mta_sts.status for d in report.domains}
    assert statuses == {
        "good.test": "valid",
        "silent.test": "error",
        "bogus.test": "error",
        "nosts.test": "absent",
        "nullmx.test": "absent",
    }


def test_resolver_is_hermetic(posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver) -> None:
    # Unbound refuses every name outside the test zones: nothing leaves loopback.
    result = pdns.lookup(posture_resolver, "example.com", "A")
    assert result.status == "error" and result.records == ()


_OPENED: list[str] = []
_WATCH: set[str] = set()


def _count_opens(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and args and str(args[0]) in _WATCH:
        _OPENED.append(str(args[0]))


def test_trust_store_is_read_once_per_run(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    """Reading and parsing the store costs ~18 ms: a run loads it once, not once per probe."""
    import sys

    assert posture_env.ca_file is not None
    options = options_for(posture_env)
    sys.addaudithook(_count_opens)  # a real observation of the file system, not a stand-in
    _WATCH.add(posture_env.ca_file)
    try:
        report = scan_domains(
            ["good.test", "testing.test", "none.test"], resolver=posture_resolver, options=options
        )
    finally:
        _WATCH.discard(posture_env.ca_file)
    probed = [h for d in report.domains for h in d.mx_hosts if h.certificate is not None]
    assert len(probed) >= 3
    assert len(_OPENED) == 1, _OPENED


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.peak = self.asked = 0
        self.questions: list[tuple[str, str]] = []


class _CountingResolver(dns.resolver.Resolver):
    """The real resolver (every question still goes to Unbound), holding each answer 50 ms as a
    distant resolver would, and counting how many questions are in flight at once (in `counts`,
    shared by the copies the scan makes of its resolver)."""

    def __init__(self, base: dns.resolver.Resolver) -> None:
        super().__init__(configure=False)
        self.nameservers, self.port = base.nameservers, base.port
        self.lifetime, self.timeout = base.lifetime, base.timeout
        self.use_edns(0, dns.flags.DO, 1232)
        self.flags, self.cache = base.flags, None
        self.counts = _Counts()

    def resolve(self, *args: Any, **kwargs: Any) -> dns.resolver.Answer:
        counts = self.counts
        with counts.lock:
            counts.in_flight += 1
            counts.asked += 1
            counts.questions.append((str(args[0]), str(args[1]) if len(args) > 1 else "A"))
            counts.peak = max(counts.peak, counts.in_flight)
        try:
            time.sleep(0.05)
            return super().resolve(*args, **kwargs)
        finally:
            with counts.lock:
                counts.in_flight -= 1


def test_one_domain_asks_its_independent_questions_at_once(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    """MX, the _mta-sts TXT and the _smtp._tls TXT do not wait on each other, nor TLSA on the
    probe: a domain costs about its longest chain, not the sum of its questions."""
    counting = _CountingResolver(posture_resolver)
    started = time.monotonic()
    posture = scan(posture_env, counting, "good.test", smtp=True)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert posture.mta_sts.status == "valid" and posture.dane.status == "valid", posture
    assert posture.mx_hosts[0].probe == "done"
    counts = counting.counts
    assert counts.asked >= 8  # MX, 2 TXT, A+AAAA twice, TLSA
    assert counts.peak >= 3, counts.peak
    # The longest chain is MX -> A|AAAA -> probe (or TXT -> A|AAAA -> fetch): ~3 answers deep.
    assert elapsed < 0.05 * counts.asked, (elapsed, counts.asked)


def test_a_shared_mx_host_is_asked_and_probed_once_per_scan(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    """Domains hosted together share MX hosts: the scan probes each host once and asks its TLSA
    once, and every domain still gets the host's facts (its own policy match)."""
    assert posture_env.smtp is not None
    domains = ["good.test", "testing.test", "none.test", "nosts.test"]  # all MX mx.good.test
    counting = _CountingResolver(posture_resolver)
    before = len(posture_env.smtp.sessions("mx.good.test"))
    options = options_for(posture_env)
    report = scan_domains(domains, resolver=counting, options=options, concurrency=4, processes=1)
    assert len(posture_env.smtp.sessions("mx.good.test")) - before == 1
    tlsa = [q for q in counting.counts.questions if q[1] == "TLSA"]
    assert tlsa == [("_25._tcp.mx.good.test", "TLSA")], tlsa
    hosts = {d.domain: d.mx_hosts[0] for d in report.domains}
    assert {h.host for h in hosts.values()} == {"mx.good.test"}
    assert all(h.probe == "done" and h.certificate is not None for h in hosts.values()), hosts
    assert hosts["good.test"].policy_match is True and hosts["nosts.test"].policy_match is None
    assert {d.domain: d.dane.status for d in report.domains} == dict.fromkeys(domains, "valid")


def test_a_domain_cancelled_while_asking_leaves_the_answer_to_the_others(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    """The first domain to need a host asks for everyone: its own end (cancelled, failed) must not
    cancel the question the others wait on."""
    from exconn.posture import aio
    from exconn.posture.scan import _PerHost, _Run

    run = _Run.make(posture_resolver, ScanOptions(timeout=5.0, ca_file=posture_env.ca_file), None)

    async def two() -> tuple[bool, str, bool]:
        shared = _PerHost()
        asking = shared.tlsa_of(["mx.good.test"], posture_resolver, run)
        first = asyncio.get_running_loop().create_task(asking)
        await asyncio.sleep(0)  # the first has asked
        first.cancel()
        second = await shared.tlsa_of(["mx.good.test"], posture_resolver, run)
        with contextlib.suppress(asyncio.CancelledError):
            await first
        return first.cancelled(), second[0].status, second[0].authenticated

    cancelled, status, authenticated = aio.run(two())
    assert cancelled and status == "ok" and authenticated


def test_a_shared_host_is_not_judged_by_the_deadline_of_the_domain_that_asked_first() -> None:
    """slow.test spends most of its DNS time on its MX answer before it needs the shared host:
    the host's look-ups keep their own time, so fast.test, scanned next, sees the host as it is."""
    from tests.servers.dns import ScriptedUdp

    records = {
        ("slow.test", "MX"): ["10 mx.shared.test."],
        ("fast.test", "MX"): ["10 mx.shared.test."],
        ("mx.shared.test", "A"): ["127.0.0.1"],
        ("_25._tcp.mx.shared.test", "TLSA"): ["3 1 1 " + "ab" * 32],
    }
    shared = {key: 0.4 for key in records if key[0] != "slow.test" and key[0] != "fast.test"}
    server = ScriptedUdp(records, {("slow.test", "MX"): 1.3, **shared})
    resolver = pdns.make_resolver(server.address, timeout=1.5)
    options = ScanOptions(timeout=1.5, smtp=True, smtp_port=1, https_port=1)  # port 1: refused
    try:
        report = scan_domains(
            ["slow.test", "fast.test"], resolver=resolver, options=options, concurrency=1, processes=1
        )
    finally:
        server.stop()
    slow, fast = report.domains
    for posture in (slow, fast):
        host = posture.mx_hosts[0]
        assert [e.type for e in host.errors] == ["connect-failed"], (posture.domain, host.errors)
    assert fast.dane.status == "insecure", fast.dane
    # slow.test itself had only 0.2 s left for the TLSA answer: its own time is up, nobody else's.
    assert slow.dane.status == "error" and "dns-timeout" in str(slow.dane), slow.dane
    assert server.asked.count(("_25._tcp.mx.shared.test", "TLSA")) == 1


def test_the_per_host_memo_forgets_failures_and_keeps_the_hosts_used_last() -> None:
    from exconn.posture import aio
    from exconn.posture.scan import _Memo

    async def fill() -> tuple[list[str], bool]:
        memo: _Memo[str] = _Memo(lambda found: found != "error", limit=3)
        for n in range(5):
            memo.reserve([f"h{n}"])[0].set_result("ok")
            await asyncio.sleep(0)  # the settle callbacks run
        assert memo.get("h3") is not None  # used: h4 is now the least recently used... after h2
        memo.reserve(["h5"])[0].set_result("error")
        await asyncio.sleep(0)
        kept = [h for h in ("h0", "h1", "h2", "h3", "h4", "h5") if memo.get(h) is not None]
        return kept, len(memo) <= 3

    kept, bounded = aio.run(fill())
    assert kept == ["h3", "h4"] and bounded, kept


@pytest.mark.parametrize("kind", ["silent", "truncating"])
def test_hanging_dns_costs_the_timeout_once_per_domain(posture_env: PostureEnv, kind: str) -> None:
    """A resolver that never answers (or truncates over UDP and hangs over TCP) costs at most
    --timeout for a domain's DNS phase, not once per lookup (MX, _mta-sts, _smtp._tls, ...)."""
    from tests.servers.dns import TruncatingUdp

    server = TruncatingUdp() if kind == "truncating" else None
    address = server.address if server is not None else posture_env.silent_resolver
    try:
        resolver = pdns.make_resolver(address, timeout=1.0)
        started = time.monotonic()
        posture = scan(posture_env, resolver, "good.test", timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        if server is not None:
            server.stop()
    assert posture.mx.status == "error" and types(posture.mx.errors) == {"dns-timeout"}
    assert posture.mta_sts.status == "error" and types(posture.mta_sts.errors) == {"dns-timeout"}
    assert posture.tlsrpt.status == "error" and types(posture.tlsrpt.errors) == {"dns-timeout"}
    assert elapsed < 1.7, elapsed
