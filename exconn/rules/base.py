"""What a rule is, what it yields, and the engine that runs them.

A rule is one small declared unit: a stable id (never reused), title, default severity, a
rationale of a sentence or three, references (RFC section or Microsoft doc), the remediation it
proposes, and `check`, a pure function of the model (and posture facts) that yields `Hit`s (the
rule fired on a target) and `CannotJudge`s (an input it needs is missing: missing facts never
pass). The engine turns them into `Finding`s and `Skip`s; renderers and the remediation writer
read only those.
"""

from __future__ import annotations

import builtins
import datetime as dt
import enum
import re
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exconn.fix import Command, Fix, NewCommand, PublishMtaSts, SetCommand
from exconn.model import ModelObject, Organization, identity_of, kind_of

if TYPE_CHECKING:
    from exconn.posture.facts import DomainPosture


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of: {names})") from None

    def lowered(self, steps: int = 1) -> Severity:
        return Severity(max(Severity.INFO, self - steps))


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # SendConnector | ReceiveConnector | ... | Domain
    identity: str

    @classmethod
    def of(cls, obj: ModelObject) -> Target:
        return cls(kind_of(obj), identity_of(obj))


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule fired on `target`. `severity` overrides the rule's default (reachability)."""

    target: Target
    property: str | None
    observed: Any
    message: str
    severity: Severity | None = None
    fix: tuple[Fix, ...] = ()


@dataclass(frozen=True, slots=True)
class CannotJudge:
    target: Target
    reason: str


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    rationale: str
    references: tuple[str, ...]
    remediation: str  # what the fix does, or "none: <why>"
    check: Callable[[Context], Iterable[Hit | CannotJudge]] = field(repr=False, compare=False)
    needs_posture: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    severity: Severity
    target: Target
    property: str | None
    observed: Any
    message: str
    fix: tuple[Fix, ...]
    source: str | None = None

    # `property` is a field of Finding: the decorator is spelled in full.
    @builtins.property
    def commands(self) -> tuple[Command, ...]:
        """The PowerShell side of the fix."""
        return tuple(c for c in self.fix if isinstance(c, SetCommand | NewCommand))

    @builtins.property
    def dns(self) -> tuple[PublishMtaSts, ...]:
        """The DNS side of the fix."""
        return tuple(c for c in self.fix if isinstance(c, PublishMtaSts))


@dataclass(frozen=True, slots=True)
class Skip:
    """Something that could not be judged: a rule on a target, or an object not understood."""

    what: str  # a rule id, or "object"
    target: Target | None
    reason: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    org: Organization
    now: dt.datetime
    # Domain -> observed posture; empty when offline.
    posture: Mapping[str, DomainPosture] = field(default_factory=dict)
    offline: bool = True
    # --tlsrpt-rua: the rua of the `_smtp._tls` record the DNS side of the fix writes.
    tlsrpt_rua: str | None = None


RULE_ID = re.compile(r"^EXC-[A-Z]\d{3}$")
_REGISTRY: dict[str, Rule] = {}


def rule(
    *,
    id: str,  # noqa: A002 - the declared field is called id everywhere else too
    title: str,
    severity: Severity,
    rationale: str,
    references: Sequence[str],
    remediation: str,
    needs_posture: bool = False,
) -> Callable[[Callable[[Context], Iterable[Hit | CannotJudge]]], Rule]:
    """Declare a rule; the decorated check function becomes the Rule and is registered."""

    def register(check: Callable[[Context], Iterable[Hit | CannotJudge]]) -> Rule:
        if id in _REGISTRY:
            raise ValueError(f"rule id {id} declared twice")
        declared = Rule(
            id=id,
            title=title,
            severity=severity,
            rationale=" ".join(rationale.split()),
            references=tuple(references),
            remediation=" ".join(remediation.split()),
            check=check,
            needs_posture=needs_posture,
        )
        _REGISTRY[id] = declared
        return declared

    return register


def all_rules() -> list[Rule]:
    # Importing the rule modules registers them; kept here so callers need one import.
    from exconn.rules import load_all

    load_all()
    return sorted(_REGISTRY.values(), key=lambda r: r.id)


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]
    skipped: tuple[Skip, ...]
    rules_run: tuple[str, ...]

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)


def _sources(org: Organization) -> dict[Target, str]:
    """Where each object came from, looked up once per evaluation rather than once per finding."""
    return {Target(kind_of(o), identity_of(o)): o.source.path for o in reversed(org.objects())}


def evaluate(ctx: Context, rules: Iterable[Rule] | None = None) -> Report:
    """Run every rule over the context. A rule that crashes is reported as skipped, not fatal."""
    findings: list[Finding] = []
    skipped: list[Skip] = [
        Skip("object", Target(s.type_name, s.identity), s.reason, s.source.path) for s in ctx.org.skipped
    ]
    ran: list[str] = []
    sources = _sources(ctx.org)
    for r in all_rules() if rules is None else rules:
        if r.needs_posture and ctx.offline:
            continue
        ran.append(r.id)
        try:
            results = list(r.check(ctx))
        except Exception as exc:  # a bug in one rule must not hide the others' findings
            where = traceback.extract_tb(exc.__traceback__)[-1]
            skipped.append(
                Skip(r.id, None, f"internal error in rule: {type(exc).__name__}: {exc} ({where.name})")
            )
            continue
        for res in results:
            if isinstance(res, CannotJudge):
                skipped.append(Skip(r.id, res.target, res.reason, sources.get(res.target)))
            else:
                findings.append(
                    Finding(
                        rule=r,
                        severity=res.severity if res.severity is not None else r.severity,
                        target=res.target,
                        property=res.property,
                        observed=res.observed,
                        message=res.message,
                        fix=res.fix,
                        source=sources.get(res.target),
                    )
                )
    findings.sort(key=lambda f: (-f.severity, f.rule.id, f.target.kind, f.target.identity))
    return Report(tuple(findings), tuple(skipped), tuple(ran))
