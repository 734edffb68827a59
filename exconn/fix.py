"""What a fix is: the PowerShell commands and the DNS publication a finding proposes.

Plain frozen values, rendered to PowerShell only through `exconn.pwsh`. Rules build them; the
remediation writer, the renderers and the DNS writer read them. Nothing here knows a rule.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from exconn.pwsh import PsValue, command


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


@dataclass(frozen=True, slots=True)
class ParamChange:
    """One parameter of a Set-* command: the value we set, and the value observed before."""

    name: str
    new: PsValue
    observed: PsValue


@dataclass(frozen=True, slots=True)
class SetCommand:
    """`Set-<Kind> -Identity <id> -P new ...`; rolled back by setting the observed values."""

    cmdlet: str
    identity: str
    changes: tuple[ParamChange, ...]
    # Organisation-wide objects (Set-TransportConfig) take no -Identity on-premises.
    singleton: bool = False

    def _head(self) -> list[tuple[str, PsValue]]:
        return [] if self.singleton else [("Identity", self.identity)]

    def render(self) -> str:
        return command(self.cmdlet, [*self._head(), *((c.name, c.new) for c in self.changes)])

    def render_rollback(self) -> str:
        return command(self.cmdlet, [*self._head(), *((c.name, c.observed) for c in self.changes)])


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
