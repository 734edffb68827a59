"""Small judgements shared by the connector rules: reachability, TlsDomain, fixes (certificates:
`exconn.rules.certs`).

Everything here is a pure function of the model; rules decide what a result means.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exconn.fix import UNREAD, Fix, ParamChange, SetCommand, same_value
from exconn.model import (
    UNKNOWN,
    AuthMechanism,
    Maybe,
    ModelObject,
    Organization,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    TransportConfig,
    flag_names,
)
from exconn.names import ldh_labels, normalize
from exconn.pwsh import PsValue
from exconn.rules.base import CannotJudge, Severity, Target
from exconn.rules.emulation import Fidelity, emulate

__all__ = [
    "EXO_TLS_DOMAIN",
    "Reachability",
    "Scope",
    "flags_value",
    "is_anonymous_smtp",
    "is_exo_host",
    "is_lab_domain",
    "receive_reach",
    "send_reach",
    "set_fix",
    "smart_host_tls_domain",
    "tls_domain_problem",
    "transport_config",
]

# What the Hybrid Configuration Wizard puts in TlsDomain of "Outbound to Office 365".
EXO_TLS_DOMAIN = "mail.protection.outlook.com"
_EXO_SUFFIX = "." + EXO_TLS_DOMAIN

# Names that never resolve on the internet (RFC 6761, RFC 8375, ICANN's .internal) or that admins
# use for test set-ups: a connector scoped only to these cannot carry internet mail.
_LAB_TLDS = frozenset(
    {"local", "lan", "internal", "intranet", "corp", "home", "localdomain", "localhost", "test",
     "example", "invalid", "private"}
)  # fmt: skip
_LAB_LABELS = frozenset({"lab", "test"})
_PUBLIC_PORTS = frozenset({25, 587})


class Scope(enum.IntEnum):
    LAB = 0
    SCOPED = 1
    INTERNET = 2


@dataclass(frozen=True, slots=True)
class Reachability:
    """Who a connector talks to. Unknown inputs are assumed the worst and listed in `assumed`."""

    scope: Scope
    enabled: bool
    assumed: tuple[str, ...] = ()

    def severity(self, default: Severity, *, scoped_steps: int = 1) -> Severity:
        """The rule's default applies to an enabled internet connector; less reach, less severity."""
        steps = {Scope.INTERNET: 0, Scope.SCOPED: scoped_steps, Scope.LAB: 2}[self.scope]
        return default.lowered(steps + (0 if self.enabled else 2))

    def describe(self) -> str:
        what = {
            Scope.INTERNET: "reachable from/to the internet",
            Scope.SCOPED: "scoped to specific domains or addresses",
            Scope.LAB: "scoped to lab or internal-only names",
        }[self.scope]
        text = ("enabled" if self.enabled else "disabled") + " connector " + what
        if self.assumed:
            text += " (" + ", ".join(self.assumed) + " not exported: assumed the worst)"
        return text


def is_lab_domain(domain: str) -> bool:
    """Single-label names, reserved/private TLDs, and `lab.`/`test.` sub-trees."""
    labels = domain.lower().strip().rstrip(".").lstrip("*.").split(".")
    if len(labels) < 2:
        return True
    if labels[-1] in _LAB_TLDS or ".".join(labels[-2:]) == "home.arpa":
        return True
    return any(label in _LAB_LABELS for label in labels[:-2])


def send_reach(c: SendConnector) -> Reachability:
    assumed: list[str] = []
    enabled = True
    if c.enabled is UNKNOWN:
        assumed.append("Enabled")
    else:
        enabled = c.enabled
    if c.address_spaces is UNKNOWN:
        assumed.append("AddressSpaces")
        scope = Scope.INTERNET
    elif any(s.is_internet for s in c.address_spaces):
        scope = Scope.INTERNET
    else:
        domains = [s.domain for s in c.address_spaces if s.domain]
        scope = Scope.LAB if domains and all(is_lab_domain(d) for d in domains) else Scope.SCOPED
    return Reachability(scope, enabled, tuple(assumed))


