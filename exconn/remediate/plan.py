"""Which commands the remediation script runs: every finding's PowerShell fix, merged per object.

Fixes aimed at the same object are merged into one command, because Exchange validates the
combination of parameters at write time: two separate commands could each be invalid on their own
(e.g. TlsAuthLevel before RequireTLS).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import exconn.pwsh as pwsh
from exconn.fix import LOOKED_UP_CERTIFICATE, Command, NewCommand, ParamChange, SetCommand, same_value
from exconn.model import TlsAuthLevel
from exconn.rules.base import Finding, Report

_TLS_STRENGTH: list[pwsh.PsValue] = [
    None,
    TlsAuthLevel.ENCRYPTION_ONLY,
    TlsAuthLevel.CERTIFICATE_VALIDATION,
    TlsAuthLevel.DOMAIN_VALIDATION,
]


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One command of the script, with the findings it fixes and how conflicts were settled."""

    command: Command
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()


def _is_list(value: pwsh.PsValue) -> bool:
    return isinstance(value, list | tuple)


def items(value: pwsh.PsValue) -> list[str]:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return []  # a flags value of None, or an unset list
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value.value) if isinstance(value, enum.Enum) else str(value)]


def _tls_rank(value: pwsh.PsValue) -> int:
    text = str(value.value if isinstance(value, enum.Enum) else value).lower()
    names = [str(v.value if isinstance(v, enum.Enum) else v).lower() for v in _TLS_STRENGTH]
    return names.index(text) if text in names else -1


def _merge_param(name: str, wanted: list[tuple[ParamChange, Finding]]) -> tuple[ParamChange, str | None]:
    """One value for a parameter several findings change; findings arrive most severe first."""
    first, owner = wanted[0]
    if all(same_value(c.new, first.new) for c, _ in wanted):
        return first, None
    ids = ", ".join(f.rule.id for _, f in wanted)
    if all(_is_list(c.new) or isinstance(c.new, str) for c, _ in wanted) and any(
        _is_list(c.new) for c, _ in wanted
    ):
        # Each fix is "the observed list plus/minus something": apply every addition and removal.
        base = items(first.observed)
        seen = {b.lower() for b in base}
        removed: set[str] = set()
        added: list[str] = []
        for change, _ in wanted:
            new_items = items(change.new)
            new_lower = {n.lower() for n in new_items}
            removed |= {b.lower() for b in base if b.lower() not in new_lower}
            for item in new_items:
                if item.lower() not in seen:
                    seen.add(item.lower())
                    added.append(item)
        merged = [b for b in base if b.lower() not in removed] + added
        value: pwsh.PsValue = merged if merged else "None"
        return ParamChange(name, value, first.observed), f"{name}: combined the changes of {ids}"
    if name == "TlsAuthLevel":
        strongest = max(wanted, key=lambda cw: _tls_rank(cw[0].new))
        return strongest[0], f"TlsAuthLevel: the strongest level asked for by {ids} wins"
    return first, f"{name}: {ids} disagree; kept the value of {owner.rule.id} (most severe)"


def _tls_domain_follows_level(
    changes: list[ParamChange],
    by_param: dict[str, list[tuple[ParamChange, Finding]]],
    notes: list[str],
) -> list[ParamChange]:
    """TlsAuthLevel and TlsDomain are one setting to Exchange (TlsDomain needs DomainValidation):
    when findings disagree, TlsDomain comes from the finding whose TlsAuthLevel won."""
    levels, domains = by_param.get("tlsauthlevel"), by_param.get("tlsdomain")
    if not levels or not domains:
        return changes
    won = next(c for c in changes if c.name.lower() == "tlsauthlevel")
    owner = next(f for c, f in levels if c is won)
    own = next((c for c, f in domains if f is owner), None)
    current = next(c for c in changes if c.name.lower() == "tlsdomain")
    if own is not None:
        wanted = own
    elif same_value(won.new, TlsAuthLevel.DOMAIN_VALIDATION):
        return changes
    else:
        wanted = ParamChange(current.name, None, current.observed)
    if wanted is not current and not same_value(wanted.new, current.new):
        notes.append(f"TlsDomain: follows the TlsAuthLevel of {owner.rule.id}")
    return [wanted if c is current else c for c in changes]


def _unique(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    # Findings hold unhashable observed values (lists): dedupe by identity.
    seen: dict[int, Finding] = {}
    for f in findings:
        seen.setdefault(id(f), f)
    return tuple(seen.values())


def plan_changes(report: Report) -> list[PlannedChange]:
    """Every PowerShell fix of the report, merged per object, in the order of the first finding asking
    for it. The DNS side (`PublishMtaSts`) is `exconn.remediate.dns`'s: no PowerShell for it."""
    order: list[tuple[str, str, str]] = []
    sets: dict[tuple[str, str, str], list[tuple[SetCommand, Finding]]] = {}
    news: dict[tuple[str, str, str], list[tuple[NewCommand, Finding]]] = {}
    for finding in report.findings:
        for fix in finding.commands:
            if isinstance(fix, SetCommand):
                key = ("set", fix.cmdlet, fix.identity.lower())
                if key not in sets:
                    order.append(key)
                sets.setdefault(key, []).append((fix, finding))
            else:
                key = ("new", fix.cmdlet, fix.name.lower())
                if key not in news:
                    order.append(key)
                news.setdefault(key, []).append((fix, finding))
    planned: list[PlannedChange] = []
    for key in order:
        if key[0] == "new":
            # The same object created by two findings: the first (most severe) definition wins.
            group = news[key]
            planned.append(PlannedChange(group[0][0], _unique(f for _, f in group)))
            continue
        sgroup = sets[key]
        by_param: dict[str, list[tuple[ParamChange, Finding]]] = {}
        for cmd, finding in sgroup:
            for change in cmd.changes:
                by_param.setdefault(change.name.lower(), []).append((change, finding))
        changes: list[ParamChange] = []
        notes: list[str] = []
        for wanted in by_param.values():
            change, note = _merge_param(wanted[0][0].name, wanted)
            changes.append(change)
            if note:
                notes.append(note)
        changes = _tls_domain_follows_level(changes, by_param, notes)
        head = sgroup[0][0]
        # The apply-time certificate lookup stays only while its variable is what the command passes.
        lookup = next((cmd.lookup for cmd, _ in sgroup if cmd.lookup is not None), None)
        if not any(c.new == LOOKED_UP_CERTIFICATE for c in changes):
            lookup = None
        planned.append(
            PlannedChange(
                SetCommand(
                    head.cmdlet, head.identity, tuple(changes), singleton=head.singleton, lookup=lookup
                ),
                _unique(f for _, f in sgroup),
                tuple(notes),
            )
        )
    return planned
