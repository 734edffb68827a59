"""The quick DNS path (posture/dns.py `quick_lookup`, and posture/adns.py from an event loop) answers
exactly as dnspython's Resolver.resolve would, on the real loopback Knot + Unbound world, and steps
aside for what it does not handle."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import dns.rdatatype
import dns.resolver
import pytest

from exconn.posture import adns
from exconn.posture import dns as pdns
from tests.conftest import PostureEnv

pytestmark = pytest.mark.servers

QUESTIONS = [
    ("good.test", "MX"),  # ok, signed (AD)
    ("_mta-sts.good.test", "TXT"),
    ("split.test", "MX"),
    ("_mta-sts.split.test", "TXT"),  # two strings in one record
    ("mx.good.test", "A"),
    ("mx.good.test", "AAAA"),
    ("_25._tcp.mx.good.test", "TLSA"),
    ("nullmx.test", "MX"),
    ("implicit.test", "MX"),  # NODATA
    ("_mta-sts.nosts.test", "TXT"),  # absent
    ("doesnotexist.test", "MX"),  # NXDOMAIN, signed denial
    ("dane.insecure.test", "MX"),  # unsigned: no AD
    ("Good.TEST", "mx"),  # case does not matter
]


class _FullPath(dns.resolver.Resolver):
    """Overrides `resolve`, which sends `lookup` the whole way through dnspython (as a resolver class
    with its own `resolve`, e.g. one that counts questions, must be)."""

    def resolve(self, *args: Any, **kwargs: Any) -> dns.resolver.Answer:
        return super().resolve(*args, **kwargs)


def _full(base: dns.resolver.Resolver) -> _FullPath:
    full = _FullPath(configure=False)
    full.nameservers, full.port = base.nameservers, base.port
    full.lifetime, full.timeout = base.lifetime, base.timeout
    full.use_edns(base.edns, base.ednsflags, base.payload)
    full.flags, full.cache = base.flags, None
    return full


@pytest.mark.parametrize(("name", "rdtype"), QUESTIONS)
def test_quick_path_equals_the_full_path(
    posture_resolver: dns.resolver.Resolver, name: str, rdtype: str
) -> None:
    quick = pdns.quick_lookup(posture_resolver, name, rdtype)
    assert quick is not None, "the quick path stepped aside for a common answer"
    assert pdns.quick_lookup(_full(posture_resolver), name, rdtype) is None
    assert quick == pdns.lookup(_full(posture_resolver), name, rdtype)
    assert quick == pdns.lookup(pdns.with_deadline(posture_resolver, float("inf")), name, rdtype)


def test_quick_path_steps_aside_for_servfail(posture_resolver: dns.resolver.Resolver) -> None:
    assert pdns.quick_lookup(posture_resolver, "bogus.test", "MX") is None
    result = pdns.lookup(posture_resolver, "bogus.test", "MX")
    assert result.status == "error" and result.error is not None and result.error.type == "dnssec-invalid"


def test_quick_path_ends_by_the_deadline(posture_resolver: dns.resolver.Resolver) -> None:
    assert pdns.quick_lookup(pdns.with_deadline(posture_resolver, 0.0), "good.test", "MX") is None
    late = pdns.lookup(pdns.with_deadline(posture_resolver, 0.0), "good.test", "MX")
    assert late.status == "error" and late.error is not None and late.error.type == "dns-timeout"


def test_questions_asked_together_answer_as_one_by_one(posture_resolver: dns.resolver.Resolver) -> None:
    collect = pdns.ask_together(posture_resolver, QUESTIONS + [("bogus.test", "MX")])
    together = collect()
    assert together == [
        pdns.lookup(_full(posture_resolver), n, t) for n, t in QUESTIONS + [("bogus.test", "MX")]
    ]
    assert together[-1].error is not None and together[-1].error.type == "dnssec-invalid"  # the full path's


def test_questions_asked_together_time_out_once(posture_env: PostureEnv) -> None:
    """A resolver that never answers costs the lifetime once for all the questions sent together."""
    resolver = pdns.make_resolver(posture_env.silent_resolver, timeout=0.6)
    started = time.monotonic()
    results = pdns.ask_together(resolver, [("good.test", "A"), ("good.test", "AAAA"), ("good.test", "MX")])()
    elapsed = time.monotonic() - started
    assert [r.error.type if r.error else None for r in results] == ["dns-timeout"] * 3
    assert 0.55 < elapsed < 1.0, elapsed


def test_answers_that_came_in_time_count_when_collected_late(posture_resolver: dns.resolver.Resolver) -> None:
    """The caller collects after its other work (e.g. a policy fetch that took the whole timeout):
    answers that arrived meanwhile are the answers, not a timeout."""
    bounded = pdns.with_deadline(posture_resolver, time.monotonic() + 0.3)
    collect = pdns.ask_together(bounded, [("good.test", "MX"), ("mx.good.test", "A")])
    time.sleep(0.4)
    assert [r.status for r in collect()] == ["ok", "ok"]


def test_a_silent_first_nameserver_is_not_the_answer(posture_env: PostureEnv) -> None:
    """With several nameservers the questions go through dnspython, which tries them in turn: a
    silent first server costs one attempt, not the answer."""
    silent_ip, silent_port = pdns.parse_resolver_address(posture_env.silent_resolver)
    real_ip, real_port = pdns.parse_resolver_address(posture_env.resolver)
    resolver = pdns.make_resolver(posture_env.resolver, timeout=2.0)
    resolver.nameservers = [silent_ip, real_ip]
    resolver.nameserver_ports = {silent_ip: silent_port, real_ip: real_port}
    assert not pdns.quick_path(resolver)
    started = time.monotonic()
    result = pdns.lookup(resolver, "good.test", "MX")
    assert result.status == "ok" and result.authenticated, result
    assert time.monotonic() - started < 2.0


# --- the same questions from the scan's event loop (posture/adns.py) ------------------------------


def _ask(resolver: dns.resolver.Resolver, questions: list[tuple[str, str]]) -> list[pdns.Lookup]:
    return asyncio.run(adns.ask(resolver, questions))


def test_the_event_loop_asks_as_one_by_one(posture_resolver: dns.resolver.Resolver) -> None:
    asked = QUESTIONS + [("bogus.test", "MX")]
    expected = [pdns.lookup(_full(posture_resolver), n, t) for n, t in asked]
    assert _ask(posture_resolver, asked) == expected  # the quick path, SERVFAIL through the full one
    assert _ask(_full(posture_resolver), asked) == expected  # every question on the executor


def test_the_event_loop_times_out_once_and_asks_nothing_at_once(posture_env: PostureEnv) -> None:
    resolver = pdns.make_resolver(posture_env.silent_resolver, timeout=0.6)
    started = time.monotonic()
    results = _ask(resolver, [("good.test", "A"), ("good.test", "AAAA"), ("good.test", "MX")])
    elapsed = time.monotonic() - started
    assert [r.error.type if r.error else None for r in results] == ["dns-timeout"] * 3
    assert 0.55 < elapsed < 1.0, elapsed
    started = time.monotonic()
    assert _ask(resolver, []) == [] and time.monotonic() - started < 0.1  # no MX host: no TLSA wait


def test_the_event_loop_hands_a_refused_port_to_the_full_path() -> None:
    """Nothing listens on the port: the kernel's ICMP refusal fails the socket, and dnspython (the
    full path) names what happened instead of a silent timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nobody listens there
    resolver = pdns.make_resolver(f"127.0.0.1:{port}", timeout=1.0)
    result = _ask(resolver, [("good.test", "MX")])[0]
    assert result.status == "error" and result.error is not None
    assert result.error.type in {"dns-error", "dns-servfail", "dns-timeout"}, result.error


