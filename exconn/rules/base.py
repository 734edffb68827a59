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
import functools
import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exconn.fix import Command, Fix, NewCommand, PublishMtaSts, SetCommand
from exconn.model import ModelObject, Organization, identity_of, kind_of
from exconn.pwsh import UnsafeValue
from exconn.rules.fix_evidence import FixEvidence, fix_evidence

if TYPE_CHECKING:
    from exconn.evidence.model import Evidence
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
    # Why there is no fix, when the rule knows better than its declared remediation says.
    fix_note: str | None = None


@dataclass(frozen=True, slots=True)
class CannotJudge:
    target: Target
    reason: str


@dataclass(frozen=True, slots=True)
class Each:
    """What a rule judges one at a time: the engine runs the rule's check once per item, so a
    failure on one item is listed as not judged on that item and the other items' results stand."""

    what: str  # "send connector", for messages
    items: Callable[[Context], Iterable[Any]] = field(repr=False, compare=False)
    target: Callable[[Any], Target] = field(repr=False, compare=False)


EACH_SEND_CONNECTOR = Each("send connector", lambda ctx: ctx.org.send_connectors, Target.of)
EACH_RECEIVE_CONNECTOR = Each("receive connector", lambda ctx: ctx.org.receive_connectors, Target.of)
EACH_INBOUND_CONNECTOR = Each("inbound connector", lambda ctx: ctx.org.inbound_connectors, Target.of)
EACH_OUTBOUND_CONNECTOR = Each("outbound connector", lambda ctx: ctx.org.outbound_connectors, Target.of)

# check(ctx) for a rule over the whole context; check(ctx, item) for a rule declared with `each`.
Check = Callable[..., Iterable["Hit | CannotJudge"]]
Unit = Callable[[], Iterable["Hit | CannotJudge"]]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    rationale: str
    references: tuple[str, ...]
    remediation: str  # what the fix does, or "none: <why>"
    check: Check = field(repr=False, compare=False)
    needs_posture: bool = False
    each: Each | None = None

    def units(
        self, ctx: Context
    ) -> Iterator[tuple[Target | None, Callable[[], Iterable[Hit | CannotJudge]]]]:
        """The separately judged units of work: one per item of `each`, else the whole context."""
        if self.each is None:
            yield None, lambda: self.check(ctx)
            return
        for item in self.each.items(ctx):
            yield self.each.target(item), functools.partial(self.check, ctx, item)


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
    # Why the finding has no fix (or only part of one): every finding without a fix says why.
    fix_note: str | None = None
    # Whether the logs support the fix, for a fix that requires TLS or validation (None: not one).
    fix_evidence: FixEvidence | None = None

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
    # What the logs and reports showed (logs given to audit, or --evidence); None: none given.
    evidence: Evidence | None = None


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
    each: Each | None = None,
) -> Callable[[Check], Rule]:
    """Declare a rule; the decorated check function becomes the Rule and is registered.

    With `each`, the check takes (ctx, item) and judges one item; without, it takes ctx.
    """

    def register(check: Check) -> Rule:
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
            each=each,
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
    """Run every rule over the context. A rule that crashes on one unit of work (one connector, or
    the whole context for a rule without `each`) is listed as not judged there; nothing else is lost."""
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
        for target, unit in r.units(ctx):
            try:
                # Findings are built here too: their fix evidence is judged per finding, and a
                # failure there is this unit's, not the whole audit's.
                results = [
                    res if isinstance(res, CannotJudge) else _finding(r, res, sources.get(res.target), ctx)
                    for res in unit()
                ]
            except Exception as exc:  # a bug on one unit must not hide the other units' findings
                where = traceback.extract_tb(exc.__traceback__)[-1]
                reason = f"internal error in rule: {type(exc).__name__}: {exc} ({where.name})"
                skipped.append(Skip(r.id, target, reason, sources.get(target) if target else None))
                continue
            for res in results:
                if isinstance(res, CannotJudge):
                    skipped.append(Skip(r.id, res.target, res.reason, sources.get(res.target)))
                else:
                    findings.append(res)
    findings.sort(key=lambda f: (-f.severity, f.rule.id, f.target.kind, f.target.identity))
    return Report(tuple(findings), tuple(skipped), tuple(ran))


def _finding(r: Rule, hit: Hit, source: str | None, ctx: Context) -> Finding:
    fix, note = _writable(hit.fix)
    if note is None:
        note = hit.fix_note
    if note is None and not fix:
        note = _declared_note(r)
    return Finding(
        rule=r,
        severity=hit.severity if hit.severity is not None else r.severity,
        target=hit.target,
        property=hit.property,
        observed=hit.observed,
        message=hit.message,
        fix=fix,
        source=source,
        fix_note=note,
        fix_evidence=fix_evidence(hit.target.kind, hit.target.identity, fix, ctx.org, ctx.evidence),
    )


def _writable(fixes: tuple[Fix, ...]) -> tuple[tuple[Fix, ...], str | None]:
    """The fixes PowerShell quoting can write; a value it refuses (a control character in a
    connector name) withholds that command, and the note says why. The finding itself stands."""
    kept: list[Fix] = []
    notes: list[str] = []
    for f in fixes:
        if isinstance(f, SetCommand | NewCommand):
            try:
                f.render()
            except UnsafeValue as exc:
                notes.append(f"fix withheld: {exc}; make this change by hand")
                continue
        kept.append(f)
    return tuple(kept), "; ".join(notes) or None


def _declared_note(r: Rule) -> str:
    text = r.remediation
    if text.lower().startswith("none"):
        return "no automatic fix: " + text.split(":", 1)[-1].strip()
    return f"no automatic fix for this case; what to do: {text}"
