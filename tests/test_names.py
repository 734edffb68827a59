"""exconn.names: the one place domain names are normalised, validated, matched and looked up in the
public suffix list."""

import pytest

from exconn import names
from exconn.names import (
    is_dns_name,
    is_domain_name,
    is_public,
    ldh_labels,
    normalize,
    registrable_domain,
    tls_domain_matches,
    why_not_dns_name,
    wildcard_matches,
)


def test_normalize() -> None:
    assert normalize("  Mail.Contoso.COM. ") == "mail.contoso.com"
    assert normalize("contoso.com") == "contoso.com"


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "a.b.example.com", False),  # exactly one label (RFC 8461 §4.1)
        ("*.example.com", "example.com", False),
        ("mx.example.com", "MX.Example.com.", True),
        ("mx.example.com", "mx2.example.com", False),
    ],
)
def test_one_label_wildcard(pattern: str, host: str, expected: bool) -> None:
    assert wildcard_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("tls_domain", "name", "expected"),
    [
        ("*.contoso.com", "contoso.com", True),
        ("*.contoso.com", "a.b.c.contoso.com", True),  # any depth, unlike MTA-STS
        ("*.contoso.com", "evilcontoso.com", False),
        ("mail.contoso.com", "mail.contoso.com", True),
        ("mail.contoso.com", "x.mail.contoso.com", False),
    ],
)
def test_exchange_tls_domain(tls_domain: str, name: str, expected: bool) -> None:
    assert tls_domain_matches(tls_domain, name) is expected


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.example.com", ".example.com", False),  # the wildcard needs a label, not an empty one
        ("*.Example.COM.", "MX1.example.com", True),
        ("*.example.com", "x.example.com.evil", False),
    ],
)
def test_one_label_wildcard_edges(pattern: str, host: str, expected: bool) -> None:
    assert wildcard_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("text", "domain", "dns"),
    [
        ("contoso.com", True, True),
        ("Contoso.COM.", True, True),
        ("xn--bcher-kva.example", True, True),
        ("localhost", False, True),  # one label: a DNS name, not a mail domain
        ("_mta-sts.contoso.com", False, True),  # service labels: posture may look them up
        ("-bad.contoso.com", False, False),
        ("bad-.contoso.com", False, False),
        ("a..contoso.com", False, False),
        ("a b.contoso.com", False, False),
        ("mx1\n.contoso.com", False, False),  # a newline must never pass (policy-line injection)
        ("a" * 64 + ".com", False, False),
        (("a" * 63 + ".") * 4 + "com", False, False),  # over 253 characters
        ("", False, False),
    ],
)
def test_validators_keep_their_languages(text: str, domain: bool, dns: bool) -> None:
    assert is_domain_name(text) is domain
    assert is_dns_name(text) is dns


def test_why_not_dns_name_names_the_reason() -> None:
    assert "at most 253" in why_not_dns_name(("a" * 63 + ".") * 4 + "com")
    assert "longer than 63" in why_not_dns_name("a" * 64 + ".com")
    assert "no scheme" in why_not_dns_name("https://contoso.com/")


def test_ldh_labels_takes_a_normalised_name() -> None:
    assert ldh_labels("mail.contoso.com")
    assert not ldh_labels("Mail.contoso.com")  # not normalised again: upper case is refused
    assert not ldh_labels(" mail.contoso.com")
    assert not ldh_labels("mail\n.contoso.com")


def test_public_suffix_lookup() -> None:
    assert registrable_domain("mx1.mail.partner.co.uk") == "partner.co.uk"
    assert registrable_domain("co.uk") is None  # a public suffix itself
    # An unknown TLD counts as public by default (the emulation's view) and not when asked.
    assert registrable_domain("mail.corp.local") == "corp.local"
    assert registrable_domain("mail.corp.local", unknown_tld_is_public=False) is None
    assert is_public("Contoso.COM.") and not is_public("fabrikam.local") and not is_public("co.uk")
    # One list for every caller, loaded once per process.
    assert names._psl() is names._psl()
