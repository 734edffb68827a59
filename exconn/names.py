"""Domain names: one way to normalise, validate and match them, and the public-suffix look-up.

Mail domains arrive from exports, DNS answers, policy files and the command line in every case and
with or without a trailing dot; everything that compares them goes through `normalize` first.

Two wildcard languages meet in this project, and each has one function here:

- `wildcard_matches`: a leading `*.` stands for exactly one label (MTA-STS mx patterns, RFC 8461
  §4.1; certificate names, RFC 6125 §6.4.3);
- `tls_domain_matches`: Exchange's TlsDomain, where `*.contoso.com` covers contoso.com itself and
  every name below it at any depth.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

# fullmatch only: `$` would also match before a trailing newline, and a name with a newline in a
# label must never pass (it would start a new line in a policy file or a zone snippet).
_LDH_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# Any DNS label a user may ask about, service labels (`_mta-sts`, `_smtp._tls`) included.
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


# --- normalising --------------------------------------------------------------------------------


def normalize(name: str) -> str:
    """The comparable form of a DNS name: lower case, no trailing dot, no surrounding space."""
    return name.strip().lower().rstrip(".")


def to_a_labels(text: str) -> str:
    """A domain as DNS carries it: an IDN (`bücher.example`) in A-labels (`xn--bcher-kva.example`).

    Text that IDNA cannot encode (an empty or over-long label) is returned as it is, for the
    caller's validation to refuse with a reason.
    """
    name = text.strip()
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


# --- validating ---------------------------------------------------------------------------------


def ldh_labels(name: str) -> bool:
    """Every label of `name` (already normalised: it is not normalised again) is a lower-case LDH
    label (RFC 1123) of 1 to 63 characters."""
    return all(_LDH_LABEL.fullmatch(label) for label in name.split("."))


def is_domain_name(text: str) -> bool:
    """A fully qualified host name of LDH labels (RFC 1123), at least two labels, A-labels for IDNs."""
    name = normalize(text)
    return 1 < len(name.split(".")) and len(name) <= 253 and ldh_labels(name)


def is_dns_name(text: str) -> bool:
    """Any DNS name (one label or more; letters, digits, hyphens, underscores), a trailing dot allowed.

    Wider than `is_domain_name`: what `exconn posture` accepts to look up, service names included.
    """
    name = text.rstrip(".")
    if not name or len(name) > 253:
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in name.split("."))


def why_not_dns_name(text: str) -> str:
    """The reason `is_dns_name(text)` is False, for the one-line error."""
    name = text.rstrip(".")
    if len(name) > 253:
        return f"{len(name)} characters; a domain name has at most 253"
    if any(len(label) > 63 for label in name.split(".")):
        return "a label is longer than 63 characters"
    return "letters, digits, hyphens and dots only; no scheme, path, space or @"


# --- matching -----------------------------------------------------------------------------------


def wildcard_matches(pattern: str, host: str) -> bool:
    """Does `pattern` name `host`? A leading `*.` stands for exactly one label (RFC 8461 §4.1 for
    MTA-STS mx patterns, RFC 6125 §6.4.3 for certificate names): `*.example.com` matches
    mx1.example.com, not example.com, not a.b.example.com."""
    pat, name = normalize(pattern), normalize(host)
    if pat.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pat[2:]
    return name == pat


def tls_domain_matches(tls_domain: str, cert_name: str) -> bool:
    """Exchange's TlsDomain semantics: `*.contoso.com` covers contoso.com and any depth below it."""
    td, name = normalize(tls_domain), normalize(cert_name)
    if td.startswith("*."):
        parent = td[2:]
        return name == parent or name.endswith("." + parent)
    return name == td


# --- the public suffix list ---------------------------------------------------------------------


@cache
def _psl() -> PublicSuffixList:
    # Its list ships inside the package (no download, works offline) and loads in ~30 ms: only when
    # asked, and once per process for every caller.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registrable_domain(name: str, *, unknown_tld_is_public: bool = True) -> str | None:
    """The registrable domain (public suffix plus one label) of the normalised `name`; None when
    `name` is a public suffix itself or, with `unknown_tld_is_public=False`, under a TLD the list does
    not know (.local, .test, .corp)."""
    return _psl().privatesuffix(name, accept_unknown=unknown_tld_is_public)


def is_public(domain: str) -> bool:
    """Can the domain exist on the internet, below a public suffix (and not be one itself)?"""
    return (
        is_domain_name(domain)
        and registrable_domain(normalize(domain), unknown_tld_is_public=False) is not None
    )
