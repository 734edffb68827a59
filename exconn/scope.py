"""Which mail domains an organisation calls its own, and which are Microsoft's routing, read from the
model alone. Both the audit's choice of domains to observe and the rules read these.
"""

from __future__ import annotations

from exconn.model import UNKNOWN, AcceptedDomainType, Organization, SendConnector
from exconn.names import normalize

# Exchange Online's inbound MX host names (the classic one and the DNSSEC-signed one since 2024).
EXO_MX_SUFFIXES = (".mail.protection.outlook.com", ".mx.microsoft")
# The tenant's routing domain (`<tenant>.mail.onmicrosoft.com`) that hybrid connectors send to.
EXO_ROUTING_SUFFIX = ".mail.onmicrosoft.com"


def accepted_names(org: Organization) -> set[str]:
    return {normalize(d.domain_name) for d in org.accepted_domains if not d.domain_name.startswith("*")}


def is_ours(org: Organization, domain: str) -> bool:
    return normalize(domain) in accepted_names(org)


def our_observable_domains(org: Organization) -> list[str]:
    """Accepted domains that receive mail from the internet at our MX: the Authoritative ones.

    A domain whose type was not exported is kept: observing it costs little, skipping it could hide
    a problem.
    """
    names = [
        normalize(d.domain_name)
        for d in org.accepted_domains
        if not d.domain_name.startswith("*")
        and (d.domain_type is UNKNOWN or d.domain_type is AcceptedDomainType.AUTHORITATIVE)
    ]
    return list(dict.fromkeys(names))


def is_exo_routing(c: SendConnector, domain: str) -> bool:
    """The hybrid connector to Exchange Online (or its routing domain): Microsoft's, not a partner."""
    return c.cloud_services_mail_enabled is True or domain.endswith(EXO_ROUTING_SUFFIX)


def is_exo_mx(host: str) -> bool:
    return normalize(host).endswith(EXO_MX_SUFFIXES)


def smart_host_domain(host: str) -> str | None:
    """The domain whose MTA-STS policy Exchange Online checks for a smart host: the host's parent
    (`relay.partner.com` -> `partner.com`); None for an IP literal."""
    h = normalize(host)
    if not h or h.startswith("[") or ":" in h or not any(ch.isalpha() for ch in h):
        return None
    labels = h.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else h
