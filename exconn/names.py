"""Domain names: one way to normalise, validate and match them, and the public-suffix look-up.

Mail domains arrive from exports, DNS answers, policy files and the command line in every case and
with or without a trailing dot; everything that compares them goes through `normalize` first.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


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


def is_domain_name(text: str) -> bool:
    """A fully qualified host name of LDH labels (RFC 1123), at least two labels, A-labels for IDNs."""
    name = normalize(text)
    labels = name.split(".")
    return 1 < len(labels) and len(name) <= 253 and all(_LDH_LABEL.match(label) for label in labels)


@cache
def _psl() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList  # its list loads in ~30 ms: only when asked

    # accept_unknown=False: a TLD the list does not know (.local, .test, .corp) is not public.
    return PublicSuffixList(accept_unknown=False)


def is_public(domain: str) -> bool:
    """Can the domain exist on the internet, below a public suffix (and not be one itself)?"""
    return is_domain_name(domain) and _psl().privatesuffix(normalize(domain)) is not None
