"""The registry checks itself (prowler's metadata validation)."""

from __future__ import annotations

import re
from pathlib import Path

import exconn.rules
from exconn.rules import RULE_MODULES
from exconn.rules.base import RULE_ID, all_rules

URL = re.compile(r"^https://[^\s/]+\.[a-z]{2,}/\S*$")


def test_rules_are_registered() -> None:
    rules = all_rules()
    # Every module that declares a rule is loaded by the registry (else its rules never run).
    package = Path(exconn.rules.__file__).parent
    declaring = {f"exconn.rules.{p.stem}" for p in package.glob("*.py") if "@rule(" in p.read_text("utf-8")}
    assert declaring == set(RULE_MODULES)
    assert {r.check.__module__ for r in rules} == set(RULE_MODULES)
    ids = [r.id for r in rules]
    assert len(ids) == len(set(ids))
    assert {"EXC-S001", "EXC-S002", "EXC-S003", "EXC-S004", "EXC-S005", "EXC-S006", "EXC-S007"} <= set(ids)
    assert {"EXC-R001", "EXC-R002", "EXC-R003", "EXC-R004", "EXC-R005", "EXC-R006"} <= set(ids)


def test_every_rule_is_well_declared() -> None:
    for r in all_rules():
        assert RULE_ID.match(r.id) and re.fullmatch(r"EXC-[A-Z]\d{3}", r.id), r.id
        assert r.title.strip() and len(r.title) < 100, r.id
        assert r.rationale.strip(), r.id
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", r.rationale) if s]
        assert 1 <= len(sentences) <= 3, (r.id, sentences)
        assert r.references, r.id
        assert all(URL.match(ref) for ref in r.references), (r.id, r.references)
        assert r.remediation.strip(), r.id
        assert callable(r.check)


def test_rules_without_an_automatic_fix_say_none() -> None:
    # EXC-S009 and EXC-R006 propose -TlsCertificateName (issue 9): no longer in this set.
    no_fix = {"EXC-S005", "EXC-S006", "EXC-R005"}
    for r in all_rules():
        if r.id in no_fix:
            assert r.remediation.startswith("none"), r.id
