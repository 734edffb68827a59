"""Spreading a scan over worker processes (posture/workers.py): the same answers, in input order,
progress once per domain, the concurrency shared, and a worker that dies ends the run, not hangs it."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import dns.resolver
import pytest

from exconn.posture import workers
from exconn.posture.facts import DomainPosture
from exconn.posture.scan import ScanOptions, scan_domains
from tests.conftest import PostureEnv

SOME = [
    "good.test",
    "testing.test",
    "none.test",
    "nosts.test",
    "doesnotexist.test",
    "bogus.test",
    "nullmx.test",
    "implicit.test",
    "wild.test",
    "dane.insecure.test",
    "tlsabad.test",
    "daneta.test",
    "badmode.test",
]  # not tworpt.test: which of its two TXT records it shows follows the resolver's rotation


def test_shares_keep_the_concurrency() -> None:
    assert workers.shares(5, 2) == [3, 2]
    assert workers.shares(128, 2) == [64, 64]
    assert workers.shares(1, 2) == [1]
    assert workers.process_count(50, 128) == 1  # too few domains to be worth a process
    assert workers.process_count(1000, 128) == 1  # one event loop is enough for 128 at a time
    assert workers.process_count(10_000, 512) == min(workers.cores(), 2)


def _timeless(posture: DomainPosture) -> DomainPosture:
    return dataclasses.replace(posture, observed_at="")


@pytest.mark.servers
def test_processes_answer_as_one_process(
    posture_env: PostureEnv, posture_resolver: dns.resolver.Resolver
) -> None:
    options = ScanOptions(
        timeout=5.0, ca_file=posture_env.ca_file, smtp=False, https_port=posture_env.https_port
    )
    seen: list[str] = []
    started = time.monotonic()
    spread = scan_domains(
        SOME,
        resolver=posture_resolver,
        options=options,
        concurrency=4,
        processes=2,
        progress=lambda d: seen.append(d.domain),
    )
    assert time.monotonic() - started < 30
    alone = scan_domains(SOME, resolver=posture_resolver, options=options, concurrency=4, processes=1)
    assert [d.domain for d in spread.domains] == SOME  # input order, whatever order they finished in
    assert sorted(seen) == sorted(SOME)  # progress once per domain, in the caller's process
    assert [_timeless(d) for d in spread.domains] == [_timeless(d) for d in alone.domains]
    assert spread.domains[0].mta_sts.status == "valid" and spread.domains[5].mta_sts.status == "error"


def _dies_after_one(tasks: Any, results: Any, threads: int) -> None:
    index, item = tasks.get()
    results.put((index, item.upper()))
    results.close()
    results.join_thread()  # that one result reaches the parent
    os._exit(3)  # as the kernel's OOM killer would end it: no goodbye


def test_a_dead_worker_ends_the_run() -> None:
    got: dict[int, str] = {}
    started = time.monotonic()
    workers.spread(["a", "b", "c", "d", "e"], _dies_after_one, (), 2, 2, got.__setitem__)
    assert time.monotonic() - started < 20
    assert len(got) == 2 and all(got[i] == "abcde"[i].upper() for i in got)
