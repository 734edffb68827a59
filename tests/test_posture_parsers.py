"""The posture parsers and matchers as pure functions (RFC 8461, 8460, 7672 rules, one case each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exconn.posture.dane import match_chain, to_tlsa_record
from exconn.posture.dns import ResolverAddressError, make_resolver, parse_resolver_address
from exconn.posture.errors import ProbeError
from exconn.posture.facts import (
    DaneFacts,
    DaneHost,
    DaneStatus,
    DomainPosture,
    FactsFormatError,
    MtaStsFacts,
    MtaStsPolicy,
    MxFacts,
    MxHostFacts,
    MxRecord,
    MxStatus,
    PlainMailVerdict,
    PostureReport,
    ProbeStatus,
    TlsaRecord,
    TlsRptFacts,
    summarise_dane,
)
from exconn.posture.mtasts import mx_pattern_matches, parse_policy, parse_sts_record
from exconn.posture.tlsrpt import check_uri, parse_tlsrpt_record
from tests.servers.ca import TestCA

# --- MTA-STS TXT (RFC 8461 §3.1) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected_id"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1; id=a1 ; ext=value;", "a1"),
        ("v=STSv1;\tid=" + "A" * 32 + ";", "A" * 32),
    ],
)
def test_sts_record_valid(record: str, expected_id: str) -> None:
    sts_id, errors = parse_sts_record(record)
    assert errors == []
    assert sts_id == expected_id


@pytest.mark.parametrize(
    "record",
    [
        "v=STSv1; id=bad-id!;",  # not alphanumeric
        "v=STSv1; id=" + "a" * 33 + ";",  # longer than 32
        "v=STSv1; id=;",  # empty
        "v=STSv1;",  # no id
        "v=STSv1; ext=1;",  # no id, only an extension
        "v=STSv1; id=abc;; ",  # empty field between delimiters
        "v=STSv1 id=abc;",  # no delimiter after the version
    ],
)
def test_sts_record_invalid(record: str) -> None:
    sts_id, errors = parse_sts_record(record)
    assert sts_id is None
    assert errors and all(e.type == "sts-policy-invalid" for e in errors)


# --- MTA-STS policy (RFC 8461 §3.2) ------------------------------------------------------------

GOOD = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n"


def test_policy_valid_lf_and_crlf_are_the_same() -> None:
    lf, lf_errors = parse_policy(GOOD)
    crlf, crlf_errors = parse_policy(GOOD.replace("\n", "\r\n"))
    assert lf_errors == crlf_errors == []
    assert lf == crlf == MtaStsPolicy("STSv1", "enforce", ("mail.example.com", "*.example.net"), 604800)


def test_policy_without_final_newline_and_with_trailing_space() -> None:
    policy, errors = parse_policy("version: STSv1  \nmode:enforce\nmx: a.example\nmax_age: 0")
    assert errors == []
    assert policy is not None and policy.mode == "enforce" and policy.max_age == 0


def test_policy_first_repeated_key_wins_but_every_mx_counts() -> None:
    text = (
        "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 5\nmx: b.example\nmax_age: 9\n"
    )
    policy, errors = parse_policy(text)
    assert errors == []
    assert policy == MtaStsPolicy("STSv1", "testing", ("a.example", "b.example"), 5)


def test_policy_unknown_keys_ignored() -> None:
    policy, errors = parse_policy(GOOD + "future_thing: some value here\n")
    assert errors == [] and policy is not None


def test_policy_mode_none_needs_no_mx() -> None:
    policy, errors = parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n")
    assert errors == [] and policy is not None and policy.mx == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode 'strict'"),
        ("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "mode 'Enforce'"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
        ("version: STSv1\nmode: testing\nmax_age: 1\n", "no mx"),
        ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", "no version"),
        ("version: STSv1\nmx: a.example\nmax_age: 1\n", "no mode"),
        ("version: STSv1\nmode: enforce\nmx: a.example\n", "no max_age"),
        ("version: STSv1\nmode: enforce\nmx a.example\nmax_age: 1\n", "not 'key: value'"),
        ("version: STSv1\n\nmode: enforce\nmx: a.example\nmax_age: 1\n", "not 'key: value'"),
        ("version: STSv1\rmode: enforce\rmx: a.example\rmax_age: 1\r", "version"),  # bare CR
        ("version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", "mx 'a..example'"),
        ("version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n", "mx 'a.*.example'"),
        ("", "empty"),
    ],
)
def test_policy_invalid(text: str, fragment: str) -> None:
    policy, errors = parse_policy(text)
    assert policy is None
    assert any(fragment in e.detail for e in errors), errors
    assert all(e.type == "sts-policy-invalid" for e in errors)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "MX1.Example.COM.", True),
        ("*.example.com", "a.b.example.com", False),  # exactly one label (RFC 8461 §4.1)
        ("*.example.com", "example.com", False),
        ("mx.example.com", "mx.example.com", True),
        ("mx.example.com", "mx2.example.com", False),
    ],
)
def test_mx_pattern(pattern: str, host: str, expected: bool) -> None:
    assert mx_pattern_matches(pattern, host) is expected


# --- TLS-RPT (RFC 8460 §3) ---------------------------------------------------------------------


def test_tlsrpt_record_with_two_uris() -> None:
    rua, errors = parse_tlsrpt_record("v=TLSRPTv1;rua=mailto:a@example.com, https://r.example.com/x")
    assert errors == []
    assert rua == ("mailto:a@example.com", "https://r.example.com/x")


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ("v=TLSRPTv1; rua=ftp://r.example.com/", "scheme 'ftp'"),
        ("v=TLSRPTv1; rua=http://r.example.com/", "scheme 'http'"),
        ("v=TLSRPTv1; rua=mailto:nobody", "mailto:<address>"),
        ("v=TLSRPTv1; rua=https:///path", "no host"),
        ("v=TLSRPTv1;", "no rua"),
        ("v=TLSRPTv1; ruf=mailto:a@example.com", "no rua"),
        ("v=TLSRPTv1 rua=mailto:a@example.com", "expected ';'"),
    ],
)
def test_tlsrpt_record_invalid(record: str, fragment: str) -> None:
    _rua, errors = parse_tlsrpt_record(record)
    assert any(fragment in e.detail for e in errors), errors


def test_tlsrpt_uri_with_encoded_comma_is_fine() -> None:
    assert check_uri("mailto:a%2Cb@example.com") is None
    assert check_uri("mailto:a b@example.com") is not None


# --- resolver addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
        ("2001:db8::1", ("2001:db8::1", 53)),
    ],
)
def test_resolver_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver_address(text) == expected


@pytest.mark.parametrize("text", ["dns.example", "192.0.2.1:0", "192.0.2.1:70000", "192.0.2.1:x", "[::1"])
def test_resolver_address_bad(text: str) -> None:
    with pytest.raises(ResolverAddressError):
        parse_resolver_address(text)


def test_resolver_sends_to_that_server_only_with_do_and_ad() -> None:
    resolver = make_resolver("127.0.0.9:5300", timeout=2.0)
    assert [str(n) for n in resolver.nameservers] == ["127.0.0.9"]
    assert resolver.port == 5300 and resolver.lifetime == 2.0
    assert resolver.ednsflags & 0x8000  # DO
    assert resolver.flags is not None and resolver.flags & 0x0020  # AD


# --- DANE matching (RFC 7672 §3.1) -------------------------------------------------------------


@pytest.fixture(scope="module")
def dane_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("dane-ca"))


def test_dane_ee_matches_leaf_only(dane_ca: TestCA) -> None:
    leaf = dane_ca.issue("mx", ["mx.example.test"])
    other = dane_ca.issue("other", ["other.example.test"])
    chain = [leaf.der, dane_ca.der]
    for selector in (0, 1):
        for matching in (0, 1, 2):
            record = to_tlsa_record(3, selector, matching, bytes.fromhex(leaf.tlsa_data(selector, matching)))
            assert record.usable
            assert match_chain([record], chain, name_matches=True)[0]
            assert not match_chain([record], [other.der, dane_ca.der], name_matches=True)[0]


def test_dane_ta_matches_issuer_and_needs_the_name(dane_ca: TestCA) -> None:
    leaf = dane_ca.issue("mx2", ["mx2.example.test"])
    import hashlib

    record = to_tlsa_record(2, 0, 1, hashlib.sha256(dane_ca.der).digest())
    assert match_chain([record], [leaf.der, dane_ca.der], name_matches=True)[0]
    assert not match_chain([record], [leaf.der, dane_ca.der], name_matches=False)[0]
    assert not match_chain([record], [leaf.der], name_matches=True)[0]  # the TA was not presented


@pytest.mark.parametrize(
    ("usage", "selector", "matching", "length", "usable"),
    [(3, 1, 1, 32, True), (2, 0, 2, 64, True), (1, 1, 1, 32, False), (0, 0, 1, 32, False),
     (3, 2, 1, 32, False), (3, 1, 3, 32, False), (3, 1, 1, 31, False)],
)  # fmt: skip
def test_tlsa_usable(usage: int, selector: int, matching: int, length: int, usable: bool) -> None:
    assert to_tlsa_record(usage, selector, matching, b"\x01" * length).usable is usable


def test_dane_summary() -> None:
    def host(status: str) -> DaneHost:
        return DaneHost(host="h", status=status, name="_25._tcp.h")

    assert summarise_dane([]) == "not-applicable"
    assert summarise_dane([host("valid"), host("valid")]) == "valid"
    assert summarise_dane([host("valid"), host("invalid")]) == "invalid"
    assert summarise_dane([host("error"), host("invalid")]) == "error"
    assert summarise_dane([host("insecure")]) == "insecure"
    assert summarise_dane([host("valid"), host("absent")]) == "partial"


# --- facts and the saved format ----------------------------------------------------------------


def _sample() -> PostureReport:
    posture = DomainPosture(
        domain="example.test",
        observed_at="2025-01-01T00:00:00Z",
        mx=MxFacts("ok", (MxRecord("mx.example.test", 10),), True),
        mta_sts=MtaStsFacts(
            "valid", "v=STSv1; id=1;", "1", MtaStsPolicy("STSv1", "enforce", ("mx.example.test",), 60)
        ),
        tlsrpt=TlsRptFacts("invalid", "v=TLSRPTv1;", (), (ProbeError("tlsrpt-invalid", "no rua"),)),
        dane=DaneFacts(
            "valid",
            (
                DaneHost(
                    "mx.example.test",
                    "valid",
                    "_25._tcp.mx.example.test",
                    "127.0.0.1:53",
                    (TlsaRecord(3, 1, 1, "ab" * 32, True),),
                    True,
                ),
            ),
        ),  # fmt: skip
        mx_hosts=(MxHostFacts("mx.example.test", True, "skipped"),),
    )
    return PostureReport(observed_at="2025-01-01T00:00:00Z", domains=(posture,))


def test_report_json_round_trip() -> None:
    report = _sample()
    data = json.loads(json.dumps(report.to_json()))
    assert data["format"] == "exconn-posture" and data["version"] == 1
    assert data["domains"][0]["mx"] == [{"host": "mx.example.test", "preference": 10}]
    assert PostureReport.from_json(data) == report


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(format="other"), "not an exconn-posture"),
        (lambda d: d.update(version=2), "unsupported"),
        (lambda d: d["domains"][0].update(mta_sts=[]), "expected an object"),
        (lambda d: d["domains"][0]["mta_sts"].update(status=3), "status"),
    ],
)
def test_report_rejects_foreign_or_broken_files(mutate, fragment: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(_sample().to_json()))
    mutate(data)
    with pytest.raises(FactsFormatError, match=fragment):
        PostureReport.from_json(data)


SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "posture" / "fabrikam.json"


def test_saved_sample_reads_back_byte_for_byte_with_typed_statuses() -> None:
    raw = SAMPLE.read_text(encoding="utf-8")
    report = PostureReport.from_json(json.loads(raw))
    assert json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n" == raw
    domain = report.domains[0]
    assert isinstance(domain.mx.status, MxStatus) and domain.mx.status == "ok"
    assert isinstance(domain.dane.hosts[0].status, DaneStatus)
    host = domain.mx_hosts[0]
    assert host.probe is ProbeStatus.DONE and isinstance(host.plaintext_mail, PlainMailVerdict)


def test_plain_words_become_members() -> None:
    assert MxFacts("null").status is MxStatus.NULL and MxFacts("null").null_mx
    assert MxHostFacts("h", None, "error").probe is ProbeStatus.ERROR
    with pytest.raises(ValueError):
        MtaStsFacts("maybe")


def test_unknown_status_in_a_file_is_one_clear_error() -> None:
    data = json.loads(json.dumps(_sample().to_json()))
    data["domains"][0]["tlsrpt"]["status"] = "bogus"
    with pytest.raises(FactsFormatError, match=r"domains\[0\]\.tlsrpt\.status: unknown value 'bogus'"):
        PostureReport.from_json(data)
