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
import contextvars
import errno
import functools
import socket
import time
from collections.abc import Sequence
from concurrent.futures import Executor

import dns.resolver

from exconn.posture import dns as pdns
from exconn.posture import quickdns
from exconn.posture.errors import ProbeError

#: The executor for full-path questions (scan.py sets one per scan): apart from the SMTP probes,
#: so a question never waits behind probes that hang to their timeout while its deadline runs.
full_path_pool: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "full_path_pool", default=None
)
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE)


class _Outcome:
    """How a quick exchange ended: `failed` (the unanswered go the full path), `no_socket` (this
    process is out of file descriptors: no path can ask, and saying SERVFAIL would be a lie)."""

    __slots__ = ("failed", "no_socket")

    def __init__(self) -> None:
        self.failed = False
        self.no_socket: OSError | None = None


async def ask(resolver: dns.resolver.Resolver, questions: Sequence[tuple[str, str]]) -> list[pdns.Lookup]:
    """The `Lookup` of each (name, rdtype) in `questions`, all asked at the same time."""
    if not questions:
        return []
    plan = pdns.quick_plan(resolver, questions, several=True)
    if plan is None:
        return await _full_path(resolver, questions, [None] * len(questions))
    exchange = _Exchange(plan, asyncio.get_running_loop(), [range(len(questions))])
    await exchange.run()
    return await _complete(resolver, exchange, exchange.groups[0], questions)


def ask_apart(
    resolver: dns.resolver.Resolver, groups: Sequence[Sequence[tuple[str, str]]]
) -> list[asyncio.Task[list[pdns.Lookup]]]:
    """`ask` for each group, all in one exchange (one socket), each group's `Lookup`s as soon as its
    own answers are in: a group never waits on another's slow answer, nor on its full-path retry.
    Call it from a running loop; the tasks run whether or not anyone awaits them."""
    loop = asyncio.get_running_loop()
    flat = [question for group in groups for question in group]
    plan = pdns.quick_plan(resolver, flat, several=True) if flat else None
    if plan is None:
        return [loop.create_task(ask(resolver, group)) for group in groups]
    bounds, start = [], 0
    for group in groups:
        bounds.append(range(start, start + len(group)))
        start += len(group)
    exchange = _Exchange(plan, loop, bounds)
    running = loop.create_task(exchange.run())

    def left(_task: asyncio.Task[list[pdns.Lookup]]) -> None:
        exchange.waiting -= 1
        if not exchange.waiting:
            running.cancel()  # nobody waits for the rest (even a group cancelled before it began)

    tasks = [loop.create_task(_group(resolver, exchange, n, flat)) for n in range(len(groups))]
    for task in tasks:
        task.add_done_callback(left)
    return tasks


async def _group(
    resolver: dns.resolver.Resolver, exchange: _Exchange, n: int, questions: Sequence[tuple[str, str]]
) -> list[pdns.Lookup]:
    await exchange.ready[n]
    return await _complete(resolver, exchange, exchange.groups[n], questions)


async def _complete(
    resolver: dns.resolver.Resolver,
    exchange: _Exchange,
    indices: range,
    questions: Sequence[tuple[str, str]],
) -> list[pdns.Lookup]:
    """The `Lookup`s of `questions[indices]` from what `exchange` read, the rest by the full path."""
    plan, outcome = exchange.plan, exchange.outcome
    found = pdns.quick_results(
        plan.batch, plan.servers, failed=outcome.failed, started=exchange.started, indices=indices
    )
    asked = [questions[index] for index in indices]
    if outcome.no_socket is not None:
        return [
            result or _no_socket(name, rdtype, outcome.no_socket)
            for result, (name, rdtype) in zip(found, asked, strict=True)
        ]
    return await _full_path(resolver, asked, found)


async def _full_path(
    resolver: dns.resolver.Resolver, questions: Sequence[tuple[str, str]], found: list[pdns.Lookup | None]
) -> list[pdns.Lookup]:
    """`found`, each None in it replaced by dnspython's full-path answer (on the executor)."""
    missing = [index for index, result in enumerate(found) if result is None]
    if missing:
        loop = asyncio.get_running_loop()
        pool = full_path_pool.get()
        full = await asyncio.gather(
            *(
                loop.run_in_executor(pool, functools.partial(pdns.lookup, resolver, *questions[index]))
                for index in missing
            )
        )
        for index, result in zip(missing, full, strict=True):
            found[index] = result
    return [result for result in found if result is not None]


