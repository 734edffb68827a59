"""What a fix is: the PowerShell commands and the DNS publication a finding proposes.

Plain frozen values, rendered to PowerShell only through `exconn.pwsh`. Rules build them; the
remediation writer, the renderers and the DNS writer read them. Nothing here knows a rule.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from exconn.pwsh import Expression, PsValue, command, hashtable


def _ps(value: PsValue | ListEdit) -> PsValue:
    if isinstance(value, ListEdit):
        parts: list[tuple[str, PsValue]] = []
        if value.add:
            parts.append(("Add", list(value.add)))
        if value.remove:
            parts.append(("Remove", list(value.remove)))
        return hashtable(parts)
    return value


def same_value(a: PsValue, b: PsValue) -> bool:
    """Equal as Exchange compares them: case-insensitive, lists as sets, `$null` = empty list."""

    def norm(v: PsValue) -> object:
        if isinstance(v, enum.Enum):
            return str(v.value).lower()
        if isinstance(v, str):
            return v.lower()
        if v is None or isinstance(v, bool | int):
            return v
        return sorted(str(x).lower() for x in v) or None

    return norm(a) == norm(b)


class _Unread(enum.Enum):
    UNREAD = "unread"


# The export did not carry the value: remediation.ps1 reads it at apply time and records it for
# rollback.ps1, instead of the fix being dropped.
UNREAD = _Unread.UNREAD

# Multi-valued properties: the fix adds to (or removes from) the list Exchange holds at apply time
# (`@{Add=...}`), so entries added since the export are kept instead of replaced.
MULTI_VALUED = frozenset({"tlsreceivedomainsecurelist", "tlssenddomainsecurelist"})


@dataclass(frozen=True, slots=True)
class ParamChange:
    """One parameter of a Set-* command: the value we set, and the value observed before
    (`UNREAD` when the export lacks it)."""

    name: str
    new: PsValue
    observed: PsValue | _Unread

    @property
    def list_delta(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """(added, removed) for a multi-valued property, or None for a plain value."""
        if self.name.lower() not in MULTI_VALUED or self.observed is UNREAD:
            return None
        before, after = _items(self.observed), _items(self.new)
        lower_before, lower_after = {b.lower() for b in before}, {a.lower() for a in after}
        added = tuple(a for a in after if a.lower() not in lower_before)
        removed = tuple(b for b in before if b.lower() not in lower_after)
        return added, removed

    def value(self, *, rollback: bool = False) -> PsValue | ListEdit:
        """What the command passes: the value, or `@{Add=...}` / `@{Remove=...}` for a list."""
        delta = self.list_delta
        if delta is None:
            if rollback:
                assert self.observed is not UNREAD, "an unread value is restored from the recorded state"
                return self.observed
            return self.new
        added, removed = delta
        if rollback:
            added, removed = removed, added
        return ListEdit(added, removed)


def _items(value: PsValue | _Unread) -> list[str]:
    if value is None or value is UNREAD:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, enum.Enum | bool | int):
        return [str(value.value if isinstance(value, enum.Enum) else value)]
    return [str(v) for v in value]


@dataclass(frozen=True, slots=True)
class Requirement:
    """A value another parameter must hold for the command to pass Exchange's write-time validation;
    the script checks it at apply time, because the export may be older than the object."""

    name: str
    value: PsValue
    why: str


def requirements(cmd: SetCommand) -> tuple[Requirement, ...]:
    """The parameters this command does not set but depends on (docs: EXCHANGE.md, write-time
    validation): e.g. TlsAuthLevel needs RequireTLS $true, RequireTLS needs IgnoreSTARTTLS $false."""
    new = {c.name.lower(): c.new for c in cmd.changes}
    out: list[Requirement] = []

    def need(name: str, value: PsValue, why: str) -> None:
        if name.lower() not in new:
            out.append(Requirement(name, value, why))

    if cmd.cmdlet == "Set-SendConnector":
        if new.get("tlsauthlevel") is not None:
            need("RequireTLS", True, "TlsAuthLevel needs RequireTLS")
            need("DomainSecureEnabled", False, "TlsAuthLevel is not allowed with DomainSecureEnabled")
        if new.get("requiretls") is True:
            need("IgnoreSTARTTLS", False, "RequireTLS and IgnoreSTARTTLS cannot both be true")
        if new.get("tlsdomain") is not None:
            need("TlsAuthLevel", "DomainValidation", "TlsDomain needs TlsAuthLevel DomainValidation")
    elif cmd.cmdlet == "Set-ReceiveConnector":
        if new.get("requiretls") is False:
            need(
                "ExtendedProtectionPolicy",
                "None",
                "ExtendedProtectionPolicy other than None needs RequireTLS",
            )
    elif cmd.cmdlet == "Set-OutboundConnector":
        if new.get("tlsdomain") is not None:
            need("TlsSettings", "DomainValidation", "TlsDomain needs TlsSettings DomainValidation")
    elif cmd.cmdlet == "Set-InboundConnector":
        if new.get("tlssendercertificatename") is not None:
            need("RequireTls", True, "TlsSenderCertificateName needs RequireTls")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ListEdit:
    """`@{Add='a','b'; Remove='c'}`: a change to a multi-valued property, not a replacement."""

    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CertificateLookup:
    """A TlsCertificateName the export cannot give (certificates not exported): remediation.ps1 looks
    it up at apply time on each server (`Get-ExchangeCertificate -Server`): a certificate naming
    `domain`, enabled for SMTP, valid now and CA-issued. It refuses to go on unless exactly one
    issuer+subject matches on every server, and passes it as `LOOKED_UP_CERTIFICATE`."""

    servers: tuple[str, ...]
    domain: str


# The variable the script writer fills with the looked-up `<I>issuer<S>subject`: PowerShell source
# of the writer's own, never data.
LOOKED_UP_CERTIFICATE = Expression("$exconnCertificateName")


@dataclass(frozen=True, slots=True)
class SetCommand:
    """`Set-<Kind> -Identity <id> -P new ...`; rolled back by setting the observed values."""

    cmdlet: str
    identity: str
    changes: tuple[ParamChange, ...]
    # Organisation-wide objects (Set-TransportConfig) take no -Identity on-premises.
    singleton: bool = False
    # A value found at apply time (LOOKED_UP_CERTIFICATE among the changes).
    lookup: CertificateLookup | None = None

    def _head(self) -> list[tuple[str, PsValue]]:
        return [] if self.singleton else [("Identity", self.identity)]

    def render(self) -> str:
        return command(self.cmdlet, [*self._head(), *((c.name, _ps(c.value())) for c in self.changes)])

    def render_rollback(self, restored: Mapping[str, str] | None = None) -> str:
        """The command that undoes this one; `restored` gives, for each parameter the export lacked,
        the PowerShell expression holding the value recorded at apply time."""
        params: list[tuple[str, PsValue]] = list(self._head())
        for c in self.changes:
            if c.observed is UNREAD:
                if restored is None or c.name not in restored:
                    raise ValueError(
                        f"{c.name} was not exported: its old value comes from the recorded state"
                    )
                params.append((c.name, Expression(restored[c.name])))
            else:
                params.append((c.name, _ps(c.value(rollback=True))))
        return command(self.cmdlet, params)

    @property
    def reads_at_apply(self) -> tuple[str, ...]:
        """Parameters whose old value the export lacks: read and recorded when the script runs."""
        return tuple(c.name for c in self.changes if c.observed is UNREAD)


def certificate_lookup_fix(
    cmdlet: str, identity: str, servers: tuple[str, ...], domain: str, observed: PsValue
) -> SetCommand:
    """`Set-<Kind> -Identity <id> -TlsCertificateName $exconnCertificateName`, the name looked up
    when the script runs (`CertificateLookup`)."""
    return SetCommand(
        cmdlet,
        identity,
        (ParamChange("TlsCertificateName", LOOKED_UP_CERTIFICATE, observed),),
        lookup=CertificateLookup(servers, domain),
    )


@dataclass(frozen=True, slots=True)
class NewCommand:
    """`New-<Kind> -Name <name> ...`; rolled back by `Remove-<Kind> -Identity <name>`."""

    cmdlet: str
    name: str
    parameters: tuple[tuple[str, PsValue], ...]

    def render(self) -> str:
        return command(self.cmdlet, [("Name", self.name), *self.parameters])

    def render_rollback(self) -> str:
        noun = self.cmdlet.split("-", 1)[1]
        return command(f"Remove-{noun}", [("Identity", self.name), ("Confirm", False)])


@dataclass(frozen=True, slots=True)
class PublishMtaSts:
    """The DNS side of a fix for one of our domains: the MTA-STS policy to serve and the TXT records to
    publish after it. `exconn.remediate.dns` writes it to DIR/dns/<domain>/; there is no PowerShell
    for it, so the .ps1 writer leaves it out. Plain values only: everything the writer needs is here.
    """

    domain: str
    mode: str  # the proposed policy: "enforce" | "testing"
    mx: tuple[str, ...]
    max_age: int
    why: str  # the sentence that says what chose the mode
    tlsrpt_rua: str | None  # --tlsrpt-rua, when given
    published_rua: tuple[str, ...] | None  # the rua of the valid TLS-RPT record seen (None: none valid)
    sts_status: str  # the MTA-STS status observed (valid, absent, invalid, error, ...)
    record_exists: bool | None  # an `_mta-sts` TXT record was seen (None: cannot tell)
    current_mode: str | None = None  # the valid policy served now, if any
    current_max_age: int | None = None
    current_id: str | None = None

    @property
    def record_verb(self) -> str:
        """What to do with the `_mta-sts` TXT record: replace the one seen, create one where none is."""
        if self.record_exists:
            return "replace"
        return "create" if self.record_exists is False else "create (or replace, if one exists)"

    def rua(self) -> str | None:
        """The rua of the `_smtp._tls` record: --tlsrpt-rua, else the one published now."""
        if self.tlsrpt_rua is not None:
            return self.tlsrpt_rua
        return ",".join(self.published_rua) if self.published_rua else None

    def render(self) -> str:
        rua = self.rua()
        return (
            f"publish MTA-STS policy for {self.domain}: mode {self.mode}, mx {', '.join(self.mx)}, "
            f"max_age {self.max_age}; then {self.record_verb.split(' ', 1)[0]} the _mta-sts TXT record "
            "with a new id; "
            + (f"_smtp._tls rua {rua}" if rua is not None else "_smtp._tls: no rua (give --tlsrpt-rua)")
        )


# PowerShell: what remediation.ps1 and rollback.ps1 run.
Command = SetCommand | NewCommand
Fix = Command | PublishMtaSts
