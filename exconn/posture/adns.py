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
    found: list[pdns.Lookup | None] = [None] * len(questions)
    plan = pdns.quick_plan(resolver, questions, several=True)
    if plan is not None:
        started = time.monotonic()
        outcome = await _exchange(plan)
        found = pdns.quick_results(plan.batch, plan.servers, failed=outcome.failed, started=started)
        if outcome.no_socket is not None:
            return [
                result or _no_socket(name, rdtype, outcome.no_socket)
                for result, (name, rdtype) in zip(found, questions, strict=True)
            ]
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
    error = ProbeError("dns-error", detail)
    return pdns.Lookup(name, rdtype, "error", error=error, errors=(error,))


async def addresses(resolver: dns.resolver.Resolver, host: str) -> tuple[list[str], list[ProbeError]]:
    """A and AAAA of `host`, asked together; errors for lookups that failed (not for absences)."""
    return pdns.addresses_of(await ask(resolver, [(host, "A"), (host, "AAAA")]))


async def _exchange(plan: pdns.QuickPlan) -> _Outcome:
    """Send `plan`'s batch and read answers into it until complete or `plan.end`.

    The first attempt goes to the first nameserver, each later one (every `plan.attempt` s) to the
    next in turn, as dnspython rotates; an answer from any of them counts, and says which. A server
    whose socket fails (ICMP unreachable, no route) is left out of the turns; when all have failed,
    the unanswered go the full path, which names the failure."""
    exchange = _Exchange(plan, asyncio.get_running_loop())
    try:
        exchange.send()
        await exchange.done
        return exchange.outcome
    finally:
        exchange.close()


class _Exchange:
    """The state of one `_exchange`, in an object rather than closures: closures that call each
    other form reference cycles, and a scan's thousands of them kept the cyclic collector busy
    (about a tenth of the scan's CPU). `close` drops the loop's references to it."""

    __slots__ = ("batch", "broken", "done", "loop", "outcome", "plan", "sockets", "timer", "turn")

    def __init__(self, plan: pdns.QuickPlan, loop: asyncio.AbstractEventLoop) -> None:
        self.plan, self.loop, self.batch = plan, loop, plan.batch
        self.outcome = _Outcome()
        self.sockets: dict[int, socket.socket] = {}
        self.broken: set[int] = set()
        self.done: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.turn = 0

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

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
