"""Which domains `exconn audit` observes.

Ours: the Authoritative accepted domains of the export that can exist on the internet, or exactly the
domains of `--domains FILE` (each must be an accepted domain: the inbound rules judge accepted
domains). Partners: the domains of the SMTP address spaces of scoped send connectors, plus
`--partners FILE`; without that file, the top recipient domains of the message tracking logs
(`--top-partners N`, 50 by default) given to the audit. Files hold one domain a
line; `#` starts a comment.
"""

from __future__ import annotations

from collections.abc import Sequence

from exconn.errors import InputError
from exconn.model import UNKNOWN, Organization
from exconn.names import is_domain_name, is_public, normalize, to_a_labels
from exconn.output import DOMAIN_LIST_LIMIT, decode_text, read_small_file
from exconn.scope import (
    EXO_ROUTING_SUFFIX,
    accepted_names,
    is_exo_routing,
    our_observable_domains,
    smart_host_domain,
)


def read_domain_file(path: str) -> list[str]:
    """Domains from a file, one a line, `#` comments; an invalid line is an error naming file and line."""
    try:
        text = decode_text(read_small_file(path, DOMAIN_LIST_LIMIT))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 or UTF-16 text (one domain a line expected)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    domains: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = to_a_labels(line.split("#", 1)[0])
        if not entry:
            continue
        if not is_domain_name(entry):
            shown = entry if entry.isprintable() else repr(entry)
            raise InputError(path, f"line {number}: not a domain name: {shown[:80]}")
        domains.append(normalize(entry))
    return list(dict.fromkeys(domains))


def our_domains(org: Organization, domains_file: str | None) -> list[str]:
    if domains_file is None:
        return [d for d in our_observable_domains(org) if is_public(d)]
    chosen = read_domain_file(domains_file)
    accepted = accepted_names(org)
    for domain in chosen:
        if domain not in accepted:
            raise InputError(
                domains_file, f"{domain} is not an accepted domain of the export (inbound checks need one)"
            )
    return chosen


def partner_domains(
    org: Organization,
    partners_file: str | None,
    *,
    ours: list[str],
    observed: Sequence[str] = (),
) -> list[str]:
    """Partners to observe: the connectors' domains, then `observed` (the tracking logs' top
    recipient domains, Microsoft's routing domains left out), then the file's."""
    found: list[str] = []
    for c in org.send_connectors:
        if c.address_spaces is not UNKNOWN:
            found += [s.domain for s in c.address_spaces if s.domain and not is_exo_routing(c, s.domain)]
    for o in org.outbound_connectors:
        if o.recipient_domains is not UNKNOWN:
            found += [d.strip().lower().removeprefix("*.").rstrip(".") for d in o.recipient_domains]
        if o.use_mx_record is False and o.smart_hosts is not UNKNOWN:
            # Exchange Online validates MTA-STS against the smart host's domain, not the recipient's.
            found += [d for h in o.smart_hosts if (d := smart_host_domain(h))]
    found += [normalize(d) for d in observed if not normalize(d).endswith(EXO_ROUTING_SUFFIX)]
    excluded = set(ours) | accepted_names(org)
    partners = [d for d in found if d not in excluded and is_public(d)]
    if partners_file is not None:
        # Listed on purpose: observed even under a suffix the public list does not know.
        partners += [d for d in read_domain_file(partners_file) if d not in excluded]
    return list(dict.fromkeys(partners))
