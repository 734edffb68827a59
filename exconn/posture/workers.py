"""Spreading a scan over worker processes: one GIL per core.

A posture scan at high concurrency is bound by Python's CPU (TLS handshakes, DNS messages), not by
the network. `spread` starts a few processes, each running `target` (which builds its own trust
store once, then serves items with `serve`, a number at a time on its own event loop); items go out
on one queue, taken only as a slot is free, so a process that finishes early takes more and a slow
(dead) host holds one slot only. Results come back on another queue with their index, so the caller
keeps the input order and sees each result (progress) as it arrives. A worker that dies leaves its
unfinished items missing from the answer, for the caller to report, instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS_PER_PROCESS = 100  # a process costs ~10 ms to fork (~0.5 s to spawn): worth it past this
# Below this concurrency per process one event loop (~2.3 ms of CPU a domain) is not the limit, and a
# second process only takes CPU from the network's side (bench_posture on 2 CPUs, at 128: one
# process 225 domains/s, two 194/s).
MIN_SLOTS_PER_PROCESS = 256


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def process_count(items: int, concurrency: int) -> int:
    """How many processes a scan of `items` at `concurrency` is worth (1: stay in this one)."""
    return max(1, min(cores(), items // MIN_ITEMS_PER_PROCESS, concurrency // MIN_SLOTS_PER_PROCESS))


def shares(concurrency: int, processes: int) -> list[int]:
    """`concurrency` split over `processes`: the total in flight stays `concurrency`."""
    base, extra = divmod(concurrency, processes)
    return [base + (1 if i < extra else 0) for i in range(processes) if base or i < extra]


def quiet() -> None:
    """In a worker: the parent stops us (Ctrl-C reaches the whole group); no traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def serve(tasks: Any, results: Any, slots: int, handle: Callable[[Any], Awaitable[Any]]) -> None:
    """In a worker, on its loop: `slots` items at a time from `tasks` (index, item) until None, each
    result put as (index, result).

    One thread takes items from the shared queue, but only as a slot is free: a worker takes no
    more than it is working on, so a process that finishes early takes more."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    free = threading.Semaphore(slots)

    def feed() -> None:
        while True:
            free.acquire()
            task = tasks.get()
            loop.call_soon_threadsafe(inbox.put_nowait, task)
            if task is None:
                return

    threading.Thread(target=feed, daemon=True, name="posture-feed").start()

    async def slot() -> None:
        while (task := await inbox.get()) is not None:
            index, item = task
            results.put((index, await handle(item)))
            free.release()
        inbox.put_nowait(None)  # the next slot stops too

    await asyncio.gather(*(slot() for _ in range(slots)))


def _context() -> multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext:
    # fork is cheap and inherits the imports; with other threads alive (a test's servers) a forked
    # child could inherit a held lock, so spawn then.
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def spread(
    items: Sequence[T],
    target: Callable[..., None],
    args: tuple[Any, ...],
    concurrency: int,
    processes: int,
    on_result: Callable[[int, R], None],
) -> None:
    """Run `target(tasks, results, slots, *args)` in `processes` processes over `items`.

    `on_result(index, result)` is called in this thread as each result arrives. Returns when every
    item has its result or no worker is left alive."""
    context = _context()
    tasks: Any = context.Queue()
    results: Any = context.Queue()
    sizes = shares(concurrency, processes)
    workers = [
        context.Process(target=target, args=(tasks, results, size, *args), daemon=True) for size in sizes
    ]
    try:
        for worker in workers:
            worker.start()
        for task in enumerate(items):
            tasks.put(task)
        for _ in workers:  # one each: a worker's feed stops at its first
            tasks.put(None)
        left = len(items)
        while left:
            try:
                index, result = results.get(timeout=0.5)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers):
                    break
                continue
            on_result(index, result)
            left -= 1
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
        if all(worker.exitcode == 0 for worker in workers):
            tasks.close()
            tasks.join_thread()  # all was read: no feeder thread outlives the run (the next forks)
        else:
            tasks.cancel_join_thread()  # items a dead worker never took: nobody will read them
            tasks.close()
        results.close()