def receive_reach(c: ReceiveConnector) -> Reachability:
    """INTERNET: listens on a public SMTP port (25/587) to every remote address."""
    assumed: list[str] = []
    enabled = True
    if c.enabled is UNKNOWN:
        assumed.append("Enabled")
    else:
        enabled = c.enabled
    if c.bindings is UNKNOWN:
        assumed.append("Bindings")
        public_port = True
    else:
        public_port = any(b.port in _PUBLIC_PORTS for b in c.bindings)
    if c.remote_ip_ranges is UNKNOWN:
        assumed.append("RemoteIPRanges")
        everyone = True
    else:
        everyone = any(r.is_everything for r in c.remote_ip_ranges)
    scope = Scope.INTERNET if public_port and everyone else Scope.SCOPED
    return Reachability(scope, enabled, tuple(assumed))


def is_anonymous_smtp(c: ReceiveConnector) -> bool | None:
    """Accepts anonymous mail on :25 (the MX-facing shape); None when the export lacks the inputs."""
    if c.permission_groups is UNKNOWN or c.bindings is UNKNOWN:
        return None
    return bool(c.permission_groups & PermissionGroups.ANONYMOUS_USERS) and any(
        b.port == 25 for b in c.bindings
    )


def flags_value(value: AuthMechanism | PermissionGroups) -> PsValue:
    """A flags enum as Set-ReceiveConnector takes it: `@('Tls','BasicAuth')`, or `'None'`."""
    names = flag_names(value)
    return names if names else "None"


# --- TlsDomain -----------------------------------------------------------------------------------


def tls_domain_problem(value: str) -> str | None:
    """Why a TlsDomain cannot name a certificate, or None when it is usable."""
    text = normalize(value)
    if text == "*":
        return "is a bare `*`, which names no domain"
    body = text[2:] if text.startswith("*.") else text
    if not body or not ldh_labels(body):
        return f"is not a domain name ({value!r})"
    return None


def is_exo_host(host: str) -> bool:
    return normalize(host).endswith(_EXO_SUFFIX)


def smart_host_tls_domain(smart_hosts: Sequence[str]) -> str | None:
    """The TlsDomain that names every smart host, or None (IP literals, hosts across domains)."""
    hosts = [normalize(h) for h in smart_hosts if h.strip()]
    if not hosts or any(h.startswith("[") or not re.search(r"[a-z]", h) for h in hosts):
        return None
    if all(is_exo_host(h) for h in hosts):
        return EXO_TLS_DOMAIN
    found = emulate(hosts)
    return found.tls_domain if found.fidelity is not Fidelity.NO_NAME_CHECK else None


def transport_config(org: Organization) -> TransportConfig | None:
    return org.transport_configs[0] if org.transport_configs else None


# --- fixes ---------------------------------------------------------------------------------------


def set_fix(
    cmdlet: str,
    identity: str,
    changes: Iterable[tuple[str, PsValue, Maybe[PsValue]]],
    *,
    singleton: bool = False,
) -> SetCommand | None:
    """A Set-* command for the parameters whose value changes; None when nothing changes. An
    observed value the export lacks is read by the script at apply time (and recorded for the
    rollback) rather than dropping the fix."""
    params: list[ParamChange] = []
    for name, new, observed in changes:
        if observed is UNKNOWN:
            params.append(ParamChange(name, new, UNREAD))
            continue
        if isinstance(observed, list | tuple) and not observed:
            observed = None  # Exchange reads an empty multi-valued property back as $null
        if not same_value(new, observed):
            params.append(ParamChange(name, new, observed))
    if not params:
        return None
    return SetCommand(cmdlet, identity, tuple(params), singleton=singleton)


def missing(obj: ModelObject, *names: str) -> CannotJudge:
    """A rule needs properties the export does not carry: it says so instead of passing."""
    return CannotJudge(Target.of(obj), "not in the export: " + ", ".join(names))


def fixes(*candidates: Fix | None) -> tuple[Fix, ...]:
    """The fixes that could be built (set_fix returns None when nothing would change)."""
    return tuple(f for f in candidates if f is not None)
