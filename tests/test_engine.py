"""The engine runs a rule per declared item: a failure on one item is that item's "not judged"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

from exconn.model import Organization, SendConnector
from exconn.rules import send
from exconn.rules.base import EACH_SEND_CONNECTOR, CannotJudge, Context, Hit, Rule, Severity, Target, evaluate
from tests.test_rules_send import conn

NOW = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)


def _fragile(ctx: Context, c: SendConnector) -> Iterator[Hit | CannotJudge]:
    if c.name == "Broken":
        raise ZeroDivisionError("division by zero")
    yield Hit(Target.of(c), "Name", c.name, f"saw {c.name}")


FRAGILE = Rule(
    id="EXC-T001",
    title="test rule",
    severity=Severity.LOW,
    rationale="Test.",
    references=("https://example.org/",),
    remediation="none: test",
    check=_fragile,
    each=EACH_SEND_CONNECTOR,
)


def test_one_item_failing_keeps_the_others_hits() -> None:
    org = Organization(
        send_connectors=(
            replace(conn(), name="A", identity="A"),
            replace(conn(), name="Broken", identity="Broken"),
            replace(conn(), name="C", identity="C"),
        )
    )
    report = evaluate(Context(org, NOW), [FRAGILE])
    assert [f.target.identity for f in report.findings] == ["A", "C"]
    (skip,) = report.skipped
    assert skip.what == "EXC-T001"
    assert skip.target == Target("SendConnector", "Broken")
    assert "ZeroDivisionError: division by zero" in skip.reason
    assert skip.source == "test.xml"


def test_a_real_rule_judges_the_sound_connectors_beside_a_malformed_one() -> None:
    # An address space that is not one: the reachability code trips on it, only for this connector.
    bad = replace(conn(ignore_starttls=True), name="Odd", identity="Odd", address_spaces=(object(),))  # type: ignore[arg-type]
    good = replace(conn(ignore_starttls=True), name="Plain", identity="Plain")
    report = evaluate(Context(Organization(send_connectors=(bad, good)), NOW), [send.ignore_starttls])
    assert [f.target.identity for f in report.findings] == ["Plain"]
    assert [(s.target, "internal error" in s.reason) for s in report.skipped] == [
        (Target("SendConnector", "Odd"), True)
    ]


def test_a_name_quoting_refuses_keeps_the_finding_and_says_why_there_is_no_fix() -> None:
    """Was: the control character reached the renderers' fix text (or crashed them)."""
    odd = replace(conn(ignore_starttls=True), name="Bad\x07Name", identity="Bad\x07Name")
    report = evaluate(Context(Organization(send_connectors=(odd,)), NOW), [send.ignore_starttls])
    (finding,) = report.findings
    assert finding.target.identity == "Bad\x07Name" and finding.fix == ()
    assert (
        finding.fix_note is not None
        and "fix withheld" in finding.fix_note
        and "control character" in finding.fix_note
    )


def test_every_finding_without_a_fix_says_why() -> None:
    ok = replace(conn(ignore_starttls=True), name="Plain", identity="Plain")
    report = evaluate(Context(Organization(send_connectors=(ok,)), NOW), [send.ignore_starttls])
    assert report.findings[0].fix and report.findings[0].fix_note is None
    report = evaluate(Context(Organization(send_connectors=(ok,)), NOW), [FRAGILE])
    assert report.findings[0].fix == () and report.findings[0].fix_note == "no automatic fix: test"
