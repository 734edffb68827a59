"""DNS from the scan's event loop: every question of a domain in flight at once, no thread each.

The quick path (quickdns.py) sends a batch of questions on a non-blocking UDP socket that the loop
watches; the answers are read as they come, unanswered questions are sent again every
`resolver.timeout` (to the next nameserver, when there are several), and the batch ends by the
resolver's lifetime (and the deadline of `pdns.with_deadline`). Whatever the quick path does not
read (truncation, SERVFAIL, aliases, a resolver class of its own) goes dnspython's full path
(`pdns.lookup`) on the loop's executor, which classifies it exactly as before. Results are
`pdns.Lookup`s, in order.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Sequence

import dns.resolver

from exconn.posture import dns as pdns
from exconn.posture import quickdns
from exconn.posture.errors import ProbeError


async def ask(resolver: dns.resolver.Resolver, questions: Sequence[tuple[str, str]]) -> list[pdns.Lookup]:
    """The `Lookup` of each (name, rdtype) in `questions`, all asked at the same time."""
    if not questions:
        return []
    found: list[pdns.Lookup | None] = [None] * len(questions)
    plan = pdns.quick_plan(resolver, questions, several=True)
    if plan is not None:
        started = time.monotonic()
        failed = await _exchange(plan)
        found = pdns.quick_results(plan.batch, plan.servers, failed=failed, started=started)
    missing = [index for index, result in enumerate(found) if result is None]
    if missing:
        loop = asyncio.get_running_loop()
        full = await asyncio.gather(
            *(
                loop.run_in_executor(None, functools.partial(pdns.lookup, resolver, *questions[index]))
                for index in missing
            )
        )
        for index, result in zip(missing, full, strict=True):
            found[index] = result
    return [result for result in found if result is not None]


async def addresses(resolver: dns.resolver.Resolver, host: str) -> tuple[list[str], list[ProbeError]]:
    """A and AAAA of `host`, asked together; errors for lookups that failed (not for absences)."""
    return pdns.addresses_of(await ask(resolver, [(host, "A"), (host, "AAAA")]))


async def _exchange(plan: pdns.QuickPlan) -> bool:
    """Send `plan`'s batch and read answers into it until complete or `plan.end`; True when a
    socket failed (then the unanswered go the full path, which names the failure).

    The first attempt goes to the first nameserver, each later one (every `plan.attempt` s) to the
    next in turn, as dnspython rotates; an answer from any of them counts, and says which."""
    loop = asyncio.get_running_loop()
    batch = plan.batch
    sockets: dict[int, socket.socket] = {}
    done: asyncio.Future[bool] = loop.create_future()
    timer: asyncio.TimerHandle | None = None
    attempt = 0

    def finish(failed: bool) -> None:
        if not done.done():
            done.set_result(failed)

    def readable(source: int) -> None:
        sock = sockets[source]
        try:
            while True:
                batch.match(sock.recv(65535), source)
                if batch.complete:
                    finish(False)
                    return
        except BlockingIOError:
            return
        except OSError:  # e.g. ICMP port unreachable on the connected socket
            finish(True)

    def send() -> None:
        nonlocal timer, attempt
        left = plan.end - time.monotonic()
        if left <= 0:
            finish(False)
            return
        source = attempt % len(plan.servers)
        attempt += 1
        try:
            sock = sockets.get(source)
            if sock is None:
                sock = sockets[source] = quickdns.connected_socket(*plan.servers[source])
                sock.setblocking(False)
                loop.add_reader(sock.fileno(), readable, source)
            batch.send(sock)
        except OSError:
            finish(True)
            return
        timer = loop.call_later(min(plan.attempt, left), send)

    try:
        send()
        return await done
    finally:
        if timer is not None:
            timer.cancel()
        for sock in sockets.values():
            loop.remove_reader(sock.fileno())
            sock.close()