def test_the_event_loop_turns_to_the_next_nameserver(posture_env: PostureEnv) -> None:
    """With several nameservers the event loop rotates itself, as dnspython would: a silent first
    server costs one attempt, and the answer names the server that gave it."""
    silent_ip, silent_port = pdns.parse_resolver_address(posture_env.silent_resolver)
    real_ip, real_port = pdns.parse_resolver_address(posture_env.resolver)
    resolver = pdns.make_resolver(posture_env.resolver, timeout=2.0)  # one attempt: 1 s
    resolver.nameservers = [silent_ip, real_ip]
    resolver.nameserver_ports = {silent_ip: silent_port, real_ip: real_port}
    assert pdns.quick_plan(resolver, [("good.test", "MX")], several=True) is not None
    started = time.monotonic()
    results = _ask(resolver, [("good.test", "MX"), ("doesnotexist.test", "MX")])
    elapsed = time.monotonic() - started
    assert [r.status for r in results] == ["ok", "nxdomain"] and results[0].authenticated
    assert {r.server for r in results} == {f"{real_ip}:{real_port}"}
    assert 0.9 < elapsed < 1.9, elapsed  # the first attempt's second, then the second server
    expected = pdns.lookup(_full(pdns.make_resolver(posture_env.resolver)), "good.test", "MX")
    assert results[0] == expected


def test_questions_asked_apart_do_not_wait_on_each_other() -> None:
    """One exchange for both groups, but the A group's answer does not wait for the TXT group's,
    which never comes (a timeout, once)."""
    from tests.servers.dns import ScriptedUdp

    server = ScriptedUdp({("a.test", "A"): ["127.0.0.9"], ("b.test", "A"): ["127.0.0.9"]})
    resolver = pdns.make_resolver(server.address, timeout=0.8)
    finished: dict[str, float] = {}

    async def both() -> tuple[list[pdns.Lookup], list[pdns.Lookup]]:
        started = time.monotonic()
        quick, slow = adns.ask_apart(resolver, [[("a.test", "A")], [("a.test", "TXT"), ("b.test", "A")]])

        async def timed(name: str, task: asyncio.Task[list[pdns.Lookup]]) -> list[pdns.Lookup]:
            result = await task
            finished[name] = time.monotonic() - started
            return result

        return await asyncio.gather(timed("quick", quick), timed("slow", slow))

    try:
        quick, slow = asyncio.run(both())
    finally:
        server.stop()
    assert [r.status for r in quick] == ["ok"] and quick[0].records[0].to_text() == "127.0.0.9"
    assert slow[0].error is not None and slow[0].error.type == "dns-timeout"
    assert slow[1].status == "ok"  # answered at once, reported with its group
    assert finished["quick"] < 0.4 < 0.7 < finished["slow"] < 1.5, finished