def _no_socket(name: str, rdtype: str, exc: OSError) -> pdns.Lookup:
    detail = (
        f"{rdtype} {name}: not asked: this process cannot open a socket ({exc.strerror}); "
        "lower --concurrency or raise the open-files limit (ulimit -n)"
    )
    return pdns.failed_lookup(name, rdtype, ProbeError("dns-error", detail))


async def addresses(resolver: dns.resolver.Resolver, host: str) -> tuple[list[str], list[ProbeError]]:
    """A and AAAA of `host`, asked together; errors for lookups that failed (not for absences)."""
    return pdns.addresses_of(await ask(resolver, [(host, "A"), (host, "AAAA")]))


class _Exchange:
    """Send `plan`'s batch and read answers into it until complete or `plan.end`; `ready[n]` is set
    as soon as the questions of `groups[n]` are all answered, or the exchange ends.

    The first attempt goes to the first nameserver, each later one (every `plan.attempt` s) to the
    next in turn, as dnspython rotates; an answer from any of them counts, and says which. A server
    whose socket fails (ICMP unreachable, no route) is left out of the turns; when all have failed,
    the unanswered go the full path, which names the failure.

    State in an object rather than closures: closures that call each other form reference cycles,
    and a scan's thousands of them kept the cyclic collector busy (about a tenth of the scan's CPU).
    `run` drops the loop's references to it when it ends."""

    __slots__ = (
        "batch",
        "broken",
        "done",
        "groups",
        "loop",
        "outcome",
        "plan",
        "ready",
        "sockets",
        "started",
        "timer",
        "turn",
        "waiting",
    )

    def __init__(self, plan: pdns.QuickPlan, loop: asyncio.AbstractEventLoop, groups: list[range]) -> None:
        self.plan, self.loop, self.batch = plan, loop, plan.batch
        self.groups = groups
        self.ready: list[asyncio.Future[None]] = [loop.create_future() for _ in groups]
        self.waiting = len(groups)
        self.outcome = _Outcome()
        self.sockets: dict[int, socket.socket] = {}
        self.broken: set[int] = set()
        self.done: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.turn = 0
        self.started = time.monotonic()

    async def run(self) -> None:
        try:
            self.send()
            await self.done
        finally:
            self.finish()
            self.close()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        for ready in self.ready:
            if not ready.done():
                ready.set_result(None)

    def _answered(self) -> None:
        wires = self.batch.wires
        for group, ready in zip(self.groups, self.ready, strict=True):
            if not ready.done() and all(wires[index] is not None for index in group):
                ready.set_result(None)

    def fail(self, source: int) -> None:
        self.broken.add(source)
        sock = self.sockets.pop(source, None)
        if sock is not None:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        if len(self.broken) == len(self.plan.servers):
            self.outcome.failed = True
            self.finish()

    def readable(self, source: int) -> None:
        sock = self.sockets.get(source)
        if sock is None:
            return
        batch = self.batch
        try:
            while True:
                batch.match(sock.recv(65535), source)
                if batch.complete:
                    self.finish()
                    return
        except BlockingIOError:
            if len(self.groups) > 1:
                self._answered()
            return
        except OSError:  # e.g. ICMP port unreachable on the connected socket
            self.fail(source)

    def send(self) -> None:
        plan, servers = self.plan, self.plan.servers
        left = plan.end - time.monotonic()
        if left <= 0:
            self.finish()
            return
        while len(self.broken) < len(servers):
            source = self.turn % len(servers)
            self.turn += 1
            if source in self.broken:
                continue
            try:
                sock = self.sockets.get(source)
                if sock is None:
                    sock = quickdns.connected_socket(*servers[source])
                    self.sockets[source] = sock
                    sock.setblocking(False)
                    self.loop.add_reader(sock.fileno(), self.readable, source)
                self.batch.send(sock)
                break
            except OSError as exc:
                if exc.errno in _OUT_OF_FILES:
                    self.outcome.no_socket = exc.with_traceback(None)  # no frames kept alive
                    self.finish()
                    return
                self.fail(source)
        if self.done.done():
            return
        self.timer = self.loop.call_later(min(plan.attempt, left), self.send)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for sock in self.sockets.values():
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()
